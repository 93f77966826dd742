"""Transposed convolution: :func:`conv_transpose`, the adjoint of :func:`npconv.conv`.

The adjoint of the convolution ``A`` from ``O`` to ``I`` channels whose weight this is;
:mod:`npconv._adjoint` describes how it is computed by forward convolutions (sub-pixel
phases) or by ``col2im``, and :mod:`npconv._dispatch` runs it.  The forward convolution
is the spec :meth:`~npconv._spec.ConvOptions.bind_transposed` gives: its ``in_size`` is
the transposed output and its ``out_size`` the transposed input; the weight of
``conv_transpose`` *is* the weight of that forward convolution (``I, O/G, *kernel`` in
"NCHW" reads as the forward ``O, C/G, *kernel``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._dispatch import run
from ._operands import prepare
from ._ranked import rank_variant
from ._spec import ConvOptions, IntOrTuple

__all__ = ["conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def conv_transpose(
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: int | Sequence[int] | Sequence[Sequence[int]] = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    output_size: Sequence[int] | None = None,
    layout: str = "NCHW",
    algorithm: str = "auto",
) -> np.ndarray:
    """N-d transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

    The adjoint of :func:`npconv.conv` with the same weight, stride, padding, dilation
    and groups (also called "deconvolution" or fractionally strided convolution).

    Parameters
    ----------
    x : array_like
        Input, ``(N, I, *spatial)`` for ``layout="NCHW"`` or ``(N, *spatial, I)`` for
        ``"NHWC"``; the batch axis may be left out.  Never modified.
    w : array_like
        Filters, ``(I, O/groups, *kernel)`` for ``"NCHW"`` (PyTorch) or
        ``(*kernel, O/groups, I)`` for ``"NHWC"``: the weight of the forward convolution
        from ``O`` to ``I`` channels that this one transposes.
    bias : array_like, optional
        One value per output channel, shape ``(O,)``.
    stride, dilation : int or tuple of int
        Of the forward convolution; each >= 1.
    padding : int, tuple or tuple of pairs
        The forward convolution's zero padding, which the transposed one removes from its
        output: an int, one int per dim, or one ``(before, after)`` pair per dim (ONNX
        ``pads``).
    output_padding : int or tuple of int
        Extra size added at the end of each output dim (to pick one of the input sizes a
        strided forward convolution maps to the same output size); each must be smaller
        than the stride or the dilation.
    groups : int
        Must divide ``I``; the output has ``O = w.shape[1] * groups`` channels in "NCHW".
    output_size : tuple of int, optional
        The output's spatial size (or full shape), as ``torch.nn.ConvTranspose2d``'s
        ``output_size`` and ONNX ``output_shape``: sets ``output_padding`` (then leave
        that at 0).
    layout : {"NCHW", "NHWC"}
        Memory layout of ``x``, ``w`` and the result.
    algorithm : str
        ``"auto"``, ``"col2im"``, or one of :func:`npconv.algorithms` for the phases'
        convolutions.

    Returns
    -------
    ndarray
        ``(N, O, *out)`` or ``(N, *out, O)`` with, per spatial dim,
        ``out = (in - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + 1 +
        output_padding``; dtype as for :func:`npconv.conv`.

    Raises
    ------
    ValueError
        Mismatched channels or bias, groups not dividing the channels, an
        ``output_padding`` not smaller than stride or dilation, an impossible
        ``output_size``, an empty output, a padding string, and every error of
        :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Notes
    -----
    Computed as ``prod(stride)`` stride-1 convolutions of ``x`` (one per sub-pixel phase
    of the output, each with the taps of the flipped kernel that reach it, input and
    output channels swapped per group), by the registry's algorithms: the multiply-adds
    of the forward convolution it transposes, with no zeros inserted.  Or, where "auto"
    expects it to cost less (a convolution that widens the channels), by ``col2im``:
    one product and a strided scatter per kernel offset.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.array([[[1.0, 2.0]]])  # (N, I, L)
    >>> w = np.array([[[1.0, 10.0, 100.0]]])  # (I, O, K)
    >>> npconv.conv_transpose(x, w, stride=2)
    array([[[  1.,  10., 102.,  20., 200.]]])
    >>> npconv.conv_transpose(x, w, stride=2, padding=1, output_size=(4,)).shape
    (1, 1, 4)
    """
    return _conv_transpose(
        "conv_transpose",
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
        output_size=output_size,
        layout=layout,
        algorithm=algorithm,
    )


def _conv_transpose(
    fn: str,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    algorithm: str = "auto",
    output_size: Sequence[int] | None = None,
    **options: Any,
) -> np.ndarray:
    """:func:`conv_transpose` with ``fn`` prefixed to every error message."""
    problem = prepare(
        ConvOptions.create(fn, **options), x, w, bias, transposed=True, output_size=output_size
    )
    return run(problem, algorithm)


def _variant(nd: int) -> Any:
    doc = f"""{nd}-d transposed convolution: :func:`conv_transpose` with ``w.ndim == {nd + 2}``
    checked.

    Takes the same arguments as :func:`conv_transpose` and returns the same result.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((2, 4{", 5" * nd}))
    >>> w = np.ones((4, 3{", 3" * nd}))
    >>> npconv.conv_transpose{nd}d(x, w, stride=2, padding=1, output_padding=1).shape
    (2, 3{", 10" * nd})
    """
    signature = inspect.signature(conv_transpose)
    name = f"conv_transpose{nd}d"
    return rank_variant(
        name, nd, _conv_transpose, signature, "w", doc, what="transposed convolution"
    )


conv_transpose1d = _variant(1)
conv_transpose2d = _variant(2)
conv_transpose3d = _variant(3)
