"""Convolutions of dask arrays: batches and images larger than memory (``dask`` extra).

:func:`conv` keeps the input's chunking: every chunk of the batch axis and of the
spatial axes becomes one chunk of the result, computed by :func:`npconv.conv` on the
chunk plus the halo its receptive fields reach into the neighbouring chunks.
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt

from ._choose import check_name
from ._dispatch import convolve
from ._operands import as_array, bind_shapes, checked_bias, compute_dtypes
from ._spec import ConvOptions, ConvSpec, IntOrTuple, PaddingArg
from ._windows import NP_PAD_MODE

__all__ = ["conv"]


def conv(
    x: da.Array,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    algorithm: str = "auto",
) -> da.Array:
    """:func:`npconv.conv` of a dask array: lazy, chunk by chunk, exact.

    Parameters
    ----------
    x : dask.array.Array
        Input, ``(N, C, *spatial)`` for ``layout="NCHW"`` or ``(N, *spatial, C)`` for
        ``"NHWC"`` (the batch axis may be left out), chunked in any way.
    w, bias, stride, padding, dilation, groups, padding_mode, layout, algorithm
        As for :func:`npconv.conv`; ``w`` and ``bias`` are (small) in-memory arrays.

    Returns
    -------
    dask.array.Array
        Lazy, the shape and dtype of ``npconv.conv(x.compute(), w, ...)`` and equal to it.
        Its batch chunks are ``x``'s; along each spatial axis, output ``p`` belongs to the
        chunk of ``x`` that holds its receptive field's first element; channels form one
        chunk.

    Raises
    ------
    TypeError
        ``x`` is not a dask array, and the errors of :func:`npconv.conv`.
    ValueError
        ``x`` has chunks of unknown size, and the errors of :func:`npconv.conv`, raised
        here rather than at compute time (an algorithm that declines a chunk raises when
        that chunk is computed).

    Notes
    -----
    The input is padded lazily (``dask.array.pad`` in the padding mode), then each output
    chunk ``[a, b)`` of an axis reads the padded input ``[a * stride, (b - 1) * stride +
    dilation * (kernel - 1) + 1)``: its own chunk plus a halo of
    ``dilation * (kernel - 1) + 1 - stride`` elements, from as many neighbouring chunks
    as that takes.  Because every output chunk starts on a multiple of the stride, the
    chunks together compute exactly the full convolution, whatever the chunk sizes.  A
    chunk's workspace is that of :func:`npconv.conv` on it.

    Examples
    --------
    >>> import dask.array as da, numpy as np, npconv, npconv.dask
    >>> x = da.random.default_rng(0).standard_normal((2, 3, 64, 64), chunks=(1, 3, 20, 20))
    >>> w = np.ones((4, 3, 5, 5))
    >>> y = npconv.dask.conv(x, w, stride=2, padding="same")
    >>> y.shape, y.chunks[2]
    ((2, 4, 32, 32), (11, 10, 10, 1))
    >>> np.allclose(y.compute(), npconv.conv(x.compute(), w, stride=2, padding="same"))
    True
    """
    fn = "npconv.dask.conv"
    if not isinstance(x, da.Array):
        raise TypeError(
            f"{fn}: x must be a dask.array.Array, got {type(x).__name__}; "
            "use npconv.conv for in-memory arrays"
        )
    if any(math.isnan(n) for n in x.shape):
        raise ValueError(
            f"{fn}: x has unknown chunk sizes (shape {x.shape}); call x.compute_chunk_sizes() first"
        )
    w = as_array(fn, "w", w)
    options = ConvOptions.create(fn, stride, padding, dilation, groups, padding_mode, layout)
    spec, unbatched = bind_shapes(options, x.shape, w.shape)
    x = x[None] if unbatched else x
    operands = [np.empty(0, x.dtype), w]
    bias = checked_bias(fn, bias, spec.out_channels)  # now, not in every chunk
    if bias is not None:
        operands.append(bias)
    _, result_dtype = compute_dtypes(fn, *operands)
    check_name(algorithm, fn)  # the chunks check the rest
    # each chunk: the valid convolution of its padded input window
    chunk_options = ConvOptions.create(
        fn, stride=spec.stride, dilation=spec.dilation, groups=spec.groups, layout=spec.layout
    )

    first = 1 if spec.layout == "NHWC" else 2  # index of the first spatial axis
    pad_width = [(0, 0)] * x.ndim
    pad_width[first : first + spec.nd] = spec.pads
    xp = da.pad(x, pad_width, mode=NP_PAD_MODE[spec.padding_mode]) if spec.padded else x

    bounds = [_bounds(x.chunks[0])]  # output chunk edges per axis, in the output's order
    bounds += [
        _output_bounds(x.chunks[first + i], lo, s, out)
        for i, ((lo, _), s, out) in enumerate(zip(spec.pads, spec.stride, spec.out_size))
    ]
    channel_axis = 1 if spec.layout == "NCHW" else x.ndim - 1
    blocks = {}
    for index in itertools.product(*(range(len(b) - 1) for b in bounds)):
        (n0, n1), *spans = [(b[i], b[i + 1]) for b, i in zip(bounds, index)]
        window = [slice(n0, n1)] + [
            slice(a * s, (b - 1) * s + e) for (a, b), s, e in zip(spans, spec.stride, spec.extent)
        ]
        if spec.layout == "NCHW":
            window.insert(1, slice(None))
        piece = xp[tuple(window)].rechunk(-1)  # this output chunk's input, with its halo
        shape = (n1 - n0, *(b - a for a, b in spans))
        key = (*index[:channel_axis], 0, *index[channel_axis:])  # channels: one chunk
        blocks[key] = piece.map_blocks(
            partial(convolve, chunk_options),
            w,
            bias,
            algorithm,
            dtype=result_dtype,
            chunks=_with_channels(shape, spec),
            meta=np.empty((0,) * x.ndim, result_dtype),
        )
    counts = [len(b) - 1 for b in bounds]
    counts.insert(channel_axis, 1)
    y = da.block(_nest(blocks, counts, ()))
    return y[0] if unbatched else y


def _bounds(chunks: tuple[int, ...]) -> list[int]:
    """Chunk sizes as edges: (2, 3) -> [0, 2, 5]."""
    return [0, *itertools.accumulate(chunks)]


def _output_bounds(chunks: tuple[int, ...], pad_before: int, stride: int, out: int) -> list[int]:
    """Output chunk edges along one axis: output ``p`` goes with the input chunk holding its
    window's first element ``p * stride - pad_before`` (an empty chunk is dropped)."""
    edges = [min(max(math.ceil((b + pad_before) / stride), 0), out) for b in _bounds(chunks)]
    edges[0], edges[-1] = 0, out
    return sorted(set(edges))


def _with_channels(shape: tuple[int, ...], spec: ConvSpec) -> tuple[int, ...]:
    """(n, *out) with the output channels inserted at the layout's place."""
    if spec.layout == "NCHW":
        return (shape[0], spec.out_channels, *shape[1:])
    return (*shape, spec.out_channels)


def _nest(blocks: dict, counts: list[int], prefix: tuple[int, ...]) -> Any:
    """``blocks[(i0, i1, ...)]`` as the nested lists :func:`dask.array.block` takes."""
    if len(prefix) == len(counts):
        return blocks[prefix]
    return [_nest(blocks, counts, (*prefix, i)) for i in range(counts[len(prefix)])]
