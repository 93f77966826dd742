"""The 1-d, 2-d and 3-d variants of a function (``conv2d``, ``conv_transpose3d``, ...).

Each variant checks the rank of one argument (an array's dims or a shape's entries),
then calls the generic implementation with its own name, so that every error message
names the function the user called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["rank_variant"]


def rank_variant(
    name: str,
    nd: int,
    impl: Callable[..., Any],
    signature: inspect.Signature,
    argument: str,
    doc: str,
    *,
    what: str = "convolution",
    shape: bool = False,
) -> Callable[..., Any]:
    """``impl(name, *args, **kwargs)`` for ``nd`` spatial dims, named ``name``.

    ``argument`` (an array, or a shape if ``shape``) must have ``nd + 2`` dims or
    entries; ``signature`` and ``doc`` are what ``help`` shows.
    """
    position = list(signature.parameters).index(argument)

    def variant(*args: Any, **kwargs: Any) -> Any:
        if argument in kwargs:
            value = kwargs[argument]
        elif len(args) > position:
            value = args[position]
        else:  # missing: the implementation raises Python's TypeError
            return impl(name, *args, **kwargs)
        if shape:
            value = tuple(value)
            if len(value) != nd + 2:
                raise ValueError(
                    f"{name}: {argument} must have {nd + 2} entries for a {nd}-d {what}, "
                    f"got {value}"
                )
        elif (value.ndim if type(value) is np.ndarray else np.ndim(value)) != nd + 2:
            raise ValueError(
                f"{name}: {argument} must have {nd + 2} dims for a {nd}-d {what}, "
                f"got {argument}.ndim={np.ndim(value)} with shape {np.shape(value)}"
            )
        return impl(name, *args, **kwargs)

    variant.__name__ = variant.__qualname__ = name
    variant.__signature__ = signature  # type: ignore[attr-defined]
    variant.__doc__ = doc
    return variant
