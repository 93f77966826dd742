"""Hypothesis strategies for random convolution problems, shared by the test modules.

A drawn :class:`Case` holds channels-first arrays (PyTorch's NCHW / OIHW), the keyword
arguments for npconv, and the explicit ``(before, after)`` pads that an independent
reading of the ONNX / PyTorch rules gives, for the referee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st


@dataclass
class Case:
    x: np.ndarray  # (N, C, *spatial)
    w: np.ndarray  # (O, C/G, *kernel)
    bias: np.ndarray | None
    kwargs: dict[str, Any]  # stride, padding, dilation, groups, padding_mode
    pads: list[tuple[int, int]] = field(default_factory=list)  # for the referee

    @property
    def nd(self) -> int:
        return self.w.ndim - 2


def reference_pads(padding: Any, size, kernel, stride, dilation) -> list[tuple[int, int]]:
    """Explicit pads for every padding form, written from the ONNX operator text."""
    nd = len(size)
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nd
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            out = -(-n // s)  # ceil(n / s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
            half = total // 2
            pads.append((total - half, half) if padding == "same_lower" else (half, total - half))
        return pads
    if isinstance(padding[0], int):
        return [(p, p) for p in padding]
    return [tuple(p) for p in padding]


def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -20), min(info.max, 20), size=shape, dtype=dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(dtype)


def as_view(a: np.ndarray, how: str) -> np.ndarray:
    """The same values as ``a`` in a non-contiguous or Fortran-ordered array."""
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":  # every other element of a twice larger buffer
        big = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == "reversed":  # negative strides
        return a[..., ::-1].copy()[..., ::-1]
    return a


@st.composite
def cases(
    draw: st.DrawFn,
    dtypes: tuple[Any, ...] = (np.float64,),
    nds: tuple[int, ...] = (1, 2, 3),
    modes: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular"),
    max_batch: int = 2,
) -> Case:
    """A random valid convolution: every option the API has, small enough for the oracle."""
    nd = draw(st.sampled_from(nds))
    small = nd == 3  # keep 3-d problems small
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 2 if small else 3))
    og = draw(st.integers(1, 2 if small else 3))
    kernel = draw(st.tuples(*[st.integers(1, 3)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 3)] * nd))
    dilation = draw(st.tuples(*[st.integers(1, 2)] * nd))
    mode = draw(st.sampled_from(modes))
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    kinds = ["int", "ints", "pairs", "valid", "same"] + (["same_lower"] if mode == "zeros" else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "same" and mode != "zeros":  # defined (by PyTorch) at stride 1 only
        stride = (1,) * nd
    size = [draw(st.integers(e, e + 4 if not small else e + 2)) for e in extent]
    if kind == "int":
        padding: Any = draw(st.integers(0, min(size) - 1))
    elif kind == "ints":
        padding = tuple(draw(st.integers(0, n - 1)) for n in size)
    elif kind == "pairs":
        padding = tuple((draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))) for n in size)
    else:
        padding = kind
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    batch = draw(st.integers(0 if max_batch > 1 else 1, max_batch))
    c, o = groups * cg, groups * og
    x = random_array(rng, (batch, c, *size), dtype)
    w = random_array(rng, (o, cg, *kernel), dtype)
    bias = random_array(rng, (o,), dtype) if draw(st.booleans()) else None
    pads = reference_pads(padding, size, kernel, stride, dilation)
    assert all(n + lo + hi >= e for n, (lo, hi), e in zip(size, pads, extent))
    assert math.prod(kernel) >= 1
    kwargs = dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode
    )
    return Case(x, w, bias, kwargs, pads)
