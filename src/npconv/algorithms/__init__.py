"""The registry of convolution algorithms: one module each, one row each here.

Every algorithm is a plain function ``conv(xp, wc, spec) -> y`` over canonical,
validated arguments (see :mod:`npconv._windows`): a padded channels-last input
``(N, *padded, C)``, a weight ``(*kernel, C/G, O)`` and a :class:`~npconv._spec.ConvSpec`;
it returns ``(N, *out, O)``.  ``"auto"``, the list in :func:`npconv.algorithms` and the
error for an unknown name all read :data:`REGISTRY`.

At the top level, ``npconv.algorithms`` is the function that lists the names; import
from this package as ``from npconv.algorithms import REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from .._spec import ConvSpec
from . import depthwise, einsum, fft, im2col, matrix, naive, shifted, winograd

__all__ = ["REGISTRY", "Algorithm", "choose", "get_algorithm"]


@dataclass(frozen=True)
class Algorithm:
    """One entry of the registry: the function and what it supports."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, ConvSpec], np.ndarray]
    summary: str
    dims: tuple[int, ...] = (1, 2, 3)
    exact_integers: bool = True  # integer inputs give exact integer results
    python_ints: bool = True  # runs on object arrays of Python ints (beyond int64)
    max_macs: int | None = None  # largest problem accepted, in multiply-accumulates
    error_scale: float = 1.0  # float error relative to a direct (GEMM) algorithm's
    limits: Callable[[ConvSpec], str | None] | None = None  # other restrictions, or None
    #: The same algorithm on channels-first arguments: padded input (N, C, *padded),
    #: weight (O, C/G, *kernel), result (N, O, *out).  ``conv`` uses it for "NCHW" data.
    fn_channels_first: Callable[[np.ndarray, np.ndarray, ConvSpec], np.ndarray] | None = None
    #: Both functions take ``bias=`` (one value per output channel) and add it themselves,
    #: folded into their matrix products; otherwise ``conv`` adds it to the result.
    adds_bias: bool = False

    def unsupported(self, spec: ConvSpec, dtype: np.dtype) -> str | None:
        """Why this algorithm cannot run ``spec`` computing in ``dtype``, or None."""
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
        return None if self.limits is None else self.limits(spec)


REGISTRY: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            "naive",
            naive.conv,
            "Python loops over every product (the oracle)",
            max_macs=naive.MAX_MACS,
        ),
        Algorithm("shifted", shifted.conv, "one matmul per kernel offset over shifted views"),
        Algorithm(
            "im2col",
            im2col.conv,
            "patch matrix (strided view) times weights, chunked",
            fn_channels_first=im2col.conv_channels_first,
            adds_bias=True,
        ),
        Algorithm("einsum", einsum.conv, "sliding windows contracted by np.einsum, chunked"),
        Algorithm(
            "matrix",
            matrix.conv,
            "one product with the sparse convolution matrix",
            python_ints=False,  # scipy.sparse has no object dtype
        ),
        Algorithm(
            "winograd",
            winograd.conv,
            "Winograd F(4x4, 3x3) tiles: 2.25 instead of 9 products per output",
            exact_integers=False,
            error_scale=10.0,  # float32: within 1e-4 of max |y| on unit-scale data
            limits=winograd.unsupported,
        ),
        Algorithm(
            "winograd_f2",
            partial(winograd.conv, tile=2),
            "Winograd F(2x2, 3x3) tiles: 4 instead of 9 products, half the rounding error",
            exact_integers=False,
            error_scale=2.0,
            limits=winograd.unsupported,
        ),
        Algorithm(
            "fft",
            fft.conv,
            "products of spectra (scipy.fft), for large kernels and images",
            exact_integers=False,
            error_scale=10.0,
        ),
        Algorithm(
            "depthwise",
            depthwise.conv,
            "per-channel multiply-accumulate over kernel offsets, for groups == channels",
        ),
    )
}


def get_algorithm(name: str, spec: ConvSpec, dtype: np.dtype, fn: str = "conv") -> Algorithm:
    """The algorithm called ``name`` ("auto" chooses), checked against ``spec`` and ``dtype``.

    ``dtype`` is the dtype the convolution is computed in.
    """
    if name == "auto":
        return REGISTRY[choose(spec, dtype)]
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(
            f"{fn}: unknown algorithm {name!r}; choose 'auto' or one of {sorted(REGISTRY)}"
        )
    algorithm = REGISTRY[name]
    reason = algorithm.unsupported(spec, dtype)
    if reason is not None:
        raise ValueError(f"{fn}: algorithm {name!r} cannot run this convolution: {reason}")
    return algorithm


def choose(spec: ConvSpec, dtype: np.dtype) -> str:
    """The algorithm "auto" uses for ``spec`` computed in ``dtype``.

    The one remembered by :func:`npconv.tune` for this configuration, otherwise the
    supported algorithm with the lowest estimated time (:mod:`npconv._autotune`).
    """
    from .._autotune import choose as choose_by_cost  # the cost model reads REGISTRY

    return choose_by_cost(spec, dtype)
