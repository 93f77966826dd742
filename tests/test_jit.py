"""The compiled algorithms (blocked_jit, depthwise_jit, direct_jit, im2col_jit, winograd_jit,
winograd_rows_jit) against PyTorch, and without numba."""

from __future__ import annotations

import inspect
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch

import npconv
import npconv.grad
from npconv._dispatch import convolve
from npconv._operands import NonFinite
from npconv._spec import ConvOptions, ConvSpec
from npconv.algorithms import (
    REGISTRY,
    blocked_jit,
    depthwise_jit,
    direct_jit,
    im2col,
    im2col_jit,
    winograd_jit,
    winograd_rows_jit,
)

from conftest import (
    RTOL,
    assert_close,
    in_threads,
    spy_weight_gradient,
    torch_conv,
    using_threads,
)


def channels_last(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (N, C, *s) -> (N, *s, C) and w (O, C/G, *k) -> (*k, C/G, O)."""
    return np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2))


def check(algorithm, x, w, bias, layout, pads, rtol, **kwargs):
    """npconv with ``algorithm`` in ``layout`` against torch (float64), NCHW results."""
    ref = torch_conv(x, w, bias, pads=pads, **kwargs)
    a, b = (x, w) if layout == "NCHW" else channels_last(x, w)
    y = npconv.conv(a, b, bias, padding=pads, layout=layout, algorithm=algorithm, **kwargs)
    y = y if layout == "NCHW" else np.moveaxis(y, -1, 1)
    assert y.dtype == x.dtype and y.shape == ref.shape
    scale = max(float(np.abs(ref).max(initial=0.0)), 1.0)
    assert float(np.abs(y - ref).max(initial=0.0)) <= rtol * scale


def torch_weight_grad(
    x, w_shape, gy, pads, padding_mode="zeros", dtype=torch.float64, **options
) -> np.ndarray:
    """dL/dw of a 1-3-d convolution by torch autograd, computed in ``dtype``: the pads
    (asymmetric, any mode) applied by F.pad first; ``options`` stride, dilation, groups."""
    flat = [p for pair in reversed(pads) for p in pair]  # torch pads the last dim first
    mode = {"zeros": "constant"}.get(padding_mode, padding_mode)
    padded = torch.nn.functional.pad(torch.tensor(x).to(dtype), flat, mode=mode)
    w = torch.zeros(w_shape, dtype=dtype, requires_grad=True)
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)
    conv[len(w_shape) - 3](padded, w, **options).backward(torch.tensor(gy).to(dtype))
    return w.grad.numpy()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("nd", "size", "kernel", "stride", "dilation", "pads"),
    [
        (2, (7, 9), (3, 3), 1, 1, [(1, 1), (1, 1)]),  # the registers' 3x3 path
        (2, (9, 8), (3, 3), 2, 1, [(1, 0), (0, 1)]),
        (2, (11, 10), (3, 3), 3, 1, [(1, 1), (2, 2)]),  # the general path from here on
        (2, (12, 13), (5, 5), 2, 1, [(2, 2), (2, 2)]),
        (2, (10, 11), (3, 2), 1, 2, [(2, 1), (0, 3)]),
        (2, (6, 7), (7, 7), 1, 1, [(3, 3), (3, 3)]),
        (1, (17,), (5,), 2, 2, [(4, 3)]),
        (3, (5, 6, 7), (3, 3, 3), (1, 2, 1), (2, 1, 1), [(2, 2), (1, 1), (0, 0)]),
    ],
)
@pytest.mark.parametrize(("batch", "multiplier"), [(0, 1), (1, 2), (3, 1)])
def test_depthwise_jit_matches_torch(
    layout, dtype, nd, size, kernel, stride, dilation, pads, batch, multiplier, rng
):
    channels = 5
    x = rng.standard_normal((batch, channels, *size)).astype(dtype)
    w = rng.standard_normal((channels * multiplier, 1, *kernel)).astype(dtype)
    bias = rng.standard_normal(channels * multiplier).astype(dtype) if batch != 1 else None
    kwargs = dict(stride=stride, dilation=dilation, groups=channels)
    check("depthwise_jit", x, w, bias, layout, pads, RTOL[np.dtype(dtype)], **kwargs)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    ("kernel", "stride", "pads"),
    [
        ((3, 3), 1, [(1, 1), (1, 1)]),  # the registers' 3x3 path
        ((3, 3), 2, [(1, 0), (0, 1)]),
        ((5, 5), 1, [(2, 2), (2, 2)]),  # the general path
    ],
)
@pytest.mark.parametrize("runs", [1, 3, 64])
def test_depthwise_jit_threads_take_runs_of_planes(
    layout, kernel, stride, pads, runs, rng, monkeypatch
):
    """Shared among two threads even though the layer is small, each taking runs of
    planes from the shared counter until none is left: 2 samples of 7 channels are 14
    planes, in runs of 7, of 2, or of 1."""
    monkeypatch.setattr(depthwise_jit, "SHARED_VALUES", 0)
    monkeypatch.setattr(depthwise_jit, "RUNS_PER_THREAD", runs)
    monkeypatch.setattr(depthwise_jit, "runs_alone", lambda batch: False)
    x = rng.standard_normal((2, 7, 10, 9)).astype(np.float32)
    w = rng.standard_normal((7, 1, *kernel)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    with using_threads(2):
        check("depthwise_jit", x, w, bias, layout, pads, RTOL[np.dtype(np.float32)],
              stride=stride, groups=7)  # fmt: skip


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation", "pads", "groups"),
    [
        ((30, 31), (3, 3), 1, 1, [(1, 1), (1, 1)], 6),  # a depthwise layer's
        ((61, 60), (3, 3), 2, 1, [(1, 0), (1, 1)], 6),
        ((31, 28), (3, 3), 1, 2, [(2, 2), (0, 3)], 6),
        ((60, 61), (5, 5), 1, 1, [(2, 2), (2, 2)], 3),  # two channels per group
        ((200,), (3,), 1, 3, [(3, 3)], 6),
        ((13, 30, 31), (3, 3, 3), (2, 1, 1), 1, [(1, 1), (1, 1), (0, 0)], 6),
    ],
)
def test_depthwise_jit_weight_gradients_match_torch(
    layout, size, kernel, stride, dilation, pads, groups, rng, monkeypatch
):
    """Weight gradients: channels-first floats by depthwise_jit's own kernel (a pass per
    tap and output row), channels-last data and integers as convolutions whose kernel
    (the output gradient) has far more taps than their outputs (one output at a time)."""
    calls = spy_weight_gradient(monkeypatch, "depthwise_jit")
    x = rng.standard_normal((2, 6, *size))
    w = np.zeros((6, 6 // groups, *kernel))
    options = dict(stride=stride, dilation=dilation, groups=groups)
    out = npconv.conv_output_shape(x.shape, w.shape, padding=pads, **options)
    gy = rng.standard_normal(out)
    a, g = (x, gy) if layout == "NCHW" else (np.moveaxis(x, 1, -1), np.moveaxis(gy, 1, -1))
    b = w if layout == "NCHW" else np.moveaxis(w, (0, 1), (-1, -2))
    grads = npconv.grad.conv_backward(
        g, a, b, padding=pads, layout=layout, algorithm="depthwise_jit", needs=("weight",),
        **options,
    )  # fmt: skip
    dw = grads.weight if layout == "NCHW" else np.moveaxis(grads.weight, (-1, -2), (0, 1))
    assert_close(dw, torch_weight_grad(x, w.shape, gy, pads, **options))
    assert len(calls) == (layout == "NCHW")
    ix, igy = np.round(x * 4).astype(np.int64), np.round(gy * 4).astype(np.int64)
    exact = npconv.grad.conv_backward(
        igy, ix, w.astype(np.int64), padding=pads, algorithm="depthwise_jit", needs=("weight",),
        **options,
    ).weight  # fmt: skip
    expected = torch_weight_grad(ix, w.shape, igy, pads, **options)
    assert exact.dtype == np.int64 and np.array_equal(exact, expected.astype(np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize(
    ("stride", "pads"),
    [
        ((1, 1), [(1, 1), (1, 1)]),
        ((2, 1), [(0, 1), (1, 0)]),
        ((2, 2), [(1, 1), (1, 1)]),
        ((1, 2), [(1, 0), (0, 1)]),
    ],
)
def test_depthwise_jit_3x3_weight_gradient_in_registers(dtype, stride, pads, rng, monkeypatch):
    """3x3 depthwise kernels, here with a channel multiplier of 2, at strides 1 and 2:
    the nine sums of a channel in registers, additions reassociated (float32 within its
    tolerance)."""
    calls = []
    own = depthwise_jit._weight_grad_3x3
    monkeypatch.setattr(
        depthwise_jit, "_weight_grad_3x3", lambda *args: calls.append(1) or own(*args)
    )
    x = rng.standard_normal((2, 4, 17, 23)).astype(dtype)
    w_shape = (8, 1, 3, 3)
    out = npconv.conv_output_shape(x.shape, w_shape, padding=pads, stride=stride, groups=4)
    gy = rng.standard_normal(out).astype(dtype)
    dw = npconv.grad.conv_backward(
        gy, x, np.zeros(w_shape, dtype), padding=pads, stride=stride, groups=4,
        algorithm="depthwise_jit", needs="weight",
    ).weight  # fmt: skip
    expected = torch_weight_grad(
        x, w_shape, gy, pads, dtype=torch.complex128, stride=stride, groups=4
    )
    assert dw.dtype == dtype and calls == [1]
    assert_close(dw, expected, dtype)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize(
    ("size", "kernel", "stride"),
    [((9, 8), (3, 2), 1), ((9, 21), (3, 3), 1), ((9, 40), (3, 3), 2)],  # general, 3x3 rows
)
def test_depthwise_jit_sums_the_channels_of_a_group(layout, groups, size, kernel, stride, rng):
    x = rng.standard_normal((2, 6, *size))
    w, bias = rng.standard_normal((9, 6 // groups, *kernel)), rng.standard_normal(9)
    check(
        "depthwise_jit", x, w, bias, layout, [(1, 1), (1, 0)], 1e-12, groups=groups, stride=stride
    )


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_depthwise_jit_with_padding_modes_the_dispatch_pads(layout, mode, rng):
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((4, 1, 3, 3))
    a, b = (x, w) if layout == "NCHW" else channels_last(x, w)
    y = npconv.conv(
        a, b, padding=1, groups=4, padding_mode=mode, layout=layout, algorithm="depthwise_jit"
    )
    expected = torch_conv(x, w, pads=[(1, 1)] * 2, groups=4, padding_mode=mode)
    assert_close(y if layout == "NCHW" else np.moveaxis(y, -1, 1), expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("batch", "channels", "outputs", "size", "pads", "groups"),
    [
        (2, 8, 16, (12, 12), [(0, 0), (0, 0)], 1),  # the notes' shape, smaller
        (1, 3, 5, (9, 21), [(1, 1), (1, 1)], 1),  # odd outputs and rows, two vectors a row
        (3, 6, 9, (11, 7), [(2, 1), (0, 3)], 3),  # groups of 3 outputs: a lone one each
        (1, 4, 4, (3, 3), [(1, 1), (1, 1)], 2),
        (0, 4, 6, (5, 5), [(1, 1), (1, 1)], 1),
    ],
)
def test_direct_jit_matches_torch(
    layout, dtype, threads, batch, channels, outputs, size, pads, groups, rng, monkeypatch
):
    """On one thread, or shared among two by samples or (batch 1) by rows even though
    these layers are small."""
    monkeypatch.setattr(direct_jit, "SHARED_MACS", 0 if threads > 1 else direct_jit.SHARED_MACS)
    x = rng.standard_normal((batch, channels, *size)).astype(dtype)
    w = rng.standard_normal((outputs, channels // groups, 3, 3)).astype(dtype)
    bias = rng.standard_normal(outputs).astype(dtype) if channels != 4 else None
    with using_threads(threads):
        check("direct_jit", x, w, bias, layout, pads, RTOL[np.dtype(dtype)], groups=groups)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        (dict(stride=2), "3x3 kernels at stride 1"),
        (dict(dilation=2), "3x3 kernels at stride 1"),
        (dict(groups=4), "at least 2 input channels per group"),
    ],
)
def test_direct_jit_declines_what_it_does_not_run(kwargs, why):
    spec = npconv.ConvSpec.build((1, 4, 9, 9), (4, 4 // kwargs.get("groups", 1), 3, 3), **kwargs)
    assert why in REGISTRY["direct_jit"].unsupported(spec, np.dtype(np.float32))


def test_auto_takes_a_direct_kernel_for_few_channels_only():
    """The notes' first example (8 -> 16 channels) goes to a compiled direct kernel
    (``blocked_jit``, or ``direct_jit`` where the CPU's vectors are narrow), a ResNet
    layer (64 -> 64) to a GEMM or Winograd."""
    x, w = np.zeros((10, 32, 32, 8), np.float32), np.zeros((3, 3, 8, 16), np.float32)
    assert npconv.explain(x, w, layout="NHWC").algorithm in ("blocked_jit", "direct_jit")
    x, w = np.zeros((1, 64, 56, 56), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    assert npconv.explain(x, w, padding=1).algorithm not in ("blocked_jit", "direct_jit")


#: Cases at the edges of how the compiled kernels read their input, run by several of
#: them: batch, channels, outputs, size, kernel, stride, dilation, pads, groups.
EDGE_CASES = [
    (3, 8, 16, (10, 12), (3, 3), (1, 1), (1, 1), [(0, 0), (0, 0)], 1),  # samples unpadded
    (2, 4, 16, (7, 9), (3, 3), (1, 1), (1, 1), [(0, 1), (0, 2)], 1),  # pads after only
    (1, 3, 4, (5, 2), (3, 3), (2, 2), (1, 1), [(2, 0), (3, 2)], 1),  # pads wider than rows
    (1, 3, 4, (5, 9), (3, 3), (2, 3), (1, 1), [(0, 3), (4, 0)], 1),
    (0, 4, 6, (5, 5), (3, 3), (1, 1), (1, 1), [(1, 1), (1, 1)], 1),
]


BLOCKED_CASES = [  # batch, channels, outputs, size, kernel, stride, dilation, pads, groups
    (2, 8, 16, (12, 12), (3, 3), (1, 1), (1, 1), [(1, 1), (1, 1)], 1),  # blocks of 8
    (1, 5, 12, (9, 21), (3, 3), (1, 1), (1, 1), [(0, 2), (1, 0)], 1),  # blocks of 12
    (1, 3, 8, (23, 23), (7, 7), (2, 2), (1, 1), [(3, 3), (3, 3)], 1),  # a stem
    (3, 6, 9, (11, 7), (3, 3), (2, 1), (1, 2), [(2, 1), (0, 3)], 3),  # 3 outputs a group
    (1, 4, 10, (13, 10), (2, 5), (3, 2), (2, 1), [(0, 0), (4, 1)], 2),
    (2, 3, 5, (6, 6), (1, 1), (2, 2), (1, 1), [(0, 0), (0, 0)], 1),  # 1x1, strided
    (1, 2, 30, (4, 40), (3, 3), (1, 1), (1, 1), [(1, 1), (1, 1)], 1),  # rows past a block
    *EDGE_CASES,
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", BLOCKED_CASES)
def test_blocked_jit_matches_torch(layout, dtype, threads, case, rng, monkeypatch):
    """Every kernel, stride, dilation, pads and groups; on one thread, or shared among two
    by samples or (batch 1) by blocks of output channels, in bands of a few positions
    (a small :data:`~npconv.algorithms.blocked_jit.BAND_BYTES`) and in one."""
    batch, channels, outputs, size, kernel, stride, dilation, pads, groups = case
    monkeypatch.setattr(blocked_jit, "SHARED_MACS", 0 if threads > 1 else blocked_jit.SHARED_MACS)
    monkeypatch.setattr(blocked_jit, "BAND_BYTES", 2**10 if threads > 1 else 2**19)
    blocked_jit._plan.cache_clear()
    x = rng.standard_normal((batch, channels, *size)).astype(dtype)
    w = rng.standard_normal((outputs, channels // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(outputs).astype(dtype) if groups == 1 else None
    kwargs = dict(stride=stride, dilation=dilation, groups=groups)
    with using_threads(threads):
        check("blocked_jit", x, w, bias, layout, pads, RTOL[np.dtype(dtype)], **kwargs)
    blocked_jit._plan.cache_clear()


@pytest.mark.parametrize("threads", [1, 2])
def test_blocked_jit_reads_unpadded_samples_in_place_and_leaves_them(threads, rng, monkeypatch):
    """Contiguous channels-last samples without padding are read where they lie (the
    last one copied); the input is left as it was, twice in a row."""
    monkeypatch.setattr(blocked_jit, "SHARED_MACS", 0)
    x = rng.standard_normal((5, 9, 11, 8))  # (N, H, W, C), C-contiguous
    w = rng.standard_normal((3, 3, 8, 16))
    before = x.copy()
    expected = torch_conv(np.moveaxis(x, -1, 1), w.transpose(3, 2, 0, 1))
    with using_threads(threads):
        for _ in range(2):
            y = npconv.conv(x, w, layout="NHWC", algorithm="blocked_jit")
            assert_close(np.moveaxis(y, -1, 1), expected)
            np.testing.assert_array_equal(x, before)


def shares_in_turn(monkeypatch, name):
    """``blocked_jit``'s kernel ``name`` (``_share`` or ``_share_last``) shared even on a
    small layer, its shares run in turn, so that the first takes all the work: a list
    that gets, for each share, its arguments by name and its counters before and after
    it ran."""
    monkeypatch.setattr(blocked_jit, "SHARED_MACS", 0)
    monkeypatch.setattr(blocked_jit, "parallel_map", lambda fn, items: [fn(i) for i in items])
    kernel = getattr(blocked_jit, name)
    names = list(inspect.signature(kernel.fn).parameters)
    ran = []

    def counting(*args):
        taken = args[names.index("taken")]
        before = taken.copy()
        kernel(*args)
        ran.append((dict(zip(names, args)), before, taken.copy()))

    monkeypatch.setattr(blocked_jit, name, counting)
    return ran


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_blocked_jit_threads_take_the_samples_as_they_come(layout, rng, monkeypatch):
    """The two threads' shares take the samples from one counter: where the first share
    has run to the end before the second starts (the shares in turn), the first computed
    every sample and the second finds none left; the result is the same."""
    ran = shares_in_turn(monkeypatch, "_share" if layout == "NCHW" else "_share_last")
    x = rng.standard_normal((5, 8, 9, 10)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    with using_threads(2):
        check("blocked_jit", x, w, None, layout, [(1, 1), (1, 1)], RTOL[np.dtype(np.float32)])
    # each share takes until it finds none: the first 0 .. 4, then 5; the second 6
    assert [(int(before[0]), int(after[0])) for _, before, after in ran] == [(0, 6), (6, 7)]


@pytest.mark.parametrize("band_bytes", [2**10, 2**19])
def test_blocked_jit_threads_take_a_samples_blocks_as_they_come(band_bytes, rng, monkeypatch):
    """At batch 1 the two threads' shares take each band's blocks of output channels from
    a counter of that band: where the first share has run to the end before the second
    starts (the shares in turn), the first computed every block of every band (in a
    few bands or in one) and the second finds none left; the result is the same."""
    monkeypatch.setattr(blocked_jit, "BAND_BYTES", band_bytes)
    blocked_jit._plan.cache_clear()
    ran = shares_in_turn(monkeypatch, "_share")
    x = rng.standard_normal((1, 8, 11, 13)).astype(np.float32)
    w = rng.standard_normal((20, 8, 3, 3)).astype(np.float32)  # blocks of 4 or 6 outputs
    with using_threads(2):
        check("blocked_jit", x, w, None, "NCHW", [(1, 1), (1, 1)], RTOL[np.dtype(np.float32)])
    blocked_jit._plan.cache_clear()
    (one, _, first), (other, _, second) = ran
    blocks, same = len(one["blocks"]), len(other["blocks"])
    assert blocks == same > 1 and len(first) == len(second) >= (2 if band_bytes < 2**19 else 1)
    # each band's counter: the first share took every block, and found none, then the second
    assert (first == blocks + 1).all() and (second == blocks + 2).all()


def test_blocked_jit_computes_complex_numbers_as_real_convolutions(rng):
    x = rng.standard_normal((2, 4, 9, 9)) + 1j * rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((6, 4, 3, 3)) + 1j * rng.standard_normal((6, 4, 3, 3))
    bias = rng.standard_normal(6) + 1j * rng.standard_normal(6)
    y = npconv.conv(x, w, bias, padding=1, stride=2, algorithm="blocked_jit")
    ref = torch_conv(x, w, bias, pads=[(1, 1)] * 2, stride=2)
    assert y.dtype == np.complex128
    assert_close(y, ref)


@pytest.mark.parametrize("batch", [1, 3])
def test_blocked_jit_keeps_the_packed_weights_of_unchanged_weights(batch, rng, monkeypatch):
    """Weights seen before keep their packed blocks from call to call (packed by the
    threads on the first call, packed and kept on the second, not packed on the third);
    packed on every call again once they change in place. PyTorch's result every time,
    on two threads sharing a sample's blocks or the samples."""
    npconv.free_workspaces()
    packs = []
    pack = blocked_jit._pack_blocks
    monkeypatch.setattr(blocked_jit, "_pack_blocks", lambda *a: packs.append(a) or pack(*a))
    monkeypatch.setattr(blocked_jit, "SHARED_MACS", 0)
    x = rng.standard_normal((batch, 6, 11, 9)).astype(np.float32)
    w = rng.standard_normal((20, 6, 3, 3)).astype(np.float32)

    def packed() -> bool:
        packs.clear()
        with using_threads(2):
            check("blocked_jit", x, w, None, "NCHW", [(1, 1)] * 2, 1e-4)
        return bool(packs)

    assert packed() and packed() and not packed() and not packed()
    w[-1, -1, -1, -1] += 1  # changed in place
    assert packed() and packed() and packed()
    npconv.free_workspaces()


def test_blocked_jit_keeps_packed_weights_apart_for_other_blocks(rng):
    """The same weights on inputs whose plans take blocks of other sizes (8 output
    channels on 56 x 56, 12 on 14 x 14) or other groups: PyTorch's result on each, call
    after call, every packing kept apart."""
    npconv.free_workspaces()
    w = rng.standard_normal((24, 6, 3, 3)).astype(np.float32)
    inputs = [rng.standard_normal((1, c, h, h)).astype(np.float32) for c, h in
              [(6, 56), (6, 14), (12, 14)]]  # fmt: skip
    for _ in range(3):
        for x in inputs:
            y = npconv.conv(x, w, padding=1, groups=x.shape[1] // 6, algorithm="blocked_jit")
            ref = torch_conv(x, w, pads=[(1, 1)] * 2, groups=x.shape[1] // 6)
            assert_close(y, ref)
    npconv.free_workspaces()


def test_blocked_jit_keeps_a_nan_to_the_outputs_that_sum_it(rng):
    """A direct sum: one NaN input reaches only the outputs whose taps read it."""
    x = rng.standard_normal((1, 8, 20, 20)).astype(np.float32)
    x[0, 3, 10, 10] = np.nan
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    y = npconv.conv(x, w, padding=1, algorithm="blocked_jit")
    reached = np.zeros((20, 20), bool)
    reached[9:12, 9:12] = True
    assert np.isnan(y[0][:, reached]).all() and not np.isnan(y[0][:, ~reached]).any()


def test_blocked_jit_declines_one_input_channel_per_group():
    spec = npconv.ConvSpec.build((1, 4, 9, 9), (4, 1, 3, 3), groups=4)
    assert "at least 2 input channels" in REGISTRY["blocked_jit"].unsupported(
        spec, np.dtype(np.float32)
    )


IM2COL_CASES = [  # batch, channels, outputs, size, kernel, stride, dilation, pads, groups
    (2, 5, 7, (9, 11), (3, 3), (1, 1), (1, 1), [(1, 1), (1, 1)], 1),
    (3, 6, 4, (12, 10), (3, 3), (2, 2), (1, 1), [(1, 0), (2, 1)], 2),  # asymmetric pads
    (1, 3, 8, (23, 23), (7, 7), (2, 2), (1, 1), [(3, 3), (3, 3)], 1),  # a stem
    (2, 4, 6, (11, 13), (2, 3), (3, 1), (2, 1), [(0, 0), (1, 1)], 1),  # stride 3, dilation
    (2, 4, 6, (8, 8), (1, 1), (2, 2), (1, 1), [(0, 0), (0, 0)], 1),  # 1x1/2: a subsample
    (2, 4, 6, (8, 8), (1, 1), (1, 1), (1, 1), [(0, 0), (0, 0)], 1),  # the input itself
    (3, 2, 3, (18, 17), (3, 3), (1, 1), (1, 1), [(1, 1), (1, 1)], 1),  # 289 positions
    *EDGE_CASES,
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("way", ["in turn", "shared", "rows"])
@pytest.mark.parametrize(
    ("batch", "channels", "outputs", "size", "kernel", "stride", "dilation", "pads", "groups"),
    IM2COL_CASES,
)
def test_im2col_jit_matches_torch(
    layout, dtype, way, batch, channels, outputs, size, kernel, stride, dilation, pads, groups,
    rng, monkeypatch,
):  # fmt: skip
    """Its chunks in turn, shared among two threads (forced on these small layers), or
    of a few output rows each (a small workspace); samples side by side or one GEMM each
    (289 positions); the bias through the GEMMs (a row of ones) or none."""
    monkeypatch.setattr(im2col_jit, "_gathers_shared", lambda spec: way == "shared")
    if way == "rows":  # at most a few output rows a chunk
        monkeypatch.setattr(im2col, "chunks", partial(im2col.chunks, budget=2048))
    x = rng.standard_normal((batch, channels, *size)).astype(dtype)
    w = rng.standard_normal((outputs, channels // groups, *kernel)).astype(dtype)
    bias = rng.standard_normal(outputs).astype(dtype) if channels != 4 else None
    options = dict(stride=stride, dilation=dilation, groups=groups)
    with using_threads(2):
        check("im2col_jit", x, w, bias, layout, pads, RTOL[np.dtype(dtype)], **options)


def region_sizes(module, monkeypatch) -> list[int]:
    """The item counts of the parallel regions that ``module`` starts from now on (its
    ``parallel_map`` spied), filled in as they run."""
    regions: list[int] = []
    mapped = module.parallel_map

    def spy(fn, items, **kwargs):
        regions.append(len(items))
        return mapped(fn, items, **kwargs)

    monkeypatch.setattr(module, "parallel_map", spy)
    return regions


@pytest.mark.parametrize("spinning", [False, True])
@pytest.mark.parametrize(("kernel", "size", "threads", "shared"), [
    (3, 40, 2, True), (1, 40, 2, False), (3, 20, 2, False), (3, 40, 1, False),
])  # fmt: skip
def test_im2col_jit_shares_a_sample_with_wide_rows_unless_blas_spins(
    spinning, kernel, size, threads, shared, rng, monkeypatch
):
    """A single sample's chunks are shared among the threads where its kernel has several
    taps and each thread gets WIDE_POINTS output positions (here 800 of 1600, not 200 of
    400), the layer being large enough (SHARED_MACS lowered for these small ones), but
    run in turn while OpenBLAS's threads likely spin after npconv's two-thread GEMMs.
    PyTorch's result either way."""
    from npconv import _threads

    regions = region_sizes(im2col, monkeypatch)
    monkeypatch.setattr(im2col, "sharing_pays", lambda: False)
    monkeypatch.setattr(im2col_jit, "SHARED_MACS", 0)
    monkeypatch.setattr(_threads, "BLAS_SPIN_SECONDS", 60.0 if spinning else 0.0)
    monkeypatch.setitem(_threads._blas, "spinning_until", 0.0)  # restored afterwards
    x = rng.standard_normal((1, 8, size, size)).astype(np.float32)
    w = rng.standard_normal((8, 8, kernel, kernel)).astype(np.float32)
    pads = [(kernel // 2, kernel // 2)] * 2
    expected = torch_conv(x, w, pads=pads)
    with using_threads(threads):
        npconv.conv(x, np.ones((8, 8, 1, 1), np.float32), algorithm="im2col")  # BLAS in turn
        assert _threads.blas_spinning() == (spinning and threads > 1)
        regions.clear()
        y = npconv.conv(x, w, padding=kernel // 2, algorithm="im2col_jit")
    assert (max(regions, default=1) > 1) == (shared and not spinning)
    assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_im2col_jit_runs_1d_layers_as_one_row(layout, rng):
    x = rng.standard_normal((2, 3, 19))
    w = rng.standard_normal((5, 3, 4))
    bias = rng.standard_normal(5)
    check("im2col_jit", x, w, bias, layout, [(2, 1)], RTOL[np.dtype(np.float64)], stride=2)


@pytest.mark.parametrize("way", ["in turn", "shared", "rows"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("batch", "channels", "outputs", "size", "kernel", "stride", "dilation", "pads", "groups"),
    [case for case in IM2COL_CASES if case[0]]
    + [(3, 4, 5, (19,), (4,), (2,), (1,), [(2, 1)], 1)],  # 1-d: one row
)
def test_im2col_jit_weight_gradient_from_its_compiled_patches(
    way, threads, batch, channels, outputs, size, kernel, stride, dilation, pads, groups,
    rng, monkeypatch,
):  # fmt: skip
    """Its own weight gradient (channels-first), from patches that its kernel gathers: the
    chunks summed in turn, by each of 1-3 threads, or of a few output rows each (several
    a sample); torch autograd's."""
    gathered = []
    patches = im2col_jit._patches
    monkeypatch.setattr(im2col_jit, "_patches", lambda *a: gathered.append(a) or patches(*a))
    monkeypatch.setattr(im2col_jit, "_shared", lambda spec: way == "shared")
    if way == "rows":  # a few output rows a chunk
        monkeypatch.setattr(im2col_jit, "GRAD_CHUNK_BYTES", 2048)
    x = rng.standard_normal((batch, channels, *size))
    w_shape = (outputs, channels // groups, *kernel)
    options = dict(stride=stride, dilation=dilation, groups=groups)
    gy = rng.standard_normal(npconv.conv_output_shape(x.shape, w_shape, padding=pads, **options))
    with using_threads(threads):
        got = npconv.grad.conv_backward(
            gy, x, np.zeros(w_shape), padding=pads, algorithm="im2col_jit", needs="weight",
            **options,
        ).weight  # fmt: skip
    assert gathered, "the weight gradient did not gather its own patches"
    expected = torch_weight_grad(x, w_shape, gy, pads, **options)
    assert_close(got, expected)


def test_im2col_jit_is_exact_for_integers(rng):
    x = rng.integers(-(2**20), 2**20, (2, 3, 9, 9))
    w = rng.integers(-(2**20), 2**20, (4, 3, 3, 3))
    y = npconv.conv(x, w, stride=2, padding=1, algorithm="im2col_jit")
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, npconv.conv(x, w, stride=2, padding=1, algorithm="naive"))


def test_auto_takes_im2col_jit_where_im2col_would_pad():
    """A padded layer goes to a compiled algorithm that pads as it reads (no padded copy:
    the gather of ``im2col_jit``, or ``blocked_jit``'s planes, by the thread count), a
    1x1 stride-1 layer to im2col, which multiplies the input as it lies."""
    x, w = np.zeros((1, 128, 56, 56), np.float32), np.zeros((128, 128, 3, 3), np.float32)
    assert npconv.explain(x, w, stride=2, padding=1).algorithm in ("im2col_jit", "blocked_jit")
    x, w = np.zeros((1, 256, 56, 56), np.float32), np.zeros((64, 256, 1, 1), np.float32)
    assert npconv.explain(x, w).algorithm == "im2col"


def test_depthwise_jit_is_exact_for_integers(rng):
    x = rng.integers(-100, 100, (2, 6, 11, 9))
    w = rng.integers(-100, 100, (6, 1, 3, 3))
    y = npconv.conv(x, w, padding=1, groups=6, algorithm="depthwise_jit")
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, npconv.conv(x, w, padding=1, groups=6, algorithm="naive"))


@pytest.mark.parametrize(
    ("kernel", "stride", "multiplier"), [((3, 3), 1, 1), ((3, 3), 2, 2), ((5, 3), 2, 1)]
)
def test_depthwise_jit_gives_the_same_result_on_any_number_of_threads(
    kernel, stride, multiplier, rng, monkeypatch
):
    """Its planes shared out among 1-3 threads (from any size on: SHARED_VALUES 0)."""
    monkeypatch.setattr(depthwise_jit, "SHARED_VALUES", 0)
    x = rng.standard_normal((2, 7, 20, 20)).astype(np.float32)
    w = rng.standard_normal((7 * multiplier, 1, *kernel)).astype(np.float32)
    options = {"stride": stride, "padding": 1, "groups": 7}
    expected = torch_conv(x, w, pads=[(1, 1)] * 2, stride=stride, groups=7)
    results = []
    for threads in (1, 2, 3):
        with using_threads(threads):
            results.append(npconv.conv(x, w, algorithm="depthwise_jit", **options))
    assert_close(results[0], expected.astype(np.float32))
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


WINOGRAD_CASES = [  # (size, kernel, pads, groups)
    ((9, 13), (3, 3), [(1, 1), (1, 1)], 1),
    ((8, 8), (3, 3), [(0, 0), (0, 0)], 1),
    ((5, 11), (3, 2), [(2, 0), (1, 3)], 2),
    ((7, 6), (1, 1), [(0, 1), (0, 0)], 1),
    ((4, 5), (2, 3), [(1, 1), (1, 1)], 3),
    ((4, 5), (3, 3), [(0, 9), (5, 1)], 1),  # tiles wholly below and left of the image
]


@pytest.fixture(params=[False, True], ids=["transposed", "in-place"])
def in_place(request, monkeypatch):
    """winograd_jit's two ways with channels-first data: transposed to channels-last, or
    transformed in place (for every image, as for wide ones)."""
    if request.param:
        monkeypatch.setattr(winograd_jit, "WIDE", 0)
    else:
        monkeypatch.setattr(winograd_jit, "WIDE", 10**9)
    return request.param


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("size", "kernel", "pads", "groups"), WINOGRAD_CASES)
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_winograd_jit_matches_torch(layout, size, kernel, pads, groups, batch, rng, in_place):
    x = rng.standard_normal((batch, 6, *size))
    w = rng.standard_normal((12, 6 // groups, *kernel))
    bias = rng.standard_normal(12) if batch != 1 else None
    check("winograd_jit", x, w, bias, layout, pads, 1e-12, groups=groups)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("batch", [1, 3])
def test_winograd_jit_float32_error_bound_over_several_chunks(layout, batch, rng, in_place):
    """Unit-scale float32 within 1e-4 of max |y| (the registry's error_scale x 1e-5).

    64 channels at 90x90 are 23 x 23 tiles of 18 KiB of transforms each: several chunks
    of tile rows per sample.
    """
    x = rng.standard_normal((batch, 64, 90, 91)).astype(np.float32)
    w = rng.standard_normal((48, 64, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    check("winograd_jit", x, w, bias, layout, [(1, 1), (1, 1)], 1e-4)


def weight_grad(x, w_shape, gy, pads, layout, algorithm="winograd_jit", **kwargs) -> np.ndarray:
    """npconv's dL/dw in ``layout``, returned as (O, C/G, kh, kw)."""
    w = np.zeros(w_shape, x.dtype)
    if layout == "NHWC":
        x, w, gy = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2)), np.moveaxis(gy, 1, -1)
    dw = npconv.grad.conv_backward(
        gy, x, w, padding=pads, layout=layout, algorithm=algorithm, needs="weight", **kwargs
    ).weight
    return dw if layout == "NCHW" else np.moveaxis(dw, (-1, -2), (0, 1))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("size", "kernel", "pads", "groups"), WINOGRAD_CASES)
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_winograd_jit_weight_gradient_matches_torch(
    layout, size, kernel, pads, groups, batch, rng, monkeypatch, in_place
):
    """The adjoint of its transforms: input tiles as in the forward, the output
    gradient's tiles by AT^T, summed over tiles by 36 GEMMs, back by G^T; the tiles
    channels-first or channels-last."""
    calls = spy_weight_gradient(monkeypatch, "winograd_jit")
    x = rng.standard_normal((batch, 6, *size))
    w_shape = (12, 6 // groups, *kernel)
    out = npconv.conv_output_shape(x.shape, w_shape, padding=pads, groups=groups)
    gy = rng.standard_normal(out)
    got = weight_grad(x, w_shape, gy, pads, layout, groups=groups)
    assert_close(got, torch_weight_grad(x, w_shape, gy, pads, groups=groups))
    assert len(calls) == 1


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_winograd_jit_weight_gradient_with_padding_modes_the_dispatch_pads(mode, rng):
    x, gy = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((2, 5, 7, 6))
    got = weight_grad(x, (5, 4, 3, 3), gy, 1, "NCHW", padding_mode=mode)
    expected = torch_weight_grad(x, (5, 4, 3, 3), gy, [(1, 1)] * 2, padding_mode=mode)
    assert_close(got, expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_winograd_jit_weight_gradient_float32_error_bound_over_several_chunks(
    layout, rng, in_place
):
    """Unit-scale float32 within 1e-4 of max |dw| (the registry's error_scale x 1e-5),
    summed over the chunks of two samples of 23 x 23 tiles of 64 + 48 channels."""
    x = rng.standard_normal((2, 64, 90, 91)).astype(np.float32)
    gy = rng.standard_normal((2, 48, 90, 91)).astype(np.float32)
    got = weight_grad(x, (48, 64, 3, 3), gy, [(1, 1)] * 2, layout)
    assert got.dtype == np.float32
    expected = torch_weight_grad(x, (48, 64, 3, 3), gy, [(1, 1)] * 2)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_winograd_jit_weight_gradient_summed_by_each_thread_or_in_turn(
    threads, shared, rng, monkeypatch
):
    """Chunks shared among the threads (each summing its own transformed gradient, the
    sums added at the end) or run in turn: PyTorch's gradient, over several chunks a
    thread (small chunks), with groups."""
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: shared)
    monkeypatch.setattr(winograd_jit, "CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd_jit, "CHUNK_TILES", 3)
    x, gy = rng.standard_normal((3, 6, 13, 17)), rng.standard_normal((3, 4, 13, 17))
    with using_threads(threads):
        got = weight_grad(x, (4, 3, 3, 3), gy, [(1, 1)] * 2, "NCHW", groups=2)
    assert_close(got, torch_weight_grad(x, (4, 3, 3, 3), gy, [(1, 1)] * 2, groups=2))


def test_winograd_jit_weight_gradients_from_two_threads_at_once(rng, monkeypatch):
    """Two user threads' weight gradients, their chunks shared on the same pool at once
    (each thread's sums its own): PyTorch's gradient every time."""
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: True)
    monkeypatch.setattr(winograd_jit, "CHUNK_BYTES", 1)
    monkeypatch.setattr(winograd_jit, "CHUNK_TILES", 4)
    x, gy = rng.standard_normal((3, 5, 18, 19)), rng.standard_normal((3, 7, 18, 19))
    expected = torch_weight_grad(x, (7, 5, 3, 3), gy, [(1, 1)] * 2)
    results = []

    def gradients():
        for _ in range(10):
            results.append(weight_grad(x, (7, 5, 3, 3), gy, [(1, 1)] * 2, "NCHW"))

    with using_threads(2):
        errors = in_threads(gradients)
    assert errors == [] and len(results) == 20
    for got in results:
        assert_close(got, expected)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_winograd_jit_weight_gradient_leaves_nan_and_inf_to_a_direct_algorithm(value, rng):
    """A NaN or Inf would spread over a transform's 36 points: such operands take the
    weight gradient's convolution, which puts them where the definition does."""
    x, gy = rng.standard_normal((1, 4, 9, 9)), rng.standard_normal((1, 3, 9, 9))
    gy[0, 1, 4, 4] = value
    got = weight_grad(x, (3, 4, 3, 3), gy, [(1, 1)] * 2, "NCHW")
    expected = torch_weight_grad(x, (3, 4, 3, 3), gy, [(1, 1)] * 2)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_close(got[finite], expected[finite])


def test_auto_takes_the_winograd_weight_gradient_where_it_wins(rng, monkeypatch):
    """Many tiles of 64 channels: its own weight gradient.  512 channels at 7x7: four
    tiles a sample and 36 x 512 x 512 transformed sums (beyond its memory bound): the
    weight gradient's convolution."""
    calls = spy_weight_gradient(monkeypatch, "winograd_jit")
    for channels, size, used in [(64, 56, 1), (512, 7, 0)]:
        x = rng.standard_normal((2, channels, size, size)).astype(np.float32)
        gy = rng.standard_normal((2, channels, size, size)).astype(np.float32)
        w_shape = (channels, channels, 3, 3)
        got = weight_grad(x, w_shape, gy, 1, "NCHW", algorithm="auto")
        expected = torch_weight_grad(x, w_shape, gy, [(1, 1)] * 2)
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
        assert len(calls) == used
        calls.clear()


def test_winograd_jit_refuses_strides_and_large_kernels():
    x = np.zeros((1, 2, 9, 9))
    for w, kwargs in [(np.zeros((2, 2, 3, 3)), dict(stride=2)), (np.zeros((2, 2, 5, 5)), {})]:
        with pytest.raises(ValueError, match=r"'winograd_jit' cannot run .* stride 1, dilation 1"):
            npconv.conv(x, w, algorithm="winograd_jit", **kwargs)


def test_winograd_jit_refuses_filters_beyond_the_memory_bound():
    """1024 -> 1024 channels: transformed filters of 36 x 1024 x 1024 float32 (144 MiB)."""
    x, w = np.ones((1, 1024, 4, 4), np.float32), np.ones((1024, 1024, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'winograd_jit' cannot .*: it would hold 151,"):
        npconv.conv(x, w, padding=1, algorithm="winograd_jit")
    assert npconv.explain(x, w, padding=1).algorithm != "winograd_jit"


def test_auto_takes_the_compiled_rows_where_they_win():
    depthwise = npconv.explain(
        np.zeros((1, 144, 56, 56), np.float32), np.zeros((144, 1, 3, 3), np.float32),
        padding=1, groups=144,
    )  # fmt: skip
    assert depthwise.algorithm == "depthwise_jit"
    dense = npconv.explain(
        np.zeros((8, 64, 56, 56), np.float32), np.zeros((64, 64, 3, 3), np.float32), padding=1
    )
    assert dense.algorithm == "winograd_jit"


def test_auto_leaves_dense_layers_of_few_pixels_to_a_gemm():
    """depthwise_jit's price includes every pair of output and input planes: a dense 3x3
    layer at 1x1 pixels (7.6 ms by depthwise_jit, 0.3 ms by im2col) goes to a patch GEMM."""
    x, w = np.zeros((1, 512, 1, 1), np.float32), np.zeros((512, 512, 3, 3), np.float32)
    choice = npconv.explain(x, w, padding=1)
    assert choice.algorithm in ("im2col", "im2col_jit")
    assert choice.estimated["depthwise_jit"] > 10 * choice.estimated[choice.algorithm]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )


NARROW_VECTORS = """
import sys
import numpy as np
import torch
import npconv
import npconv._jit
from npconv.algorithms import blocked_jit
narrow = lambda: ({vector_bytes}, 16)  # before anything compiles
npconv._jit.vector_registers = blocked_jit.vector_registers = narrow
rng = np.random.default_rng(0)
for layout, stride in (("NCHW", 2), ("NHWC", 1), ("NCHW", 1)):
    x = rng.standard_normal((2, 5, 13, 11)).astype(np.float32)
    w = rng.standard_normal((20, 5, 3, 3)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1, stride=stride)
    a, b = (x, w) if layout == "NCHW" else (np.moveaxis(x, 1, -1), w.transpose(2, 3, 1, 0))
    y = npconv.conv(a, b, padding=1, stride=stride, layout=layout, algorithm="blocked_jit")
    y = y if layout == "NCHW" else np.moveaxis(y, -1, 1)
    error = float(np.abs(y - ref.numpy()).max())
    assert error < 1e-4, (layout, stride, error)
print("ok")
"""


@pytest.mark.parametrize("vector_bytes", [16, 32])
def test_blocked_jit_with_the_vectors_of_other_cpus(vector_bytes, tmp_path, monkeypatch):
    """SSE's or AVX's vectors (16 registers), as compiled for CPUs without AVX-512, in a
    process with a numba cache of its own (its machine code differs for the same types)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    done = run_python(NARROW_VECTORS.format(vector_bytes=vector_bytes))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


SINGLE_PRECISION = """
import sys
import numpy as np
import torch
import npconv
from npconv._dispatch import convolve
from npconv._jit import Kernel
from npconv._spec import ConvOptions
rng = np.random.default_rng(0)
cases = [  # (x, w, groups, stride, layout): depthwise_jit's 3x3 planes, two per group at
    # stride 1 and one at stride 2; winograd_jit's channels-last tiles
    ((2, 8, 13, 11), (8, 2, 3, 3), 4, 1, "NCHW", "depthwise_jit"),
    ((2, 8, 13, 11), (8, 1, 3, 3), 8, 2, "NCHW", "depthwise_jit"),
    ((2, 16, 10, 9), (16, 16, 3, 3), 1, 1, "NHWC", "winograd_jit"),
]
for xs, ws, groups, stride, layout, name in cases:
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    ref = torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(w), torch.tensor(b), padding=1, stride=stride, groups=groups
    ).relu().numpy()
    a, k = (x, w) if layout == "NCHW" else (np.moveaxis(x, 1, -1), w.transpose(2, 3, 1, 0))
    options = ConvOptions.create("conv", stride=stride, padding=1, groups=groups, layout=layout)
    y = convolve(options, a, k, b, name, relu=True)
    y = y if layout == "NCHW" else np.moveaxis(y, -1, 1)
    error = float(np.abs(y - ref).max() / np.abs(ref).max())  # Winograd's bound: 1e-4
    assert y.dtype == np.float32 and error < 1e-4, (name, error)
compiled = [
    (f"{module}.{name}", kernel.compiled())
    for module, namespace in list(sys.modules.items()) if module.startswith("npconv")
    for name, kernel in vars(namespace).items()
    if isinstance(kernel, Kernel) and kernel._compiled is not None
]
for name, dispatcher in compiled:
    for signature in dispatcher.signatures:
        if "float32" in str(signature):
            assert "fpext float" not in dispatcher.inspect_llvm(signature), name
print(len(compiled))
"""


def test_float32_kernels_compute_in_float32(tmp_path, monkeypatch):
    """The depthwise and Winograd kernels compiled for float32 (with a fused ReLU) agree
    with PyTorch and convert no value to float64: a Python ``0`` next to a float32 makes
    numba type the variable float64, and each pass then converts every value to and fro
    (MobileNetV2's 3x3 144 @56 on one thread: 294-465 us without, 392-611 with).  In a
    process with a numba cache of its own, so that the kernels compile there and their
    LLVM IR can be read."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    done = run_python(SINGLE_PRECISION)
    assert done.returncode == 0 and int(done.stdout) >= 3, done.stderr


def test_importing_npconv_does_not_import_numba():
    done = run_python("import sys, npconv; assert 'numba' not in sys.modules, 'imported'")
    assert done.returncode == 0, done.stderr


WITHOUT_NUMBA = """
import sys
sys.modules["numba"] = None  # import numba raises ImportError, as when it is not installed
import numpy as np
import npconv
x = np.random.default_rng(0).standard_normal((1, 8, 12, 12)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((8, 1, 3, 3)).astype(np.float32)
for name in ("depthwise_jit", "winograd_jit", "direct_jit", "im2col_jit"):
    try:
        npconv.conv(x, w, padding=1, groups=8, algorithm=name)
    except ValueError as error:
        print(error)
    else:
        raise SystemExit(name + " ran without numba")
y = npconv.conv(x, w, padding=1, groups=8)
assert np.allclose(y, npconv.conv(x, w, padding=1, groups=8, algorithm="naive"), atol=1e-5)
print("auto:", npconv.explain(x, w, padding=1, groups=8).algorithm)
"""


def test_without_numba_the_compiled_rows_decline_and_auto_uses_the_others():
    done = run_python(WITHOUT_NUMBA)
    assert done.returncode == 0, done.stderr
    *lines, auto = done.stdout.splitlines()
    names = ("depthwise_jit", "winograd_jit", "direct_jit", "im2col_jit")
    assert lines == [
        f"conv: algorithm '{name}' cannot run this convolution: "
        "it needs numba (pip install 'npconv[jit]')"
        for name in names
    ]
    assert auto.startswith("auto: ") and not auto.endswith("_jit")


@pytest.mark.parametrize(
    ("shape", "shared"),
    [
        ((1, 64, 56, 56), True),
        ((4, 16, 8, 8), False),
        ((1, 256, 14, 14), False),
        ((8, 256, 14, 14), True),
    ],
)
def test_winograd_jit_shares_layers_whose_tiles_outweigh_the_filters_from_a_size_on(shape, shared):
    """64 @56: tiles outweigh the filters, 116M multiply-adds; 16 @8 batch 4: tiles too,
    but 0.6M (below SHARED_MACS); 256 @14: the filters outweigh the tiles; at batch 8
    they weigh the same."""
    spec = npconv.ConvSpec.build(shape, (shape[1], shape[1], 3, 3), padding=1)
    assert winograd_jit._shared(spec) == shared


def test_winograd_jit_from_two_threads_leaves_the_blas_threads(rng):
    """Overlapping calls from two user threads (each with its own workspaces) give
    PyTorch's result and leave BLAS's thread count as it was."""
    from threadpoolctl import threadpool_info

    x = rng.standard_normal((2, 64, 90, 91)).astype(np.float32)  # several chunks a sample
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    expected = torch_conv(x, w, pads=[(1, 1), (1, 1)])
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    old = npconv.set_threads(2)
    results = []

    def convolve():
        for _ in range(5):
            results.append(npconv.conv(x, w, padding=1, algorithm="winograd_jit"))

    try:
        errors = in_threads(convolve)
        after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    finally:
        npconv.set_threads(old)
    assert errors == [] and len(results) == 10
    assert after == [2] * len(after)
    for y in results:  # float32 F(4x4, 3x3): within 1e-4 of max |y|
        assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()
    assert before == [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_kernels_take_only_the_fast_math_flags_that_keep_nan_and_inf():
    from npconv._jit import kernel

    with pytest.raises(ValueError, match=r"kernel flags must be among \['contract', 'reassoc'\]"):
        kernel(flags=("contract", "nnan"))(lambda: None)


@pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf, 1e38])
@pytest.mark.parametrize("way", ["shared", "in turn", "channels shared", "channels-last"])
def test_winograd_jit_tests_each_value_it_writes(way, value, rng, monkeypatch):
    """Its output transforms test each value as they write it (the dispatch does not
    check the result again): a NaN, an Inf or a value whose transforms overflow, in the
    last of several chunks, sends the whole convolution to a direct algorithm, whose
    result has non-finite values only where PyTorch's has, and the others' values."""
    assert REGISTRY["winograd_jit"].checks_result
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: way == "shared")
    monkeypatch.setattr(winograd_jit, "WIDE", 100 if way == "channels-last" else 0)
    monkeypatch.setattr(winograd_jit, "CHUNK_TILES", 1)
    monkeypatch.setattr(winograd_jit, "CHUNK_BYTES", 1)  # a chunk per tile row
    x = rng.standard_normal((2, 6, 13, 10)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    x[1, 4, 11, 3] = value
    with using_threads(1 if way == "in turn" else 2):
        y = npconv.conv2d(x, w, padding=1, algorithm="winograd_jit")
    ref = torch_conv(x, w, pads=[(1, 1)] * 2)
    with np.errstate(invalid="ignore"):
        for got, expected in zip(
            (np.isnan(y), np.isposinf(y), np.isneginf(y)),
            (np.isnan(ref), np.isposinf(ref), np.isneginf(ref)),
        ):
            np.testing.assert_array_equal(got, expected)
        finite = np.isfinite(ref)
        np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("way", ["shared", "channels shared", "channels-last"])
def test_winograd_jit_keeps_the_filters_of_unchanged_weights(way, rng, monkeypatch):
    """The filters' transform is kept from call to call while the weights hold the same
    values: transformed on the first two calls (kept from the second, so that weights
    made for one call are not copied), not on the next; transformed again when the
    weights change in place (at the start or the end of their memory), and from then on
    not kept for them (a training loop's);
    kept for a new array, dropped when that array is freed, not kept beyond
    DERIVED_BYTES, and released by free_workspaces. PyTorch's result every time."""
    from npconv import _workspace

    npconv.free_workspaces()
    transforms = []
    transform = winograd_jit._transform_filters
    monkeypatch.setattr(
        winograd_jit, "_transform_filters", lambda *a: transforms.append(a) or transform(*a)
    )
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: way == "shared")
    monkeypatch.setattr(winograd_jit, "WIDE", 100 if way == "channels-last" else 0)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)

    def transformed(w: np.ndarray) -> bool:
        transforms.clear()
        with using_threads(2):
            check("winograd_jit", x, w, None, "NCHW", [(1, 1)] * 2, 1e-4)
        return bool(transforms)

    for where in [(-1, -1, -1, -1), (0, 0, 0, 0)]:  # the last thread's part, the first's
        w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
        assert transformed(w) and transformed(w) and not transformed(w) and not transformed(w)
        w[where] += 1  # changed in place
        assert transformed(w) and transformed(w) and transformed(w)
    other = w.copy()
    assert transformed(other) and transformed(other) and not transformed(other)
    kept = len(_workspace._derived)
    del other
    assert len(_workspace._derived) == kept - 1
    npconv.free_workspaces()
    assert transformed(w) and transformed(w) and not transformed(w)
    npconv.free_workspaces()
    monkeypatch.setattr(_workspace, "DERIVED_BYTES", 0)
    assert transformed(w) and transformed(w) and transformed(w)


@pytest.mark.parametrize("shared", [False, True])
def test_winograd_jit_runs_its_products_with_blas_on_one_thread(shared, rng, monkeypatch):
    """Whether the chunks are shared out or each chunk's channels are, the 36 products
    run on npconv's threads with BLAS on one thread, so that OpenBLAS's threads are not
    left spinning on the cores that npconv's threads run on. The result is PyTorch's."""
    from threadpoolctl import threadpool_info

    seen = []
    products = np.matmul

    def spy(*args, **kwargs):
        seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
        return products(*args, **kwargs)

    monkeypatch.setattr(winograd_jit.np, "matmul", spy)
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: shared)
    monkeypatch.setattr(winograd_jit, "WIDE", 0)  # channels-first tiles
    x = rng.standard_normal((2, 8, 30, 30)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    with using_threads(2):
        y = npconv.conv(x, w, padding=1, algorithm="winograd_jit")
    assert seen and all(counts == {1} for counts in seen)
    expected = torch_conv(x, w, pads=[(1, 1), (1, 1)])
    assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("channels", "groups", "kernel"), [((7, 10), 1, (3, 3)), ((12, 18), 3, (2, 3))]
)
def test_winograd_jit_shares_the_channels_of_each_chunk(
    threads, channels, groups, kernel, rng, monkeypatch
):
    """Where the chunks run in turn, each chunk's input channels are transformed, and its
    output channels multiplied and transformed back, by the threads in shares (of every
    group); on one thread all of them by the calling thread. Several chunks, bias."""
    shared = []
    split = winograd_jit._channels_shared
    monkeypatch.setattr(winograd_jit, "_channels_shared", lambda *a: shared.append(split(*a)))
    monkeypatch.setattr(winograd_jit, "WIDE", 0)  # channels-first tiles
    monkeypatch.setattr(winograd_jit, "CHUNK_TILES", 1)
    monkeypatch.setattr(winograd_jit, "CHUNK_BYTES", 1)  # a chunk per tile row
    (c, o), pads = channels, [(1, 1), (0, 2)]
    x = rng.standard_normal((2, c, 13, 17)) + threads  # tiles and filters that no
    w = rng.standard_normal((o, c // groups, *kernel)) + threads  # kept buffer holds
    bias = rng.standard_normal(o)
    with using_threads(threads):
        check("winograd_jit", x, w, bias, "NCHW", pads, 1e-12, groups=groups)
    assert len(shared) == (threads > 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("channels", "groups"), [((12, 30), 1), ((12, 51), 3)])
def test_winograd_jit_multiplies_few_tiles_by_blocks_of_kept_filters(
    dtype, channels, groups, rng, monkeypatch
):
    """Where each thread multiplies its output channels by a chunk of two vectors of
    tiles, it does so by blocks (``_products``) on filters packed by blocks and kept: not
    on the first call (weights seen once), on the next two (packed and kept, then
    checked), not once the weights changed in place; outputs past a whole block, and
    groups. PyTorch's result every time."""
    npconv.free_workspaces()
    blocked = []
    products = winograd_jit._products
    monkeypatch.setattr(winograd_jit, "_products", lambda *a: blocked.append(a) or products(*a))
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: False)  # channels shared
    monkeypatch.setattr(winograd_jit, "WIDE", 0)  # channels-first tiles
    lanes = npconv._jit.vector_registers()[0] // np.dtype(dtype).itemsize
    (c, o), pads = channels, [(1, 1), (1, 1)]
    x = rng.standard_normal((lanes // 2, c, 8, 8)).astype(dtype)  # 4 tiles a sample
    w = rng.standard_normal((o, c // groups, 3, 3)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype)
    rtol = RTOL[np.dtype(dtype)] * 10  # Winograd's error scale
    calls = []
    with using_threads(2):
        for _ in range(3):
            check("winograd_jit", x, w, bias, "NCHW", pads, rtol, groups=groups)
            calls.append(len(blocked))
        w[-1, -1, -1, -1] += 1  # changed in place
        check("winograd_jit", x, w, bias, "NCHW", pads, rtol, groups=groups)
    assert calls == [0, 2, 4] and len(blocked) == 4


@pytest.mark.parametrize(("batch", "threads", "alone"), [(1, 2, True), (2, 2, False), (1, 1, True)])
def test_depthwise_jit_runs_alone_after_multithreaded_gemms(
    batch, threads, alone, rng, monkeypatch
):
    """A large depthwise layer's planes are shared among the threads, except with fewer
    samples than threads right after npconv's GEMMs on every thread (OpenBLAS's threads
    still spinning): then on the calling thread alone. PyTorch's result either way."""
    from npconv import _threads

    regions = region_sizes(depthwise_jit, monkeypatch)
    monkeypatch.setitem(_threads._blas, "spinning_until", 0.0)  # restored afterwards
    x = rng.standard_normal((batch, 16, 70, 70)).astype(np.float32)  # above SHARED_VALUES
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    expected = torch_conv(x, w, pads=[(1, 1), (1, 1)], groups=16)
    with using_threads(threads):
        for spinning in (True, False):
            monkeypatch.setattr(_threads, "BLAS_SPIN_SECONDS", 60.0 if spinning else 0.0)
            npconv.conv(x, np.ones((16, 16, 1, 1), np.float32), algorithm="im2col")
            regions.clear()
            y = npconv.conv(x, w, padding=1, groups=16, algorithm="depthwise_jit")
            assert max(regions) == (1 if spinning and alone else threads)
            assert np.abs(y - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize(("shared", "first"), [(False, True), (True, True), (True, False)])
def test_winograd_jit_runs_alone_after_multithreaded_gemms(shared, first, rng, monkeypatch):
    """A sample that follows npconv's GEMMs on every thread (OpenBLAS's threads still
    spinning) is computed on the calling thread alone, its shares in turn (of the
    chunks, or of each chunk's channels; channels-first or -last tiles); once they
    sleep, on npconv's threads again. PyTorch's result either way."""
    from npconv import _threads

    regions = region_sizes(winograd_jit, monkeypatch)
    monkeypatch.setattr(winograd_jit, "_shared", lambda spec: shared)
    if first:
        monkeypatch.setattr(winograd_jit, "WIDE", 0)  # channels-first tiles
    monkeypatch.setitem(_threads._blas, "spinning_until", 0.0)  # restored afterwards
    x = rng.standard_normal((1, 8, 30, 30)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    expected = torch_conv(x, w, pads=[(1, 1), (1, 1)])
    pointwise = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    with using_threads(2):
        for spinning in (True, False):
            monkeypatch.setattr(_threads, "BLAS_SPIN_SECONDS", 60.0 if spinning else 0.0)
            npconv.conv(x, pointwise, algorithm="im2col")  # its GEMM on both threads
            assert _threads.blas_spinning() == spinning
            regions.clear()
            y = npconv.conv(x, w, padding=1, algorithm="winograd_jit")
            assert (max(regions, default=1) == 1) == spinning
            assert np.abs(y - expected).max() <= 1e-4 * np.abs(expected).max()


ROWS_CASES = [  # (size, kernel, pads, groups): 2-d, then 1-d
    ((9, 13), (3, 3), [(1, 1), (1, 1)], 1),
    ((5, 11), (3, 2), [(2, 0), (1, 3)], 2),
    ((7, 6), (5, 1), [(0, 1), (0, 0)], 1),
    ((4, 5), (1, 3), [(0, 9), (5, 1)], 3),  # rows wholly below, tiles wholly left of the image
    ((6, 4), (7, 3), [(3, 3), (1, 1)], 1),  # the kernel taller than the image
    ((17,), (3,), [(1, 1)], 1),
    ((3,), (2,), [(0, 4)], 3),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("size", "kernel", "pads", "groups"), ROWS_CASES)
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_winograd_rows_jit_matches_torch(layout, size, kernel, pads, groups, batch, rng):
    x = rng.standard_normal((batch, 6, *size))
    w = rng.standard_normal((12, 6 // groups, *kernel))
    bias = rng.standard_normal(12) if batch != 1 else None
    check("winograd_rows_jit", x, w, bias, layout, pads, 1e-12, groups=groups)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("chunk_bytes", [1, 2**14, 2**16, 2**30])
@pytest.mark.parametrize("size", [(21, 30), (70,)])
def test_winograd_rows_jit_float32_error_bound_over_chunks_and_threads(
    shared, chunk_bytes, size, rng, monkeypatch
):
    """Unit-scale float32 within 4e-5 of max |y| (the registry's error_scale x 1e-5), with
    a bias and the fused ReLU, in chunks of one tile (1 byte), of runs of tiles (2-d: 2
    runs of 4 a row), of output rows (2-d: one or two a chunk) or of the whole batch, run in turn
    or shared among two threads, each its own chunks; the operands unchanged."""
    monkeypatch.setattr(winograd_rows_jit, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(winograd_rows_jit, "CHUNK_TILES", 1)
    monkeypatch.setattr(winograd_rows_jit, "_shared", lambda spec: shared)
    x = rng.standard_normal((3, 40, *size)).astype(np.float32)
    w = rng.standard_normal((24, 40, *(3,) * len(size))).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    pads = [(1, 1)] * len(size)
    ref = torch_conv(x, w, bias, pads=pads)
    before = [a.copy() for a in (x, w, bias)]
    options = ConvOptions.create("conv", padding=1)
    with using_threads(2):
        y = convolve(options, x, w, bias, "winograd_rows_jit", relu=True)
    for a, b in zip((x, w, bias), before):
        np.testing.assert_array_equal(a, b)
    assert y.dtype == np.float32
    bound = REGISTRY["winograd_rows_jit"].error_scale * RTOL[np.dtype(np.float32)]
    np.testing.assert_allclose(y, np.maximum(ref, 0), rtol=0, atol=bound * np.abs(ref).max())


def test_winograd_rows_jit_keeps_the_filters_of_unchanged_weights(rng, monkeypatch):
    """The filters' rows are transformed on the first two calls (kept from the second),
    not on the next; again once the weights change in place, and from then on on every
    call (a training loop's). PyTorch's result every time."""
    npconv.free_workspaces()
    transforms = []
    transform = winograd_rows_jit._transform_rows
    monkeypatch.setattr(
        winograd_rows_jit, "_transform_rows", lambda *a: transforms.append(a) or transform(*a)
    )
    x = rng.standard_normal((2, 8, 12, 12))

    def transformed(w: np.ndarray) -> bool:
        transforms.clear()
        check("winograd_rows_jit", x, w, None, "NCHW", [(1, 1)] * 2, 1e-12)
        return bool(transforms)

    w = rng.standard_normal((6, 8, 3, 3))
    assert transformed(w) and transformed(w) and not transformed(w) and not transformed(w)
    w[-1, -1, -1, -1] += 1  # changed in place
    assert transformed(w) and transformed(w) and transformed(w)
    npconv.free_workspaces()


@pytest.mark.parametrize("nan", [(0, 0, 1, 2), (1, 3, 9, 0)], ids=["first", "last"])
def test_winograd_rows_jit_non_finite_values_are_computed_again(nan, rng):
    """A NaN in the input spreads through its tiles' transforms: the output transform
    finds the value it writes not finite and raises, and the dispatch computes the
    result again by a direct algorithm, NaN only where PyTorch has it."""
    x = rng.standard_normal((2, 4, 10, 9))
    x[nan] = np.nan
    w = rng.standard_normal((5, 4, 3, 3))
    spec = ConvSpec.build(x.shape, w.shape, padding=1)
    with pytest.raises(NonFinite, match="winograd_rows_jit"):
        winograd_rows_jit.conv_channels_first(x, w, spec)
    y = npconv.conv(x, w, padding=1, algorithm="winograd_rows_jit")
    ref = torch_conv(x, w, pads=[(1, 1), (1, 1)])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    finite = ~np.isnan(ref)
    bound = 1e-12 * np.abs(ref[finite]).max()
    np.testing.assert_allclose(y[finite], ref[finite], rtol=0, atol=bound)


def test_winograd_rows_jit_declines_strides_dilations_and_wide_kernels():
    x, w = np.ones((1, 2, 9, 9)), np.ones((2, 2, 3, 3))
    for kwargs in (dict(stride=2), dict(dilation=2)):
        with pytest.raises(ValueError, match="supports stride 1, dilation 1"):
            npconv.conv(x, w, algorithm="winograd_rows_jit", **kwargs)
    with pytest.raises(ValueError, match="kernels at most 3 wide"):
        npconv.conv(x, np.ones((2, 2, 3, 5)), algorithm="winograd_rows_jit")
    with pytest.raises(ValueError, match="not exact for integer"):
        npconv.conv(x.astype(int), w.astype(int), algorithm="winograd_rows_jit")
