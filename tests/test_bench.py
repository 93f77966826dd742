"""``npconv bench`` end to end on the tiny suite: workers, header, table, JSON and PNG."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import pytest

import npconv
from npconv._autotune import median_seconds
from npconv._bench import SUITES, _describe, run_bench
from npconv._bench_worker import contender_run, measure, operands
from npconv._cli import main
from npconv.grad import conv_backward

HEADER = ("CPU:", "cores", "threads", "GEMM peak", "GFLOP/s", "Load average", "BLAS:", "kernel")
HEADER += ("numpy ", "torch ", "numba ", "OPENBLAS_CORETYPE")


def _check_times(record, contenders):
    """Every contender timed in a process of its own; ratios positive and finite."""
    assert set(record["seconds"]) == set(contenders)
    pids = record["pid"]
    assert os.getpid() not in pids.values() and len(set(pids.values())) == len(contenders)
    for name in contenders:
        assert record["seconds"][name] > 0 and record["first_call_seconds"][name] > 0
        assert record["minor_faults_per_call"][name] >= 0
        ratio = record["seconds"]["torch"] / record["seconds"][name]
        assert ratio > 0 and math.isfinite(ratio)
    assert record["auto_peak_temp_bytes"] >= 0


def test_bench_command_times_each_contender_in_its_own_process(tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = ["bench", "--suite", "notes,tiny", "--only", "dw", "--repeats", "1"]
    argv += ["--against", "torch,scipy", "--algorithms", "auto,im2col"]
    assert main([*argv, "--json", str(out_json), "--plot", str(out_png)]) == 0
    out = capsys.readouterr().out
    assert all(field in out for field in HEADER), out
    assert "x torch" in out and "first call +ms" in out and "faults/call" in out
    assert "auto vs torch (forward) over 1 cases" in out and "auto's first call" in out
    data = json.loads(out_json.read_text())
    assert data["suite"] == "notes,tiny" and data["mode"] == "forward"
    assert data["machine"]["threads"] == npconv.get_threads()
    assert data["machine"]["sgemm_gflops"] > 0 and data["machine"]["numpy"] == np.__version__
    [record] = data["results"]
    assert record["case"] == "tiny dw 3x3 4 @8 b1"
    _check_times(record, ["auto", "im2col", "torch", "scipy"])
    assert record["auto_choice"] in npconv.algorithms()
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_backward_against_torch_autograd(capsys):
    [record] = run_bench(
        "tiny", only="3x3 4->4", backward=True, warm_allocator=True, repeats=1, quiet=True
    )
    _check_times(record, ["auto", "torch"])
    forward = SUITES["tiny"][0].spec().flops
    assert record["gflop"] == pytest.approx(2 * forward / 1e9)  # two gradients
    out = capsys.readouterr().out
    assert "backward" in out.splitlines()[0] and "allocator warmed" in out.splitlines()[0]
    assert "auto vs torch (backward) over 1 cases" in out


def test_bench_in_one_process_runs_every_contender_here():
    [record] = run_bench("tiny", only="dw", repeats=1, one_process=True, quiet=True)
    assert set(record["pid"].values()) == {os.getpid()}
    assert set(record["seconds"]) == {"auto", "torch"}


def test_bench_with_a_bias_gives_it_to_every_contender(tmp_path, capsys, monkeypatch):
    """``--bias``: every contender's call is given the layer's bias; the header and the
    JSON say so."""
    from npconv import _bench_worker

    biases = []
    run = _bench_worker.contender_run

    def spy(kind, contender, case, x, w, gy, b=None):
        biases.append((contender, b is not None and b.shape == (case.spec().out_channels,)))
        return run(kind, contender, case, x, w, gy, b)

    monkeypatch.setattr(_bench_worker, "contender_run", spy)
    out_json = tmp_path / "bench.json"
    argv = ["bench", "--suite", "tiny", "--only", "dw", "--repeats", "1", "--bias"]
    assert main([*argv, "--one-process", "--against", "torch,scipy", "--json", str(out_json)]) == 0
    assert sorted(biases) == [("auto", True), ("scipy", True), ("torch", True)]
    assert "forward with a bias" in capsys.readouterr().out.splitlines()[0]
    assert json.loads(out_json.read_text())["bias"] is True


@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("case", [SUITES["notes"][2], SUITES["tiny"][1]])  # NHWC /2; groups
def test_the_peers_compute_the_same_convolution_and_gradients(case, with_bias):
    x, w, gy, b = operands(case, "float64", seed=3)
    b = b if with_bias else None
    options = case.options()
    y = contender_run("forward", "torch", case, x, w, gy, b)().numpy()  # NCHW
    y_scipy = contender_run("forward", "scipy", case, x, w, gy, b)()  # NCHW
    y_npconv = contender_run("forward", "auto", case, x, w, gy, b)()
    expected = npconv.conv(x, w, **options)
    if with_bias:  # added to every output of its channel
        expected = expected + (b if case.layout == "NHWC" else b[:, None, None])
    np.testing.assert_allclose(y_npconv, expected, atol=1e-10)
    if case.layout == "NHWC":
        expected = np.moveaxis(expected, -1, 1)  # (N, O, *out)
    np.testing.assert_allclose(y, expected, atol=1e-10)
    np.testing.assert_allclose(y_scipy, expected, atol=1e-10)
    gx, gw = contender_run("backward", "torch", case, x, w, gy)()
    grads = conv_backward(gy, x, w, needs=("input", "weight"), **options)
    np.testing.assert_allclose(gx.numpy(), grads.input, atol=1e-10)
    gw_expected = grads.weight  # (O, C/G, *kernel) for PyTorch
    if case.layout == "NHWC":
        gw_expected = np.moveaxis(gw_expected, (-1, -2), (0, 1))
    np.testing.assert_allclose(gw.numpy(), gw_expected, atol=1e-10)


def test_header_names_the_openblas_caps(monkeypatch):
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    machine = measure({"kind": "machine", "threads": 1})
    assert machine["openblas_caps"] == {"OPENBLAS_L2_SIZE": "1048576"}
    lines = _describe(machine, repeats=3, one_process=False)
    assert any("OPENBLAS_L2_SIZE=1048576 is set: it caps the kernel" in line for line in lines)
    blas = [p for p in machine["thread_pools"] if p["user_api"] == "blas"]
    assert blas and all(p["architecture"] for p in blas if p["internal_api"] == "openblas")


def test_an_unsupported_contender_is_reported_not_timed(capsys):
    # col2im computes input gradients only
    [record] = run_bench(
        "tiny", only="dw", algorithms=["col2im"], against=[], repeats=1, quiet=True
    )
    assert record["seconds"] == {} and "col2im" in record["unsupported"]
    assert "col2im cannot run tiny dw 3x3 4 @8 b1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(suite="tiny,huge"), "bench: unknown suite 'huge'"),
        (dict(suite="tiny", against=["tf"]), "bench: unknown peer 'tf'"),
        (dict(suite="tiny", algorithms=["fastest"]), r"bench: unknown algorithms \['fastest'\]"),
        (dict(suite="tiny", against=["scipy"], backward=True), "compared with torch only"),
        (dict(suite="tiny", backward=True, bias=True), "a bias is timed in the forward pass"),
        (dict(suite="tiny", only="7x7"), "bench: no layer of suite 'tiny' has '7x7' in its name"),
    ],
)
def test_bench_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_bench(**kwargs, quiet=True)


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(RuntimeError, match=r"bench: --plot needs matplotlib"):
        run_bench(
            "tiny",
            only="dw",
            repeats=1,
            against=[],
            one_process=True,
            plot_path=str(tmp_path / "x.png"),
            quiet=True,
        )


@pytest.mark.parametrize(("at_least", "fewest", "most"), [(0.0, 4, 4), (0.05, 8, 50)])
def test_median_seconds_times_enough_calls_to_fill_at_least(at_least, fewest, most):
    """One warm-up and 3 calls of 2 ms, or warm-up calls that fill 50 ms and as many
    timed (25 and 25 of 2 ms; fewer if the first overslept, 5 and 5 at 10 ms)."""
    calls = []

    def run():
        calls.append(time.sleep(0.002))

    seconds = median_seconds(run, 3, at_least=at_least)
    assert fewest <= len(calls) <= most
    assert 0.002 <= seconds < 0.05


def test_median_seconds_times_the_calls_after_a_slow_start():
    """A layer's first calls, slower than the later ones, fill the warm-up: three calls
    of 20 ms then calls of 2 ms give a median of 2 ms, not of the start's 20."""
    calls = []

    def run():
        calls.append(time.sleep(0.02 if len(calls) < 3 else 0.002))

    seconds = median_seconds(run, 3, at_least=0.05)
    assert 0.002 <= seconds < 0.01


def test_median_seconds_warms_up_for_at_least_warm_calls():
    """Five slow calls, each longer than ``at_least``, then fast ones: ``warm=5`` times
    only the fast ones, one warm-up call would time slow ones too."""
    calls = []

    def run():
        calls.append(time.sleep(0.02 if len(calls) < 5 else 0.002))

    assert median_seconds(run, 3, at_least=0.01, warm=5) < 0.01
    calls.clear()
    assert median_seconds(run, 3, at_least=0.01) >= 0.02
