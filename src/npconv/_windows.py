"""Steps shared by the algorithms: layout, padding, sliding windows, chunks, side by side.

Canonical forms (what every algorithm receives):

* input ``xp``: channels-last and already padded, ``(N, *padded_size, C)``;
* weight ``wc``: ``(*kernel, C/G, O)`` (TensorFlow's HWIO), output channels grouped as
  ``O = G * (O/G)`` with group ``g`` owning channels ``g*O/G .. (g+1)*O/G - 1``;
* result: channels-last ``(N, *out_size, O)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._spec import ConvSpec
from ._threads import even_runs, get_threads
from ._workspace import buffer

__all__ = [
    "NP_PAD_MODE",
    "TEMPORARY_BYTES",
    "WORKSPACE_BYTES",
    "canonical_input",
    "canonical_weight",
    "chunks",
    "move_channels_first",
    "move_channels_last",
    "padded_by_mode",
    "reshaped_view",
    "sample_blocks",
    "side_by_side",
    "thread_chunks",
    "weight_first",
    "weight_last",
    "windows",
    "windows_channels_first",
]

#: Bytes of temporary workspace (patch matrices) an algorithm may hold at once.  A chunk
#: is never smaller than one row of the first output axis, so the true bound is
#: ``max(WORKSPACE_BYTES, bytes of one output row's patches)``.
WORKSPACE_BYTES = 32 * 2**20
#: The temporaries an algorithm may hold at once, padded input and workspace together:
#: ``max(TEMPORARY_BYTES, bytes of the result)``; one that would need more refuses.
TEMPORARY_BYTES = 64 * 2**20

NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def move_channels_last(a: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` seen as ``(N, *spatial, C)`` (a view; ``np.moveaxis`` costs
    3-5 us a call, a tenth of a small layer's time)."""
    return a.transpose(0, *range(2, a.ndim), 1)


def move_channels_first(a: np.ndarray) -> np.ndarray:
    """``(N, *spatial, C)`` seen as ``(N, C, *spatial)`` (a view)."""
    return a.transpose(0, a.ndim - 1, *range(1, a.ndim - 1))


def weight_last(w: np.ndarray) -> np.ndarray:
    """A weight ``(O, C/G, *kernel)`` seen as ``(*kernel, C/G, O)`` (a view)."""
    return w.transpose(*range(2, w.ndim), 1, 0)


def channels_last(channels_first: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """An algorithm's function on channels-last ``(N, *in_size, C)`` and ``(*kernel, C/G,
    O)`` -> ``(N, *out, O)`` from its channels-first one ``channels_first(x, w, spec,
    bias, relu)``: it reads them through channels-first views and returns a view of the
    channels-first result."""

    def conv(
        x: np.ndarray,
        wc: np.ndarray,
        spec: ConvSpec,
        bias: np.ndarray | None = None,
        relu: bool = False,
    ) -> np.ndarray:
        y = channels_first(move_channels_first(x), weight_first(wc), spec, bias, relu)
        return move_channels_last(y)

    return conv


def one_row(spec: ConvSpec) -> ConvSpec:
    """The 2-d convolution of a single row that a 1-d ``spec`` is."""
    return replace(
        spec,
        in_size=(1, *spec.in_size),
        kernel=(1, *spec.kernel),
        stride=(1, *spec.stride),
        dilation=(1, *spec.dilation),
        pads=((0, 0), *spec.pads),
        out_size=(1, *spec.out_size),
    )


def weight_first(w: np.ndarray) -> np.ndarray:
    """A weight ``(*kernel, C/G, O)`` seen as ``(O, C/G, *kernel)`` (a view)."""
    return w.transpose(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2))


def canonical_input(
    x: np.ndarray, spec: ConvSpec, channels_last: bool = True, reuse: bool = False
) -> np.ndarray:
    """Move channels last and apply the spec's padding: ``(N, *padded_size, C)``.

    With ``channels_last=False`` the input must be in ``"NCHW"`` layout and stays
    channels-first: ``(N, C, *padded_size)``.  Returns ``x`` itself (never written to)
    when nothing needs to change, otherwise a fresh array, or with ``reuse=True`` a
    zero-padded copy in the thread's ``"input"`` buffer (:func:`npconv._workspace.buffer`),
    valid until the next such call.
    """
    if spec.layout == "NCHW" and channels_last:
        x = move_channels_last(x)  # (N, *in_size, C)
    if spec.padded:
        spatial = list(spec.pads)
        pad_width = [(0, 0), *spatial, (0, 0)] if channels_last else [(0, 0), (0, 0), *spatial]
        mode = NP_PAD_MODE[spec.padding_mode]
        if mode == "constant":  # zeros of x's own dtype (Python 0 for object arrays)
            shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pad_width))
            padded = buffer("input", shape, x.dtype) if reuse else np.empty(shape, x.dtype)
            for axis, (n, (lo, _)) in enumerate(zip(x.shape, pad_width)):
                before: list[slice] = [slice(None)] * x.ndim
                after = list(before)
                before[axis], after[axis] = slice(0, lo), slice(lo + n, None)
                padded[tuple(before)] = 0  # the pads on both sides of this axis
                padded[tuple(after)] = 0
            padded[tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape, pad_width))] = x
            x = padded
        else:
            x = np.pad(x, pad_width, mode=mode)  # type: ignore[call-overload]
    return x


def padded_by_mode(
    x: np.ndarray, spec: ConvSpec, channels_last: bool
) -> tuple[np.ndarray, ConvSpec]:
    """``x`` and ``spec``, or for a padding mode other than zeros (pads that copy ``x``)
    ``x`` padded by it (:func:`canonical_input`) and the spec of the padded input
    (:meth:`ConvSpec.valid`), so that what follows sees zero pads only."""
    if spec.padding_mode == "zeros":
        return x, spec
    return canonical_input(x, spec, channels_last=channels_last), spec.valid()


def canonical_weight(w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The weight as ``(*kernel, C/G, O)`` (a view of ``w``)."""
    if spec.layout == "NCHW":
        return weight_last(w)  # (O, C/G, *k) -> (*k, C/G, O)
    return w


def windows(xp: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Read-only strided view of every receptive field: ``(N, *out_size, *kernel, C)``.

    Element ``[n, *p, *k, c]`` is ``xp[n, *(p * stride + k * dilation), c]``; no data is
    copied.
    """
    n_stride, *axis_strides, c_stride = xp.strides
    shape = (spec.batch, *spec.out_size, *spec.kernel, xp.shape[-1])
    strides = (
        n_stride,
        *(st * s for st, s in zip(axis_strides, spec.stride)),
        *(st * d for st, d in zip(axis_strides, spec.dilation)),
        c_stride,
    )
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def windows_channels_first(xp: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Read-only strided view ``(N, C, *kernel, *out_size)`` of a channels-first ``xp``.

    Element ``[n, c, *k, *p]`` is ``xp[n, c, *(p * stride + k * dilation)]``: for each
    channel and kernel offset, the output-shaped grid of input elements it multiplies.
    """
    n_stride, c_stride, *axis_strides = xp.strides
    shape = (spec.batch, xp.shape[1], *spec.kernel, *spec.out_size)
    strides = (
        n_stride,
        c_stride,
        *(st * d for st, d in zip(axis_strides, spec.dilation)),
        *(st * s for st, s in zip(axis_strides, spec.stride)),
    )
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def sample_blocks(spec: ConvSpec, itemsize: int, budget: int = WORKSPACE_BYTES // 2) -> list[slice]:
    """Split the batch into blocks of samples whose padded input stays within ``budget``.

    Every block has at least one sample; an empty batch gives one empty block.
    """
    sample = max(math.prod(spec.padded_size) * spec.in_channels * itemsize, 1)
    step = max(budget // sample, 1)
    return [slice(n, min(n + step, spec.batch)) for n in range(0, max(spec.batch, 1), step)]


def chunks(
    spec: ConvSpec, bytes_per_output: int, budget: int = WORKSPACE_BYTES, multiple: int = 1
) -> Iterator[tuple[slice, slice]]:
    """Split the output into blocks whose workspace stays within ``budget`` bytes.

    ``bytes_per_output`` is what one output position (all channels) costs in workspace.
    Yields ``(batch_slice, rows_slice)``: whole samples while a sample fits, otherwise
    blocks of rows of the first output axis within one sample (at least one row), also
    where fewer samples than ``multiple`` fit.  The blocks are as even as they go, and
    as many as a multiple of ``multiple`` where the output has that many (so that
    threads sharing them finish together: blocks of 9 and 5 tile rows took 0.84 and
    0.53 ms on two threads, 3x3 64->64 @56).
    """
    rows = spec.out_size[0]
    row_bytes = max(bytes_per_output * math.prod(spec.out_size[1:]), 1)
    sample_bytes = row_bytes * rows
    if not spec.batch:
        return
    if sample_bytes <= budget and spec.batch >= multiple:
        count = -(-spec.batch // max(budget // max(sample_bytes, 1), 1))  # blocks of samples
        count = min(-(-count // multiple) * multiple, spec.batch)
        for a, b in even_runs(spec.batch, count):
            yield slice(a, b), slice(None)
        return
    # blocks of rows per sample: within the budget, and fewer samples than ``multiple``
    # each cut into as many blocks as make a multiple of it where the rows go
    parts = max(-(-rows // max(budget // row_bytes, 1)), 1)
    while (spec.batch * parts) % multiple and parts < rows:
        parts += 1
    for n in range(spec.batch):
        for a, b in even_runs(rows, parts):
            yield slice(n, n + 1), slice(a, b)


def thread_chunks(
    spec: ConvSpec, bytes_per_output: int, budget: int = WORKSPACE_BYTES
) -> list[tuple[slice, slice]]:
    """:func:`chunks` to share out among :func:`npconv.get_threads` threads
    (:func:`npconv._threads.parallel_map`): the threads' chunks together within
    ``budget``, and as many as a multiple of the threads where the output has them."""
    threads = get_threads()
    return list(chunks(spec, bytes_per_output, max(budget // threads, 1), threads))


def reshaped_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` reshaped to ``shape`` without copying, or None when that needs a copy.

    On NumPy < 2.1 (no ``copy=`` in ``np.reshape``) only a C-contiguous ``a`` is
    reshaped: there, setting the shape of a view that cannot take it copies the whole
    array before refusing (30 MiB for a depthwise layer's patches).
    """
    try:
        return np.reshape(a, shape, copy=False)  # type: ignore[call-overload, no-any-return]
    except TypeError:  # NumPy < 2.1
        return a.reshape(shape) if a.flags.c_contiguous else None
    except ValueError:
        return None


def side_by_side(block: np.ndarray, axis: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``block`` (n, ...) with its samples moved to ``axis`` and merged with the axes
    after it, as ``shape``: a view where one sample's axes merge, else a copy in the
    thread's ``name`` buffer."""
    view = reshaped_view(block[0], shape) if len(block) == 1 else None
    if view is not None:
        return view
    moved = np.moveaxis(block, 0, axis)
    side = buffer(name, shape, block.dtype)
    np.copyto(side.reshape(moved.shape), moved)  # a view: axes only split
    return side
