"""Checks of integer arguments, shared by the options, the layers and the translators.

Every function raises a ``ValueError`` (bad value) or ``TypeError`` (wrong kind) whose
message starts with ``fn``, the public function, and names the argument and its value.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = ["explicit_pads", "int_tuple", "is_int", "shape_tuple", "valid_ints"]


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
