"""Plans: the functions that registry rows make for one spec, and the dispatch that keeps
them for later calls of the same signature (:func:`npconv._dispatch.convolve`)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

import npconv
import npconv._dispatch as dispatch
from npconv import ConvSpec
from npconv._choose import TUNED
from npconv._spec import ConvOptions
from npconv.algorithms import REGISTRY

from conftest import RTOL, assert_close, torch_conv, using_threads

PLANNERS = [name for name, row in REGISTRY.items() if row.plan_channels_first is not None]

# (batch, in channels, out channels, size, kernel, groups)
LAYERS = [
    (1, 64, 384, 14, 1, 1),
    (1, 8, 3, 5, 1, 1),
    (2, 8, 16, 16, 1, 1),
    (3, 6, 4, 16, 1, 2),
    (8, 4, 12, 7, 1, 1),
    (1, 4, 4, 6, 3, 1),
]


def _operands(rng, layer, dtype, bias):
    batch, c, o, size, k, groups = layer
    x = rng.standard_normal((batch, c, size, size)).astype(dtype)
    w = rng.standard_normal((o, c // groups, k, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    return x, w, b, groups


@pytest.mark.parametrize("name", PLANNERS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("relu", [False, True], ids=["", "relu"])
@pytest.mark.parametrize("bias", [False, True], ids=["", "bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layer", LAYERS, ids=str)
def test_a_rows_plan_computes_its_function(name, layer, dtype, bias, relu, threads, rng):
    """Where a row makes a plan for a spec, the plan's result is PyTorch's (with the
    ReLU, its maximum with 0), and the operands are left as they were."""
    x, w, b, groups = _operands(rng, layer, dtype, bias)
    spec = ConvSpec.build(x.shape, w.shape, groups=groups)
    with using_threads(threads):
        plan = REGISTRY[name].plan_channels_first(spec, np.dtype(dtype), bias, relu)
        if plan is None:  # every 1x1 layer of one sample has one
            assert layer[0] > 1 or layer[4] > 1
            return
        copies = [a.copy() for a in (x, w, b) if a is not None]
        y = plan(x, w, b)
    expected = torch_conv(x, w, b, groups=groups)
    assert_close(y, np.maximum(expected, 0) if relu else expected, np.dtype(dtype))
    assert all(
        np.array_equal(a, c) for a, c in zip([a for a in (x, w, b) if a is not None], copies)
    )


def _spied(monkeypatch):
    """The problems that the dispatch prepares, in a list; every call priced as one
    that does not run alone (which depends on how long ago BLAS last ran)."""
    monkeypatch.setattr(dispatch, "runs_alone", lambda batch: False)
    prepared = []
    prepare = dispatch.prepare

    def spy(*args, **kwargs):
        prepared.append(args)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(dispatch, "prepare", spy)
    return prepared


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("relu", [False, True], ids=["", "relu"])
@pytest.mark.parametrize("bias", [False, True], ids=["", "bias"])
def test_a_signature_seen_before_runs_its_plan(bias, relu, unbatched, rng, monkeypatch):
    """The first call of a 1x1 layer prepares its problem and makes the plan; later
    calls of the same signature run the plan alone; every call gives PyTorch's result."""
    x, w, b, _ = _operands(rng, (1, 64, 384, 14, 1, 1), np.float32, bias)
    options = ConvOptions.create("conv2d")
    prepared = _spied(monkeypatch)
    expected = torch_conv(x, w, b)
    expected = np.maximum(expected, 0) if relu else expected
    x_in = x[0] if unbatched else x
    for _ in range(3):
        y = dispatch.convolve(options, x_in, w, b, relu=relu)
        assert_close(y, expected[0] if unbatched else expected, np.dtype(np.float32))
    assert len(prepared) == 1
    assert sum(isinstance(p, dispatch.Plan) for p in dispatch._PLANS.values()) == 1


def test_another_signature_is_prepared_and_checked_again(rng, monkeypatch):
    """A call that differs in a shape, a dtype, the memory order of x, the options or the
    threads is prepared again, and a wrong bias is an error even after a plan."""
    x, w, b, _ = _operands(rng, (1, 8, 16, 10, 1, 1), np.float32, True)
    prepared = _spied(monkeypatch)
    conv = partial(npconv.conv2d, algorithm="im2col")
    conv(x, w, b)
    conv(x, w, b)
    assert len(prepared) == 1
    conv(x[:, :, :9], w, b)
    conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    conv(np.asfortranarray(x), w, b)
    conv(x, w, b, stride=2)
    with using_threads(1 if npconv.get_threads() > 1 else 2):
        conv(x, w, b)
    assert len(prepared) == 6
    with pytest.raises(ValueError, match=r"bias must have shape \(16,\)"):
        conv(x, w, b[:-1])


def test_a_plan_gives_way_to_a_replaced_row_or_a_measured_winner(rng, monkeypatch):
    """A plan is not run once the registry row that made it is replaced, nor, for "auto",
    once a winner has been measured for its spec (npconv.tune)."""
    x, w, _, _ = _operands(rng, (1, 64, 384, 14, 1, 1), np.float32, False)
    prepared = _spied(monkeypatch)
    npconv.conv2d(x, w)
    npconv.conv2d(x, w)
    assert len(prepared) == 1
    monkeypatch.setitem(REGISTRY, "im2col", replace(REGISTRY["im2col"]))
    npconv.conv2d(x, w)
    npconv.conv2d(x, w)  # the new row's plan
    assert len(prepared) == 2
    try:
        assert npconv.tune(x, w, algorithms=["im2col", "shifted"]) in ("im2col", "shifted")
        npconv.conv2d(x, w)
        npconv.conv2d(x, w)
        assert len(prepared) == 4  # every call, the spec's winner measured
    finally:
        TUNED.clear()


# (layout, batch, channels in, out, size, kernel, padding, groups)
CALLS = [
    ("NCHW", 1, 4, 6, 6, 3, 1, 1),
    ("NCHW", 2, 6, 6, 5, 3, 0, 6),
    ("NCHW", 2, 4, 8, 5, 1, 0, 1),
    ("NHWC", 1, 4, 6, 6, 3, 1, 1),
    ("NHWC", 2, 6, 6, 5, 3, 1, 6),
]


@pytest.mark.parametrize("name", [n for n, row in REGISTRY.items() if row.fn is not None])
@pytest.mark.parametrize("relu", [False, True], ids=["", "relu"])
@pytest.mark.parametrize("bias", [False, True], ids=["", "bias"])
@pytest.mark.parametrize("call", CALLS, ids=str)
def test_every_algorithms_calls_give_the_same_result_planned_or_not(
    name, call, bias, relu, rng, monkeypatch
):
    """Three calls of a layer by an algorithm (the first prepared, the later ones by a
    plan where one is made) give PyTorch's result; where a plan is made, the later calls
    prepare nothing."""
    layout, batch, c, o, size, k, padding, groups = call
    x, w, b, _ = _operands(rng, (batch, c, o, size, k, groups), np.float32, bias)
    expected = torch_conv(x, w, b, pads=[(padding, padding)] * 2, groups=groups)
    expected = np.maximum(expected, 0) if relu else expected
    if layout == "NHWC":
        x, w = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w.transpose(2, 3, 1, 0).copy()
        expected = expected.transpose(0, 2, 3, 1)
    options = ConvOptions.create("conv2d", padding=padding, groups=groups, layout=layout)
    spec = options.bind(x.shape, w.shape)
    if REGISTRY[name].unsupported(spec, np.dtype(np.float32)) is not None:
        return
    prepared = _spied(monkeypatch)
    for _ in range(3):
        y = dispatch.convolve(options, x, w, b, name, relu=relu)
        tolerance = RTOL[np.dtype(np.float32)] * REGISTRY[name].error_scale
        assert np.abs(y - expected).max() <= tolerance * max(np.abs(expected).max(), 1.0)
        assert y.flags.c_contiguous
    planned = any(isinstance(p, dispatch.Plan) for p in dispatch._PLANS.values())
    assert len(prepared) == (1 if planned else 3)
    if name in ("im2col", "im2col_jit", "blocked_jit") and layout == "NCHW" and groups == 1:
        assert planned


@pytest.mark.parametrize("name", [n for n, row in REGISTRY.items() if row.checks_result])
def test_a_plan_through_transforms_gives_way_where_a_value_is_not_finite(name, rng, monkeypatch):
    """A row that checks the results of its own transforms makes plans; where a planned
    call finds a value not finite (a NaN in the input), the call is prepared and computed
    again by a direct algorithm, NaN only where PyTorch has it; the next finite call runs
    the plan again."""
    x, w, b, _ = _operands(rng, (1, 8, 8, 12, 3, 1), np.float64, True)
    options = ConvOptions.create("conv2d", padding=1)
    why = REGISTRY[name].unsupported(options.bind(x.shape, w.shape), np.dtype(np.float64))
    if why is not None:  # a compiled row, without numba
        assert "numba" in why
        return
    prepared = _spied(monkeypatch)
    bad = x.copy()
    bad[0, 3, 5, 7] = np.nan
    for data, calls in [(x, 1), (x, 1), (bad, 2), (x, 2)]:
        y = dispatch.convolve(options, data, w, b, name)
        assert len(prepared) == calls
        expected = torch_conv(data, w, b, pads=[(1, 1), (1, 1)])
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        finite = ~np.isnan(expected)
        bound = 1e-12 * np.abs(expected[finite]).max()
        np.testing.assert_allclose(y[finite], expected[finite], rtol=0, atol=bound)
