"""Reusable workspaces: the large temporaries of a convolution, kept from call to call.

A convolution's temporaries (the padded input, patch matrices, Winograd tiles) are
mostly larger than the C library's threshold for serving memory from its heap, so an
array allocated afresh on every call is mapped fresh from the operating system and
faulted in page by page, which can cost as much as the arithmetic.  :func:`buffer`
instead hands out a view of a byte buffer kept per thread and per name, grown as
needed, so that a network's layers run in steady state without page faults.

Rules:

* a buffer's contents are undefined; it is valid until the same thread asks for the
  same name again, so a use site never holds one across a call that asks for it;
* names are roles shared by the algorithms (only one runs at a time in a thread):
  ``"input"`` (the dispatch's padded input), ``"patches"`` (patch matrices, gathered
  tiles), ``"transformed"``, ``"filters"``, ``"products"``, ``"tiles"`` and
  ``"region"``, so a thread keeps the largest of each role, not one set per algorithm;
* each thread has its own buffers (``threading.local``): the threads of
  :func:`npconv._threads.parallel_map` and of a user's own pool never share one;
* results returned to the user never live in a buffer (they are fresh arrays);
* a thread keeps at most :data:`KEPT_BYTES`; a request beyond that, and any ``object``
  array, is a fresh array, so the memory bound of the README's "Memory" section holds;
* :func:`free_workspaces` (``npconv.free_workspaces``) releases every thread's buffers.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import numpy.typing as npt

__all__ = ["KEPT_BYTES", "buffer", "free_workspaces", "kept_bytes"]

#: Bytes of buffers one thread keeps between calls: the padded input's blocks
#: (:func:`npconv._windows.sample_blocks`) and the chunks of patch matrices and tiles
#: (:data:`npconv._windows.WORKSPACE_BYTES`) fit.
KEPT_BYTES = 64 * 2**20

#: A new buffer is rounded up to this many bytes, so that slowly growing requests
#: (the shapes of a network's successive layers) reuse one allocation.
_GRAIN = 2**16


class _Buffers(dict[str, np.ndarray]):
    """One thread's buffers by name (a dict that a weak set can hold, by identity)."""

    __hash__ = object.__hash__  # type: ignore[assignment]


_local = threading.local()
_every: weakref.WeakSet[_Buffers] = weakref.WeakSet()  # every thread's, for free_workspaces
_lock = threading.Lock()


def _buffers() -> _Buffers:
    """The calling thread's buffers."""
    mine = getattr(_local, "buffers", None)
    if mine is None:
        mine = _local.buffers = _Buffers()
        with _lock:
            _every.add(mine)
    return mine


def buffer(name: str, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype`` in this thread's buffer ``name``.

    Its contents are undefined (write it before reading it), and it is overwritten by the
    next request for ``name`` in this thread.  Beyond :data:`KEPT_BYTES`, and for
    ``object`` arrays, it is a fresh array.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if dtype.hasobject:
        return np.empty(shape, dtype)
    mine = _buffers()
    raw = mine.get(name)
    if raw is None or raw.nbytes < nbytes:
        others = sum(b.nbytes for key, b in mine.items() if key != name)
        size = -(-max(nbytes, 1) // _GRAIN) * _GRAIN
        if others + size > KEPT_BYTES:
            return np.empty(shape, dtype)
        mine.pop(name, None)  # free the smaller one before allocating its successor
        raw = mine[name] = np.empty(size, np.uint8)
    return raw[:nbytes].view(dtype).reshape(shape)


def kept_bytes() -> int:
    """Bytes of buffers the calling thread keeps."""
    return sum(b.nbytes for b in _buffers().values())


def free_workspaces() -> None:
    """Release the buffers that npconv keeps between calls, in every thread.

    npconv keeps its large temporaries (the padded input, patch matrices, Winograd
    tiles) from one call to the next, so that repeated convolutions reuse memory that
    is already mapped instead of faulting fresh pages in on every call.  Each thread
    keeps at most 64 MiB; they are reallocated on the next call that needs them.
    Results are never affected: they are fresh arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import npconv
    >>> y = npconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=1)
    >>> npconv.free_workspaces()
    >>> float(y[0, 0, 1, 1])
    9.0
    """
    with _lock:
        every = list(_every)
    for buffers in every:
        buffers.clear()
