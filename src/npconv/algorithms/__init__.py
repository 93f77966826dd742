"""The registry of convolution algorithms: one module each, one row each here.

A forward algorithm is a plain function ``conv(xp, wc, spec) -> y`` over canonical,
validated arguments (see :mod:`npconv._windows`): a padded channels-last input
``(N, *padded, C)``, a weight ``(*kernel, C/G, O)`` and a :class:`~npconv.ConvSpec`; it
returns ``(N, *out, O)``.  It may also have a channels-first form, and an algorithm
may compute transposed convolutions directly (``adjoint``).  Each row says what its
function supports and carries its cost (``work``, in the units of :mod:`npconv._cost`),
defined in the algorithm's own module.  ``"auto"``, the list in
:func:`npconv.algorithms` and the error for an unknown name all read :data:`REGISTRY`;
this table is data, and the choice among its rows lives above it
(:mod:`npconv._choose`).

At the top level, ``npconv.algorithms`` is the function that lists the names; import
from this package as ``from npconv.algorithms import REGISTRY``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from .._jit import unavailable
from .._spec import ConvSpec
from .._windows import TEMPORARY_BYTES
from . import (
    blocked_jit,
    col2im,
    depthwise,
    depthwise_jit,
    direct_jit,
    einsum,
    fft,
    im2col,
    im2col_jit,
    matrix,
    naive,
    shifted,
    winograd,
    winograd_jit,
    winograd_rows_jit,
)

__all__ = ["REGISTRY", "Algorithm", "Kernel", "WeightGradient"]

Kernel = Callable[..., np.ndarray]


def _memory_reason(need: int, spec: ConvSpec, dtype: np.dtype) -> str | None:
    """Why ``need`` bytes of temporaries are too many for ``spec``, or None."""
    result = spec.batch * math.prod(spec.out_size) * spec.out_channels * dtype.itemsize
    limit = max(TEMPORARY_BYTES, result)
    if need <= limit:
        return None
    return (
        f"it would hold {need:,} bytes of temporaries, more than its limit of "
        f"{limit:,} (64 MiB, or the result's size)"
    )


@dataclass(frozen=True)
class WeightGradient:
    """An algorithm's own weight gradient of the forward convolutions it runs.

    :func:`npconv._dispatch.run_weight_gradient` uses it where the algorithm is named,
    and under "auto" where its ``work`` is estimated below that of the weight
    gradient's convolution (:func:`npconv._choose.weight_gradient_choice`).
    """

    #: Channels-first: the unpadded input ``(N, C, *in_size)`` and the output gradient
    #: ``(N, O, *out)`` -> ``(O, C/G, *kernel)``; it applies the spec's zero pads.
    fn: Kernel
    work: Callable[[ConvSpec, np.dtype], Counter[str]]
    #: Bytes of the temporaries it holds at once (limited as the row's ``memory``).
    memory: Callable[[ConvSpec, np.dtype], int]


@dataclass(frozen=True)
class Algorithm:
    """One entry of the registry: the functions, what they support, and their cost."""

    name: str
    summary: str
    #: Units of work on a problem (:mod:`npconv._cost`), for "auto".
    work: Callable[[ConvSpec, np.dtype], Counter[str]]
    #: The convolution on channels-last arguments: ``(N, *padded, C)``, ``(*kernel, C/G,
    #: O)`` -> ``(N, *out, O)``; None for an algorithm that only transposes.
    fn: Kernel | None = None
    #: The same on channels-first arguments: padded input (N, C, *padded), weight
    #: (O, C/G, *kernel), result (N, O, *out); the dispatch uses it for "NCHW" data.
    fn_channels_first: Kernel | None = None
    #: ``fn_channels_first`` for one spec, result dtype, bias or none and ReLU or none, as
    #: a function of the arrays alone, ``(xp, w, bias) -> y``, whose shapes and choices
    #: are made once; or None where it makes none for that spec.  The dispatch keeps it
    #: for later calls of the same signature (:func:`npconv._dispatch.convolve`).
    plan_channels_first: Callable[[ConvSpec, np.dtype, bool, bool], Kernel | None] | None = None
    #: The transposed convolution ``A^T gy`` itself: channels-last ``(N, *out, O)`` and
    #: ``(*kernel, C/G, O)`` -> ``(N, *padded, C)``.  Algorithms without it transpose
    #: through phases of forward convolutions.
    adjoint: Kernel | None = None
    #: The weight gradient by its own products, for channels-first data: padded input
    #: ``(N, C, *padded)`` and output gradient ``(N, O, *out)`` -> ``(O, C/G, *kernel)``.
    #: Where the weight gradient's convolution (:func:`npconv._adjoint.weight_gradient`)
    #: would run by this algorithm on floats in "NCHW", the dispatch calls it instead
    #: (without transposing the input and the output gradient).
    weight_grad_channels_first: Kernel | None = None
    #: Its own weight gradient of the forward convolutions it runs (by its transforms),
    #: where that is cheaper than the weight gradient's convolution; or None.
    weight_grad: WeightGradient | None = None
    dims: tuple[int, ...] = (1, 2, 3)
    exact_integers: bool = True  # integer inputs give exact integer results
    python_ints: bool = True  # runs on object arrays of Python ints (beyond int64)
    max_macs: int | None = None  # largest problem accepted, in multiply-accumulates
    #: Bytes of the temporaries it holds at once, where chunks within WORKSPACE_BYTES do
    #: not bound them: it refuses problems needing more than ``max(TEMPORARY_BYTES, the
    #: result's bytes)``.  None: its chunks bound them.
    memory: Callable[[ConvSpec, np.dtype], int] | None = None
    error_scale: float = 1.0  # float error relative to a direct (GEMM) algorithm's
    limits: Callable[[ConvSpec], str | None] | None = None  # other restrictions, or None
    #: Its functions take ``bias=`` (one value per output channel) and add it themselves,
    #: folded into their matrix products; otherwise the dispatch adds it to the result.
    adds_bias: bool = False
    #: Its functions (which add the bias) also take ``relu=True`` and apply ``max(y, 0)``
    #: in their own passes over the result (a network's ReLU after the convolution);
    #: otherwise the dispatch applies it in a pass of its own.
    fuses_relu: bool = False
    #: It computes through transforms (winograd, fft), which mix every value of a tile or
    #: sample: a NaN or Inf would spread beyond the outputs that sum it, and large finite
    #: values could overflow where the result does not.  Either leaves a non-finite value
    #: in its result (or weight gradient), which the dispatch then computes again by a
    #: direct algorithm, whose every intermediate value is a partial sum of the
    #: definition's products.
    transforms: bool = False
    #: Its forward functions test each value of their result as they write it and raise
    #: :class:`npconv._operands.NonFinite` where one is not finite; the dispatch then
    #: does not check the result again.
    checks_result: bool = False
    #: Its functions take the unpadded input, ``(N, *in_size, C)`` or ``(N, C, *in_size)``,
    #: and apply the spec's zero pads themselves; for another padding mode the dispatch
    #: pads and passes :meth:`ConvSpec.valid`.
    pads_itself: bool = False
    #: Its kernels are compiled by numba (the ``jit`` extra): without numba it declines.
    compiled: bool = False
    #: It shares its work among npconv's own threads, and runs on the calling thread
    #: alone where a batch smaller than the threads follows multi-threaded BLAS
    #: (:func:`npconv._threads.runs_alone`); "auto" then prices it on
    #: :data:`npconv._choose.ALONE_THREADS` threads.
    own_threads: bool = False
    #: Its ``work`` where the arrays it derives from the weight alone (Winograd's
    #: transformed filters) are kept from call to call (:func:`npconv._workspace.kept`):
    #: "auto" prices it so where the call's weights are steady (see
    #: :func:`npconv._choose.choose`).  None: ``work`` either way.
    kept_work: Callable[[ConvSpec, np.dtype], Counter[str]] | None = None

    def unsupported(self, spec: ConvSpec, dtype: np.dtype, transposed: bool = False) -> str | None:
        """Why this algorithm's own function cannot run ``spec`` in ``dtype``, or None.

        ``transposed`` asks about its ``adjoint`` (the transposed convolution of
        ``spec``), otherwise about its forward function.
        """
        if self.compiled and (missing := unavailable()) is not None:
            return missing
        if transposed and self.adjoint is None:
            return "it has no transposed form of its own"
        if not transposed and self.fn is None:
            return "it computes transposed convolutions (and input gradients) only"
        if dtype.kind in "iuO" and not self.exact_integers:
            return "it is not exact for integer inputs"
        if dtype.kind == "O" and not self.python_ints:
            return "it cannot compute with Python ints (partial sums beyond int64)"
        if spec.nd not in self.dims:
            return f"it supports {self.dims}-d convolutions, not {spec.nd}-d"
        if self.max_macs is not None and spec.macs > self.max_macs:
            return (
                f"the problem has {spec.macs:,} multiply-accumulates, more than its "
                f"limit of {self.max_macs:,}"
            )
        why = None if self.memory is None else _memory_reason(self.memory(spec, dtype), spec, dtype)
        if why is None and self.limits is not None:
            why = self.limits(spec)
        return why

    def weight_unsupported(self, spec: ConvSpec, dtype: np.dtype) -> str | None:
        """Why its own weight gradient cannot run the forward ``spec`` in ``dtype``, or None."""
        if self.weight_grad is None:
            return "it has no weight gradient of its own"
        why = self.unsupported(spec, dtype)
        return why or _memory_reason(self.weight_grad.memory(spec, dtype), spec, dtype)


REGISTRY: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            "naive",
            "Python loops over every product (the oracle)",
            naive.work,
            naive.conv,
            max_macs=naive.MAX_MACS,
        ),
        Algorithm(
            "shifted", "one matmul per kernel offset over shifted views", shifted.work, shifted.conv
        ),
        Algorithm(
            "im2col",
            "patch matrix (strided view) times weights, chunked",
            im2col.work,
            im2col.conv,
            fn_channels_first=im2col.conv_channels_first,
            plan_channels_first=im2col.pointwise_plan,
            weight_grad_channels_first=im2col.weight_grad_channels_first,
            adds_bias=True,
            fuses_relu=True,
            pads_itself=True,
        ),
        Algorithm(
            "im2col_jit",
            "im2col with a compiled patch gather (numba), zero padding fused; pads itself",
            im2col_jit.work,
            im2col_jit.conv,
            fn_channels_first=im2col_jit.conv_channels_first,
            weight_grad_channels_first=im2col_jit.weight_grad_channels_first,
            dims=(1, 2),
            python_ints=False,
            adds_bias=True,
            fuses_relu=True,
            pads_itself=True,
            compiled=True,
        ),
        Algorithm(
            "einsum", "sliding windows contracted by np.einsum, chunked", einsum.work, einsum.conv
        ),
        Algorithm(
            "matrix",
            "one product with the sparse convolution matrix",
            matrix.work,
            matrix.conv,
            python_ints=False,  # scipy.sparse has no object dtype
            memory=matrix.memory,
        ),
        Algorithm(
            "winograd",
            "Winograd F(4x4, 3x3) tiles: 2.25 instead of 9 products per output",
            winograd.work,
            winograd.conv,
            exact_integers=False,
            error_scale=10.0,  # float32: within 1e-4 of max |y| on unit-scale data
            limits=winograd.unsupported,
            transforms=True,
        ),
        Algorithm(
            "winograd_f2",
            "Winograd F(2x2, 3x3) tiles: 4 instead of 9 products, half the rounding error",
            partial(winograd.work, tile=2),
            partial(winograd.conv, tile=2),
            exact_integers=False,
            error_scale=2.0,
            limits=winograd.unsupported,
            transforms=True,
        ),
        Algorithm(
            "winograd_jit",
            "Winograd F(4x4, 3x3), compiled transforms (numba) around BLAS; pads itself",
            winograd_jit.work,
            winograd_jit.conv,
            fn_channels_first=winograd_jit.conv_channels_first,
            dims=(2,),
            exact_integers=False,
            error_scale=10.0,  # as winograd's F(4x4, 3x3)
            memory=winograd_jit.memory,
            weight_grad=WeightGradient(
                winograd_jit.weight_grad,
                winograd_jit.weight_work,
                winograd_jit.weight_memory,
            ),
            limits=winograd_jit.unsupported,
            adds_bias=True,
            fuses_relu=True,
            transforms=True,
            checks_result=True,
            pads_itself=True,
            compiled=True,
            own_threads=True,
            kept_work=winograd_jit.kept_work,
        ),
        Algorithm(
            "winograd_rows_jit",
            "Winograd F(4, 3) along rows (numba transforms), kernel rows summed by GEMMs",
            winograd_rows_jit.work,
            winograd_rows_jit.conv,
            fn_channels_first=winograd_rows_jit.conv_channels_first,
            dims=(1, 2),
            exact_integers=False,
            error_scale=4.0,  # F(4, 3) in one dimension (float32: 2.5e-6 of max |y|)
            memory=winograd_rows_jit.memory,
            limits=winograd_rows_jit.unsupported,
            adds_bias=True,
            fuses_relu=True,
            transforms=True,
            checks_result=True,
            pads_itself=True,
            compiled=True,
            kept_work=winograd_rows_jit.kept_work,
        ),
        Algorithm(
            "fft",
            "products of spectra (scipy.fft), for large kernels and images",
            fft.work,
            fft.conv,
            exact_integers=False,
            error_scale=10.0,
            transforms=True,
            memory=fft.memory,
        ),
        Algorithm(
            "depthwise",
            "per-channel multiply-accumulate over kernel offsets, for groups == channels",
            depthwise.work,
            depthwise.conv,
        ),
        Algorithm(
            "depthwise_jit",
            "compiled per-channel taps (numba): depthwise layers, any groups; pads itself",
            depthwise_jit.work,
            depthwise_jit.conv,
            fn_channels_first=depthwise_jit.conv_channels_first,
            weight_grad_channels_first=depthwise_jit.weight_grad_channels_first,
            python_ints=False,
            compiled=True,
            own_threads=True,
            adds_bias=True,
            pads_itself=True,
        ),
        Algorithm(
            "direct_jit",
            "compiled 3x3 taps (numba), two outputs by two rows a pass: few channels",
            direct_jit.work,
            direct_jit.conv,
            fn_channels_first=direct_jit.conv_channels_first,
            dims=(2,),
            exact_integers=False,
            python_ints=False,
            memory=direct_jit.memory,
            limits=direct_jit.unsupported,
            adds_bias=True,
            pads_itself=True,
            compiled=True,
        ),
        Algorithm(
            "blocked_jit",
            "direct taps (numba), a block of outputs in vector registers; pads itself",
            blocked_jit.work,
            blocked_jit.conv,
            fn_channels_first=blocked_jit.conv_channels_first,
            dims=(2,),
            exact_integers=False,
            python_ints=False,
            memory=blocked_jit.memory,
            limits=blocked_jit.unsupported,
            adds_bias=True,
            fuses_relu=True,
            pads_itself=True,
            compiled=True,
            own_threads=True,
        ),
        Algorithm(
            "col2im",
            "transposed convolution: one GEMM, then strided adds of its columns",
            col2im.work,
            adjoint=col2im.adjoint,
        ),
    )
}
