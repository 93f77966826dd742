"""``winograd``: minimal filtering F(m, r) on tiles, the products as GEMMs over channels.

Winograd's minimal filtering computes ``m`` outputs of an ``r``-tap correlation from an
input tile of ``alpha = m + r - 1`` values with only ``alpha`` multiplications::

    y = AT @ ((G @ g) * (BT @ d))           # d: (alpha,) tile, g: (r,) taps, y: (m,)

Here the matrices come from Toom-Cook interpolation at the points 0, 1, -1, 2, -2, ...
and infinity (``V_k[j, i] = point_j ** i``): ``AT = V_m.T``, ``G = V_r`` and
``BT = inv(V_alpha).T`` (the transpose of Toom-Cook linear convolution is correlation).
In ``nd`` dims the matrices are Kronecker products, so one tile of ``prod(alpha)`` values
gives ``prod(m)`` outputs.  Over channels the elementwise product becomes, for each of
the ``prod(alpha)`` transform points, one matrix product::

    U = kron(BT) @ tiles          # (A, n*T*C): every input tile transformed, one GEMM
    M[a] = U[a] @ (kron(G) @ w)[a]  # (n*T, C/G) @ (C/G, O/G) per point and group
    Y = kron(AT) @ M              # (prod(m), n*T*O): back to output tiles, one GEMM

Cost: ``prod(alpha) / prod(m)`` multiplications per output instead of ``prod(r)``: F(4x4,
3x3) needs 36/16 = 2.25 instead of 9 (4x fewer), F(2x2, 3x3) 16/4 = 4; the two transforms
add work proportional to ``C + O`` (not ``C * O``), so it wins for 3x3 layers with many
channels.  Stride ``s`` is split into ``s`` kernel phases per axis (each a stride-1
convolution of every ``s``-th input with every ``s``-th tap) and dilation ``d`` into
``d`` output phases; kernels must be at most 3 taps per axis after that split.  An axis
with both is computed at stride 1 and subsampled.  Memory:
tiles are processed in chunks within :data:`npconv._windows.WORKSPACE_BYTES`, each stage
in one of the thread's reused buffers (:mod:`npconv._workspace`).

Error: the transforms amplify rounding.  On unit-scale random float32 data the largest
error relative to ``max |y|`` is ~4e-7 for F(2, 3) (as for a direct GEMM) and, for
F(4, 3), ~1e-6 in 1-d, ~7e-6 in 2-d and ~2e-5 in 3-d: both stay below 1e-4, which the
registry records in ``error_scale``, so ``auto`` may use either.  Integers are not
exact (the transforms have fractions).  Non-finite values: the transforms mix a whole
tile, so one NaN or Inf would spoil every output of its tiles (and Inf - Inf gives NaN);
where its result holds a value that is not finite (NaN or Inf in the operands, or an
overflow in the transforms), the dispatch computes it again by the cheapest direct
algorithm, which puts NaN and Inf exactly where the definition does.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._cost import gemm, units
from .._spec import ConvSpec
from .._windows import WORKSPACE_BYTES, chunks, reshaped_view, weight_first
from .._workspace import buffer

#: The finite interpolation points, in the order they are used (infinity is added last).
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
#: Largest kernel size per axis (after splitting strides into phases).
MAX_TAPS = 3


@functools.cache
def transforms(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(AT, G, BT)`` of F(m, r) in float64: ``(m, alpha)``, ``(alpha, r)``, ``(alpha, alpha)``.

    ``AT @ ((G @ g) * (BT @ d))`` is the correlation ``y[i] = sum_k d[i + k] g[k]``.
    """
    alpha = m + r - 1
    points = np.array(POINTS[: alpha - 1])

    def vandermonde(k: int) -> np.ndarray:  # (alpha, k): finite points, then infinity
        finite = points[:, None] ** np.arange(k)[None, :]
        infinity = np.eye(1, k, k - 1)
        return np.vstack([finite, infinity])

    bt = np.linalg.inv(vandermonde(alpha)).T
    # Move each row's scale from BT into G, so that BT holds small integers (as in
    # Lavin & Gray's matrices); the product is unchanged.
    scale = np.array([np.abs(row[np.abs(row) > 1e-12]).min() for row in bt])
    bt = bt / scale[:, None]
    bt = np.where(np.abs(bt - bt.round()) < 1e-9, bt.round(), bt)  # exact small integers
    return vandermonde(m).T, vandermonde(r) * scale[:, None], bt


@functools.cache
def _nd_transforms(ms: tuple[int, ...], taps: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """``(AT, G, BT)`` of the ``nd``-d F(ms, taps): Kronecker products of the 1-d ones."""
    mats = [transforms(m, r) for m, r in zip(ms, taps)]
    return tuple(functools.reduce(np.kron, [mat[i] for mat in mats]) for i in range(3))


def _stride1(x: np.ndarray, w: np.ndarray, out: tuple[int, ...], spec: ConvSpec, tile: int):
    """Stride-1, dilation-1 correlation of ``x`` (N, >= out + r - 1, C) with ``w`` (*r, C/G, O).

    Returns ``(N, *out, O)``.
    """
    nd, g, cg, og = spec.nd, spec.groups, spec.group_in, spec.group_out
    taps = w.shape[:nd]
    ms = tuple(1 if r == 1 else tile for r in taps)  # output tile per axis
    alphas = tuple(m + r - 1 for m, r in zip(ms, taps))  # input tile per axis
    tiles = tuple(-(-o // m) for o, m in zip(out, ms))  # tiles per axis (ceil)
    dtype = np.result_type(x, w)
    at, gw, bt = (mat.astype(dtype) for mat in _nd_transforms(ms, taps))
    a, mm = len(bt), len(at)  # prod(alpha), prod(m)
    n_taps, o = len(gw[0]), spec.out_channels
    if w.flags.c_contiguous:  # (*r, C/G, O), as given in "NHWC": one GEMM over the taps
        wt = (gw @ w.reshape(n_taps, cg * o)).reshape(a, cg, g, og).transpose(0, 2, 1, 3)
    else:  # a view of "NCHW" weights (O, C/G, *r): transform them where they lie
        w_first = weight_first(w).reshape(o * cg, n_taps)  # (O*C/G, R)
        wt = (gw @ w_first.T).reshape(a, g, og, cg).transpose(0, 1, 3, 2)
    # wt: (A, G, C/G, O/G), the transformed filters

    n_all = x.shape[0]
    y = np.empty((n_all, *out, spec.out_channels), dtype=dtype)
    tile_spec = replace(spec, batch=n_all, out_size=tiles)
    per_tile = dtype.itemsize * (a * (3 * spec.in_channels + spec.out_channels) + 2 * mm * og * g)

    def block(batch: slice, rows: slice) -> None:  # its temporaries are freed on return
        t0, t1, _ = rows.indices(tiles[0])
        t_chunk = (t1 - t0, *tiles[1:])
        starts = (t0 * ms[0],) + (0,) * (nd - 1)
        need = tuple(t * m + r - 1 for t, m, r in zip(t_chunk, ms, taps))
        region = tuple(slice(s, s + n) for s, n in zip(starts, need))
        xs = x[tuple([batch, *region])]  # (n, <= need..., C)
        if xs.shape[1:-1] != need:  # the last tiles overhang the input: zero-fill
            padded = buffer("region", (xs.shape[0], *need, xs.shape[-1]), dtype)
            padded[...] = 0
            padded[tuple(slice(0, k) for k in xs.shape)] = xs
            xs = padded
        n = xs.shape[0]
        st_n, *st_ax, st_c = xs.strides
        view = as_strided(
            xs,
            shape=(n, *t_chunk, *alphas, xs.shape[-1]),
            strides=(st_n, *(s * m for s, m in zip(st_ax, ms)), *st_ax, st_c),
            writeable=False,
        )  # (n, *tiles, *alpha, C): overlapping input tiles
        order = (*range(1 + nd, 1 + 2 * nd), 0, *range(1, 1 + nd), 1 + 2 * nd)
        tiles_first = view.transpose(order)  # (*alpha, n, *tiles, C)
        d = buffer("patches", tiles_first.shape, dtype)
        np.copyto(d, tiles_first)
        d = d.reshape(a, -1)  # (A, n*T*C), every tile's values at one tile offset in a row
        u = np.matmul(bt, d, out=buffer("transformed", d.shape, dtype))
        u = u.reshape(a, -1, g, cg).transpose(0, 2, 1, 3)  # (A, G, n*T, C/G)
        prod = np.matmul(u, wt, out=buffer("products", (a, g, u.shape[2], og), dtype))
        # prod: (A, G, n*T, O/G)
        if g > 1:  # to (A, n*T, G, O/G), in u's buffer (no longer needed)
            by_point = buffer("transformed", (a, u.shape[2], g, og), dtype)
            np.copyto(by_point, prod.transpose(0, 2, 1, 3))
            prod = by_point
        prod = prod.reshape(a, -1)  # (A, n*T*O)
        yt = np.matmul(at, prod, out=buffer("tiles", (mm, prod.shape[1]), dtype))
        yt = yt.reshape(*ms, n, *t_chunk, spec.out_channels)  # (*m, n, *T, O)
        inter = [ax for i in range(nd) for ax in (nd + 1 + i, i)]  # T_0, m_0, T_1, m_1, ...
        yt = yt.transpose(nd, *inter, 2 * nd + 1)  # (n, T_0, m_0, T_1, m_1, ..., O)
        sizes = tuple(t * m for t, m in zip(t_chunk, ms))  # (T_0*m_0, ...): tiled outputs
        r0 = t0 * ms[0]
        r1 = min(t1 * ms[0], out[0])
        target = y[batch, r0:r1]  # (n, r1 - r0, *out[1:], O)
        tiled = reshaped_view(target, yt.shape) if target.shape[1:-1] == sizes else None
        if tiled is not None:  # the tiles cover these outputs exactly: one copy into y
            np.copyto(tiled, yt)
            return
        whole = buffer("products", yt.shape, dtype)  # prod's buffer, no longer needed
        np.copyto(whole, yt)
        whole = whole.reshape(n, *sizes, spec.out_channels)  # (n, T_0*m_0, ..., O)
        crop = tuple([slice(None), slice(0, r1 - r0), *(slice(0, o) for o in out[1:])])
        target[...] = whole[crop]  # cropped to the outputs of this chunk

    for batch, rows in chunks(tile_spec, per_tile, WORKSPACE_BYTES):
        block(batch, rows)
    return y


def _phases(spec: ConvSpec, axis: int) -> list[tuple[slice, slice, slice]]:
    """(input, kernel, output) slices that split one axis into stride-1, dilation-1 parts."""
    s, d, r, o = spec.stride[axis], spec.dilation[axis], spec.kernel[axis], spec.out_size[axis]
    if s > 1:  # taps q*s + rho read inputs (p + q)*s + rho: a stride-1 conv per phase rho
        return [(slice(rho, None, s), slice(rho, None, s), slice(None)) for rho in range(min(s, r))]
    # outputs q*d + ph read inputs (q + k)*d + ph: a dilation-1 conv per phase ph
    return [(slice(ph, None, d), slice(None), slice(ph, None, d)) for ph in range(min(d, o))]


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None."""
    for axis, (s, d, r) in enumerate(zip(spec.stride, spec.dilation, spec.kernel)):
        if -(-r // s) > MAX_TAPS or (d > 1 and r > MAX_TAPS):
            return (
                f"it supports at most {MAX_TAPS} taps per axis (after splitting the stride "
                f"into phases), axis {axis} has kernel {r} at stride {s}"
            )
    return None


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec, tile: int = 4) -> np.ndarray:
    """Winograd F(tile, r) convolution of canonical arguments (see :mod:`npconv._windows`)."""
    both = [s > 1 and d > 1 for s, d in zip(spec.stride, spec.dilation)]
    if any(both):  # stride and dilation on one axis: compute at stride 1, then subsample
        stride = tuple(1 if b else s for b, s in zip(both, spec.stride))
        sizes = zip(spec.padded_size, spec.extent, stride)
        dense = replace(spec, stride=stride, out_size=tuple((p - e) // s + 1 for p, e, s in sizes))
        keep = [slice(None, None, s if b else 1) for b, s in zip(both, spec.stride)]
        return np.ascontiguousarray(conv(xp, wc, dense, tile)[tuple([slice(None), *keep])])
    y = np.zeros((spec.batch, *spec.out_size, spec.out_channels), dtype=np.result_type(xp, wc))
    if y.size == 0:
        return y
    phases = list(itertools.product(*(_phases(spec, axis) for axis in range(spec.nd))))
    if len(phases) == 1:  # one phase covers every output: no accumulation needed
        x_in, w_in, _ = zip(*phases[0])
        return _stride1(xp[tuple([slice(None), *x_in])], wc[w_in], spec.out_size, spec, tile)
    for parts in phases:
        x_in, w_in, y_out = zip(*parts)
        target = y[tuple([slice(None), *y_out])]  # (N, *phase_out, O): a view of y
        target += _stride1(
            xp[tuple([slice(None), *x_in])], wc[w_in], target.shape[1:-1], spec, tile
        )
    return y


def filter_work(points: int, filters: int, item: int) -> Counter[str]:
    """The filters' transform, ``(points, taps) @ (taps, filters)``: bound by memory.

    Its result is ``points / taps`` times the filters and the GEMM's inner dimension is
    the kernel's taps, so it runs at memory speed: priced as twelve passes over its
    result (measured for F(4x4, 3x3) on two cores, ``36 x 9 @ 9 x C*O``: 0.24, 0.23, 2.0
    and 14-19 ms for 64, 128, 256 and 512 channels, where a copy of the 38 MB result of
    512 takes 6 ms; priced 0.2, 0.7, 2.3 and 9.2 ms).
    """
    return units(passes=12 * points * filters * item, calls=1)


def work(spec: ConvSpec, dtype: np.dtype, tile: int = 4) -> Counter[str]:
    """Per phase: weight, input and output transforms (GEMMs) and the products per point."""
    item = max(np.dtype(dtype).itemsize, 4)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    phases = math.prod(len(_phases(spec, axis)) for axis in range(spec.nd))
    taps = [-(-r // s) for r, s in zip(spec.kernel, spec.stride)]
    outs = [-(-o // d) for o, d in zip(spec.out_size, spec.dilation)]
    ms = [1 if r == 1 else tile for r in taps]
    a = math.prod(m + r - 1 for m, r in zip(ms, taps))  # points per tile
    mm = math.prod(ms)  # outputs per tile
    t = spec.batch * math.prod(-(-o // m) for o, m in zip(outs, ms))  # tiles
    c, o = spec.in_channels, spec.out_channels
    total = filter_work(a, cg * o, item)
    # gather the input tiles; reorder the output tiles, then crop them into the result
    total["copy"] += a * t * c * item + 2 * mm * t * o * item
    total += gemm(a, a, t * c, 1, item)  # input transform
    total += gemm(t, cg, og, a * g, item)  # the products over channels
    if g > 1:
        total["copy"] += a * t * (c + o) * item  # transposes to and from group order
    total += gemm(mm, a, t * o, 1, item)  # output transform
    return Counter({kind: phases * n for kind, n in total.items()})
