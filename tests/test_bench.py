"""``npconv bench`` end to end on the tiny suite: table, JSON and PNG."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import npconv
from npconv._bench import SUITES, _scipy_peer, run_bench
from npconv._cli import main


def test_bench_command_writes_json_and_png(tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    status = main(
        [
            "bench",
            "--suite",
            "tiny",
            "--repeats",
            "1",
            "--against",
            "torch,scipy",
            "--algorithms",
            "auto,im2col",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert status == 0
    table = capsys.readouterr().out
    assert "GFLOP/s" in table and "auto vs torch over 2 cases" in table
    data = json.loads(out_json.read_text())
    assert data["suite"] == "tiny" and data["machine"]["threads"] >= 1
    assert [r["case"] for r in data["results"]] == [c.name for c in SUITES["tiny"]]
    for record in data["results"]:
        assert set(record["seconds"]) == {"auto", "im2col", "torch", "scipy"}
        assert record["auto_choice"] in npconv.algorithms()
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scipy_peer_computes_the_same_convolution(rng):
    case = SUITES["notes"][2]  # NHWC, stride 2
    x = rng.standard_normal(case.x_shape)
    w = rng.standard_normal(case.w_shape)
    y = _scipy_peer(case, x, w)()  # NCHW
    expected = npconv.conv(x, w, layout="NHWC", **case.kwargs)
    np.testing.assert_allclose(np.moveaxis(y, 1, -1), expected, atol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(suite="huge"), "bench: unknown suite 'huge'"),
        (dict(suite="tiny", against=["tf"]), "bench: unknown peer 'tf'"),
        (dict(suite="tiny", algorithms=["fastest"]), r"bench: unknown algorithms \['fastest'\]"),
    ],
)
def test_bench_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_bench(**kwargs, quiet=True)


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(RuntimeError, match=r"bench: --plot needs matplotlib"):
        run_bench("tiny", repeats=1, against=[], plot_path=str(tmp_path / "x.png"), quiet=True)
