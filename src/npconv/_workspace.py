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

Arrays derived from an input's values alone (Winograd's transformed filters, the
weights packed by ``blocked_jit``) are kept
too, for all threads, by :func:`kept` and :func:`keep`: an inference loop's weights
stay the same from call to call, and a kept array is used again only while its source
holds the same values, bit for bit (compared with a copy kept with it).
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._jit import equal_bits, unavailable
from ._threads import even_runs, get_threads, parallel_map

__all__ = [
    "DERIVED_BYTES",
    "KEPT_BYTES",
    "Claim",
    "buffer",
    "changing",
    "claim",
    "free_workspaces",
    "keep",
    "kept",
    "kept_bytes",
    "release",
]

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


#: Bytes of derived arrays, with the copies of their sources, kept for all threads
#: together (:func:`keep`); beyond them, a derived array is made afresh on every call.
DERIVED_BYTES = 64 * 2**20

#: The derived arrays kept: by name and source (its owner's identity, its address,
#: shape, strides and dtype), a weak reference to the source's owner, a copy of the
#: source (None for an :func:`immutable` one) and the array.
_derived: dict[tuple[Any, ...], tuple[weakref.ref[np.ndarray], np.ndarray | None, np.ndarray]] = {}
#: Sources whose values changed since an array was kept for them (a training loop's
#: weights), by their owner (its ``id``, and a weak reference that tells a later array
#: with the same ``id`` apart): nothing is kept for them again, under any name or view,
#: so that such a loop does not copy its weights every call.
_changing: dict[int, weakref.ref[np.ndarray]] = {}
#: Sources seen once, by a weak reference to their owner: an array is kept from the
#: second call on, so that a temporary source (a copy made for one call) costs none.
_seen: dict[tuple[Any, ...], weakref.ref[np.ndarray]] = {}
_derived_lock = threading.RLock()  # reentrant: a freed source's callback may run anywhere


def _owner(a: np.ndarray) -> np.ndarray:
    """The array that owns ``a``'s memory (``a`` itself, or the base of its views)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def immutable(source: np.ndarray) -> bool:
    """Whether ``source``'s values can never change: a read-only view of a ``bytes``
    object (as onnx reads a model's initializers), which no array or buffer can write,
    nor made writeable again.  What is kept for it is not compared with a copy."""
    return not source.flags.writeable and isinstance(_owner(source).base, bytes)


def _key(name: str, source: np.ndarray) -> tuple[Any, ...]:
    address = source.__array_interface__["data"][0]
    return (name, id(_owner(source)), address, source.shape, source.strides, source.dtype.str)


def _comparable(copy: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``copy`` and ``source`` as what :class:`Claim` compares: floats as their bits (so
    that a NaN matches itself), raveled in memory order where numba compares them (one
    compiled pass over both, :func:`npconv._jit.equal_bits`, instead of NumPy's two: a
    temporary of booleans, then its ``all``); otherwise as they are."""
    if source.dtype.kind in "fc" and source.dtype.itemsize in (4, 8):
        bits = f"u{source.dtype.itemsize}"
        copy, source = copy.view(bits), source.view(bits)
        if unavailable() is None and _dense(source):  # raveled in memory order: views
            return copy.ravel(order="K"), source.ravel(order="K")
    return copy, source


#: Bytes of a source from which :meth:`Claim.verify` shares its comparison among
#: npconv's threads: 3x3 512->512 @7 b8 (9.4 MB of weights) 5.9-6.3 against 6.6-6.8 ms
#: a call (alternating processes, 2 cores), more than the comparison's own 0.66 against
#: 0.87 ms (caches cold) saves; 256x256 filters (2.4 MB) gained nothing cold (0.21 ms).
SHARED_CHECK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Claim:
    """A derived array kept for a source, not yet checked against it (:func:`claim`).

    ``copy`` and ``source`` are compared bit for bit (:func:`_comparable`); the array
    may be used only where :meth:`verify` holds, or every part's :meth:`holds` does, so
    that a caller can compare the parts on its threads alongside other work.  An
    :func:`immutable` source has no copy, and always holds.  3x3
    filters compared in one compiled pass, caches cold, us: 64x64 17 against NumPy's
    43, 128x128 57 against 87, 256x256 186 against 238, 512x512 784 against 961 (one
    thread).
    """

    key: tuple[Any, ...]
    value: np.ndarray
    copy: np.ndarray | None
    source: np.ndarray

    def holds(self, part: int = 0, parts: int = 1) -> bool:
        """Whether part ``part`` of ``parts`` (even runs of the raveled memory; where it
        is not raveled, part 0 compares it all) still holds its copy's values."""
        if self.copy is None:  # immutable
            return True
        compiled = unavailable() is None and self.copy.dtype.kind in "iu"
        if self.copy.ndim != 1 or not compiled:
            return part > 0 or bool(np.array_equal(self.copy, self.source))
        start, stop = even_runs(len(self.copy), parts)[part]
        return bool(equal_bits(self.copy[start:stop], self.source[start:stop]))

    def verify(self) -> bool:
        """Whether the source holds its copy's values (a part per thread from
        :data:`SHARED_CHECK_BYTES` on)."""
        if self.copy is None:  # immutable
            return True
        parts = get_threads() if self.copy.nbytes >= SHARED_CHECK_BYTES else 1
        equal = [True] * parts

        def compare(i: int) -> None:
            equal[i] = self.holds(i, parts)

        parallel_map(compare, range(parts))
        return all(equal)

    def release(self) -> None:
        """The source has changed since: drop the kept array, and keep none for it again."""
        _changed(self.key, self.source)


def _changed(key: tuple[Any, ...], source: np.ndarray) -> None:
    """Drop what was kept for a source that has changed, and keep nothing for it again."""
    with _derived_lock:
        _derived.pop(key, None)
        owner = _owner(source)
        _changing[id(owner)] = weakref.ref(owner)


def _dense(a: np.ndarray) -> bool:
    """Whether ``a``'s elements fill a block of memory, each once, in some order of its
    axes (a transposed or reversed contiguous array): then ``ravel(order="K")`` reads
    them in memory order without a copy, as :func:`keep`'s copy holds them."""
    axes = sorted((abs(stride), n) for stride, n in zip(a.strides, a.shape) if n > 1)
    step = a.itemsize
    for stride, n in axes:
        if stride != step:
            return False
        step *= n
    return True


def claim(name: str, source: np.ndarray) -> tuple[Claim | None, bool]:
    """The array kept as ``name`` for ``source``, to be checked (:class:`Claim`), or
    None; and whether an array made now for it may be kept (:func:`keep`: then make it
    a fresh array, not a :func:`buffer`)."""
    key = _key(name, source)
    with _derived_lock:
        entry = _derived.get(key)
    if entry is not None:
        owner, copy, value = entry
        if owner() is _owner(source):
            if copy is None:  # immutable
                return Claim(key, value, None, source), False
            return Claim(key, value, *_comparable(copy, source)), False
        _changed(key, source)  # another array at the same address
        return None, False
    with _derived_lock:
        seen = key in _seen
        if not seen:
            _seen[key] = weakref.ref(_owner(source), lambda _: _forget(key))
        full = _derived_bytes() >= DERIVED_BYTES
        return None, seen and not full and not changing(source)


def kept(name: str, source: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """The array kept as ``name`` for ``source`` (read-only) while ``source`` holds the
    same values as when it was kept, else None; and whether an array made now for it
    may be kept (as :func:`claim`)."""
    claimed, keepable = claim(name, source)
    if claimed is None:
        return None, keepable
    if claimed.verify():
        return claimed.value, False
    claimed.release()
    return None, False


def changing(source: np.ndarray) -> bool:
    """Whether ``source``'s values have changed since an array was kept for it (under
    any name): then none is kept for it again, and "auto" prices the arrays derived
    from it as made afresh on every call."""
    with _derived_lock:
        owner = _owner(source)
        ref = _changing.get(id(owner))
        return ref is not None and ref() is owner


def keep(name: str, source: np.ndarray, value: np.ndarray) -> None:
    """Keep ``value``, a fresh array made from ``source``'s values alone, for
    :func:`kept`, with a copy of ``source`` (none where it is :func:`immutable`), while
    they fit :data:`DERIVED_BYTES` with the others; until the source's owner is freed,
    or :func:`free_workspaces`."""
    key = _key(name, source)
    copy = None if immutable(source) else np.array(source, order="K")  # memory order
    value.flags.writeable = False  # shared by every later call
    nbytes = value.nbytes + (0 if copy is None else copy.nbytes)
    with _derived_lock:
        if _derived_bytes() + nbytes > DERIVED_BYTES or changing(source):
            return
        _derived[key] = (_seen.get(key) or weakref.ref(_owner(source)), copy, value)


def release(source: np.ndarray) -> None:
    """Drop what is kept for ``source``, under every name, and that it was seen, so that
    only the algorithms that run on it from now on keep arrays for it (after several
    were tried on it: :meth:`npconv.onnx.Evaluator.tune`)."""
    owner = id(_owner(source))
    with _derived_lock:
        for store in (_derived, _seen):
            for key in [key for key in store if key[1] == owner]:
                del store[key]


def _derived_bytes() -> int:
    """Bytes of the derived arrays kept and their sources' copies (hold the lock)."""
    return sum(v.nbytes + (0 if c is None else c.nbytes) for _, c, v in _derived.values())


def _forget(key: tuple[Any, ...]) -> None:
    """Drop what was kept for a source whose owner has been freed."""
    with _derived_lock:
        _derived.pop(key, None)
        _changing.pop(key[1], None)
        _seen.pop(key, None)


def kept_bytes() -> int:
    """Bytes of buffers the calling thread keeps."""
    return sum(b.nbytes for b in _buffers().values())


def free_workspaces() -> None:
    """Release the buffers that npconv keeps between calls, in every thread.

    npconv keeps its large temporaries (the padded input, patch matrices, Winograd
    tiles) from one call to the next, so that repeated convolutions reuse memory that
    is already mapped instead of faulting fresh pages in on every call.  Each thread
    keeps at most 64 MiB; they are reallocated on the next call that needs them.  It
    also keeps Winograd's transformed filters and ``blocked_jit``'s packed weights of
    unchanged weights (at most 64 MiB for all threads, with copies of the weights they
    came from).  Results are never
    affected: they are fresh arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import npconv
    >>> y = npconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=1)
    >>> npconv.free_workspaces()
    >>> float(y[0, 0, 1, 1])
    9.0
    """
    with _derived_lock:
        _derived.clear()
        _changing.clear()
        _seen.clear()
    with _lock:
        every = list(_every)
    for buffers in every:
        buffers.clear()
