"""Transforms of constant weights, computed once and kept between calls.

An algorithm that transforms its filters before using them (``winograd_jit``:
``U = G w G^T``) pays for that transform on every call, which at batch 1 can cost as
much as the convolution saves (0.9 ms of 2 ms for 3x3 256->256 @14).  When the weight
is *constant* it keeps the transform here instead, as onnxruntime prepacks a model's
initializers when it loads it, and "auto" prices that algorithm without its filters'
transform (the row's ``filter_work``).

A constant array is one that NumPy does not let anyone write through: it is read-only,
and so is every array it is a view of, down to memory owned by the last of them or held
by an immutable ``bytes`` object.  The ONNX evaluator's initializers are constant; any
array becomes constant after ``w.flags.writeable = False``.  Writing to such an array
after making it writeable again is not detected (the kept transform would be stale):
copy it instead, or call :func:`npconv.free_workspaces`.

At most :data:`KEPT_BYTES` are kept, the least recently used dropped first; an entry
goes when its weight is garbage-collected, and :func:`npconv.free_workspaces` drops all.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

__all__ = ["KEPT_BYTES", "clear", "is_constant", "kept_bytes", "prepared"]

#: Bytes of transformed filters kept at most, over every weight and thread (the 3x3
#: layers of a ResNet-50 need about 70 MiB).
KEPT_BYTES = 256 * 2**20

_lock = threading.Lock()
#: key -> (a weak reference to the weight's owner, the transform), oldest use first
_kept: OrderedDict[tuple[Hashable, ...], tuple[weakref.ref[np.ndarray], np.ndarray]]
_kept = OrderedDict()
#: keys whose weight was garbage-collected, dropped at the next call (a weak reference's
#: callback may run inside any allocation, even one made while the lock is held)
_dead: list[tuple[Hashable, ...]] = []


def _owner(a: np.ndarray) -> np.ndarray | None:
    """The array that holds ``a``'s memory, if ``a`` is constant; else None."""
    while True:
        if a.flags.writeable:
            return None
        base = a.base
        if base is None or isinstance(base, bytes):
            return a
        if not isinstance(base, np.ndarray):  # a buffer someone else may write
            return None
        a = base


def is_constant(a: np.ndarray) -> bool:
    """Whether ``a`` and every array it views are read-only (see the module's text)."""
    return _owner(a) is not None


def prepared(a: np.ndarray, tag: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()``, a transform of ``a`` that ``tag`` names; kept and reused when ``a`` is
    constant.

    The result of ``make()`` must be a fresh array (not a reused buffer); a kept one is
    returned read-only.
    """
    owner = _owner(a)
    if owner is None:
        return make()
    data = a.__array_interface__["data"][0]
    key = (id(owner), data, a.shape, a.strides, a.dtype.str, tag)
    with _lock:
        _drop_dead()
        entry = _kept.get(key)
        if entry is not None and entry[0]() is owner:
            _kept.move_to_end(key)
            return entry[1]
    value = make()
    value.flags.writeable = False
    if value.nbytes > KEPT_BYTES:
        return value
    with _lock:
        _kept[key] = (weakref.ref(owner, lambda _: _dead.append(key)), value)
        while _total() > KEPT_BYTES:
            _kept.popitem(last=False)
    return value


def _drop_dead() -> None:
    """Drop the entries of weights that were garbage-collected (the lock held)."""
    while _dead:
        key = _dead.pop()
        entry = _kept.get(key)
        if entry is not None and entry[0]() is None:
            del _kept[key]


def _total() -> int:
    """Bytes of the kept transforms (the lock held)."""
    return sum(value.nbytes for _, value in _kept.values())


def kept_bytes() -> int:
    """Bytes of transforms kept."""
    with _lock:
        _drop_dead()
        return _total()


def clear() -> None:
    """Drop every kept transform."""
    with _lock:
        _kept.clear()
