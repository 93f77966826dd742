"""Checks of arguments, shared by the options, the layers and the translators.

Every function raises a ``ValueError`` (bad value) or ``TypeError`` (wrong kind) whose
message starts with ``fn``, the public function, and names the argument and its value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = [
    "check_pad_modes",
    "explicit_pads",
    "int_tuple",
    "is_int",
    "is_pairs",
    "is_plain",
    "same_pads",
    "shape_tuple",
    "valid_ints",
    "weight_rank",
]


#: The largest size, stride, dilation or pad: index arithmetic stays within int64.
LARGEST = 2**62


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (a Python or NumPy int, not a bool)."""
    return type(value) is int or (  # the common case first: this runs on every call
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def valid_ints(
    fn: str, name: str, value: object, minimum: int, shown: object = None
) -> int | tuple[int, ...]:
    """``value`` as an int or a tuple of ints, each >= ``minimum``.

    ``shown`` is what the messages quote (default: ``value``).
    """
    shown = value if shown is None else shown
    if is_int(value):
        values: tuple[object, ...] = (value,)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
    else:
        raise TypeError(f"{fn}: {name} must be an int or a tuple of ints, got {shown!r}")
    for v in values:
        if not is_int(v):
            raise TypeError(f"{fn}: {name} must contain ints, got {shown!r}")
        if v < minimum:  # type: ignore[operator]
            raise ValueError(f"{fn}: {name} must be >= {minimum} in every dim, got {shown!r}")
        if v > LARGEST:  # type: ignore[operator]
            raise ValueError(f"{fn}: {name} must be at most 2**62 in every dim, got {shown!r}")
    ints = tuple(int(v) for v in values)  # type: ignore[call-overload]
    return ints[0] if is_int(value) else ints


def int_tuple(fn: str, name: str, value: object, nd: int, minimum: int) -> tuple[int, ...]:
    """``value`` as ``nd`` integers >= ``minimum``; an int is repeated for every axis."""
    checked = valid_ints(fn, name, value, minimum)
    if isinstance(checked, int):
        return (checked,) * nd
    if len(checked) != nd:
        raise ValueError(
            f"{fn}: {name} must be an int or {nd} ints (one per spatial dim), "
            f"got {len(checked)} values {value!r}"
        )
    return checked


def explicit_pads(fn: str, padding: object, nd: int) -> tuple[tuple[int, int], ...]:
    """An int, ``nd`` ints or ``nd`` (before, after) pairs as ``nd`` pairs."""
    if isinstance(padding, Sequence) and not isinstance(padding, str):
        items = tuple(padding)
        if items and all(isinstance(p, Sequence) and not isinstance(p, str) for p in items):
            if len(items) != nd or any(len(p) != 2 for p in items):  # type: ignore[arg-type]
                raise ValueError(
                    f"{fn}: padding given as pairs needs {nd} (before, after) pairs, "
                    f"got {padding!r}"
                )
            flat = [v for p in items for v in p]  # type: ignore[attr-defined]
            valid_ints(fn, "padding", flat, 0, shown=padding)
            return tuple((int(lo), int(hi)) for lo, hi in items)  # type: ignore[misc]
    return tuple((p, p) for p in int_tuple(fn, "padding", padding, nd, 0))


def shape_tuple(fn: str, name: str, shape: object) -> tuple[int, ...]:
    """``shape`` (the shape of array ``name``) as a tuple of ints >= 0."""
    if type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape):
        return shape  # the common case: an ndarray's shape
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise TypeError(f"{fn}: the shape of {name} must be a tuple of ints, got {shape!r}")
    for n in shape:
        if not is_int(n):
            raise TypeError(f"{fn}: the shape of {name} must hold ints, got {tuple(shape)!r}")
        if n < 0:
            raise ValueError(f"{fn}: the shape of {name} must be >= 0, got {tuple(shape)!r}")
    return tuple(int(n) for n in shape)


def is_pairs(padding: object) -> bool:
    """Whether ``padding`` is given as (before, after) pairs (a non-empty sequence of them)."""
    if not isinstance(padding, Sequence) or isinstance(padding, str) or not padding:
        return False
    return all(isinstance(p, Sequence) and not isinstance(p, str) for p in padding)


def same_pads(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    """ONNX SAME_UPPER / SAME_LOWER (TensorFlow "SAME"): output = ceil(size / stride)."""
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def weight_rank(fn: str, w_shape: tuple[int, ...]) -> int:
    """The number of spatial dims of a weight shape (1, 2 or 3), or a ValueError."""
    nd = len(w_shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"{fn}: w must have 3, 4 or 5 dims (1-, 2- or 3-d convolution), "
            f"got w.ndim={len(w_shape)} with shape {w_shape}"
        )
    return nd


def check_pad_modes(
    fn: str, mode: str, in_size: Sequence[int], pads: Sequence[tuple[int, int]]
) -> None:
    """The limits of the padding modes that copy the input: reflect, replicate, circular."""
    for axis, (n, (lo, hi)) in enumerate(zip(in_size, pads)):
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"{fn}: padding_mode='reflect' needs pads smaller than the input, but "
                f"spatial dim {axis} has size {n} and pads ({lo}, {hi})"
            )
        if mode in ("replicate", "circular") and max(lo, hi) > 0 and n == 0:
            raise ValueError(f"{fn}: padding_mode={mode!r} cannot pad an empty dim {axis}")
        if mode == "circular" and max(lo, hi) > n:
            raise ValueError(
                f"{fn}: padding_mode='circular' needs pads no larger than the input, but "
                f"spatial dim {axis} has size {n} and pads ({lo}, {hi})"
            )


def is_plain(value: object) -> bool:
    """Whether ``value`` is an int, a str or a tuple of such (nested): safe to cache by."""
    if type(value) is not tuple:
        return type(value) is int or type(value) is str
    for item in value:  # a loop, not all(), and a call only for a nested tuple: every call runs it
        kind = type(item)
        if kind is not int and kind is not str and not (kind is tuple and is_plain(item)):
            return False
    return True
