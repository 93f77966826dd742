"""PyTorch's ``torch.nn.functional.conv*d`` and ``conv_transpose*d``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._checks import int_tuple
from ._common import Translation


def from_torch(
    w: npt.ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Translation:
    """``torch.nn.Conv{1,2,3}d`` / ``torch.nn.functional.conv*d``: OIHW, channels first.

    PyTorch's ``padding="same"`` is defined for stride 1 only (its output has the input's
    size; the odd pad goes at the end, as npconv's "same").

    Parameters
    ----------
    w : array_like
        ``(O, C/groups, *kernel)``.
    stride, padding, dilation, groups, padding_mode
        As PyTorch takes them.

    Returns
    -------
    (ndarray, dict)
        The weight and the keyword arguments of :func:`npconv.conv`.

    Raises
    ------
    ValueError
        ``padding="same"`` with a stride other than 1, as PyTorch raises.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_torch
    >>> w, kwargs = from_torch(np.ones((2, 1, 3, 3)), padding="same", dilation=2)
    >>> npconv.conv(np.ones((1, 1, 5, 5)), w, **kwargs).shape
    (1, 2, 5, 5)
    """
    w = np.asarray(w)
    strides = int_tuple("from_torch", "stride", stride, w.ndim - 2, 1)
    if padding == "same" and max(strides) > 1:
        raise ValueError(
            f"from_torch: padding='same' is not supported for strided convolutions "
            f"(stride={stride}), as in PyTorch"
        )
    kwargs = dict(stride=strides, padding=padding, dilation=dilation, groups=groups)
    return w, {**kwargs, "padding_mode": padding_mode, "layout": "NCHW"}


def from_torch_transpose(
    w: npt.ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> Translation:
    """``torch.nn.ConvTranspose{1,2,3}d``: IOHW weight, the keywords of conv_transpose.

    npconv's :func:`~npconv.conv_transpose` follows PyTorch's convention, so the
    translation is the identity (``output_size`` of the module's forward is npconv's
    ``output_size``).

    Parameters
    ----------
    w : array_like
        ``(C, O/groups, *kernel)``.
    stride, padding, output_padding, groups, dilation
        As PyTorch takes them.

    Returns
    -------
    (ndarray, dict)
        The weight and the keyword arguments of :func:`npconv.conv_transpose`.

    Raises
    ------
    Nothing itself: :func:`npconv.conv_transpose` checks the arguments when it runs.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_torch_transpose
    >>> w, kwargs = from_torch_transpose(np.ones((1, 2, 3)), stride=2, output_padding=1)
    >>> npconv.conv_transpose(np.ones((1, 1, 4)), w, **kwargs).shape
    (1, 2, 10)
    """
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups)
    return np.asarray(w), {**kwargs, "dilation": dilation, "layout": "NCHW"}
