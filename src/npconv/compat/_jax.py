"""JAX's ``lax.conv_general_dilated`` and ``lax.conv_transpose``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._common import Translation, convert_weight, letters, window_arguments


def _layouts(dimension_numbers: Any, nd: int) -> tuple[str, str, str]:
    """(lhs, rhs, out) spec strings; JAX's default is NCHW / OIHW / NCHW."""
    if dimension_numbers is None:
        s = letters(nd)
        return "NC" + s, "OI" + s, "NC" + s
    return tuple(dimension_numbers)  # type: ignore[return-value]


def _weight(w: np.ndarray, lhs: str, rhs: str, out: str, fn: str) -> tuple[np.ndarray, str]:
    """The weight in npconv's layout for the lhs spec, and that layout."""
    if lhs != out:
        raise ValueError(
            f"{fn}: npconv keeps the input's layout, so dimension_numbers needs the same lhs "
            f"and out specs, got {lhs!r} and {out!r}"
        )
    spatial = lhs.replace("N", "").replace("C", "")
    if lhs == "N" + spatial + "C":
        return convert_weight(w, rhs, spatial + "IO"), "NHWC"
    if lhs == "NC" + spatial:
        return convert_weight(w, rhs, "OI" + spatial), "NCHW"
    raise ValueError(f"{fn}: lhs spec must be channels-first or -last, got {lhs!r}")


def _padding(padding: Any) -> Any:
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "SAME_LOWER", "VALID"):
            raise ValueError(f"from_jax: padding must be SAME, SAME_LOWER, VALID or pairs, "
                             f"got {padding!r}")  # fmt: skip
        return padding.lower()
    return tuple(tuple(p) for p in padding)


def from_jax(
    w: npt.ArrayLike,
    *,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
) -> Translation:
    """``jax.lax.conv_general_dilated``: a convolution (``lhs_dilation`` of 1).

    Parameters
    ----------
    w : array_like
        The ``rhs`` kernel, laid out as ``dimension_numbers[1]``.
    window_strides, padding, rhs_dilation, dimension_numbers, feature_group_count
        As JAX takes them; ``dimension_numbers`` as strings, e.g.
        ``("NHWC", "HWIO", "NHWC")`` (default ``("NCHW", "OIHW", "NCHW")``).
    lhs_dilation : sequence of int, optional
        Must be 1: an input dilated by ``s`` and convolved at stride 1 with explicit pads
        is a transposed convolution, :func:`from_jax_transpose` with ``strides=s`` and
        the same pads.

    Returns
    -------
    (ndarray, dict)
        The weight converted to npconv's layout for the input's (OIHW channels-first,
        HWIO channels-last) and the keyword arguments of :func:`npconv.conv`.

    Raises
    ------
    ValueError
        Different lhs and out specs, an unknown padding string, an ``lhs_dilation``
        other than 1.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_jax
    >>> w, kw = from_jax(np.ones((3, 3, 2, 5)), window_strides=(1, 1), padding="SAME",
    ...                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> npconv.conv(np.ones((1, 6, 6, 2)), w, **kw).shape
    (1, 6, 6, 5)
    """
    w = np.asarray(w)
    if lhs_dilation is not None and max(lhs_dilation) > 1:
        raise ValueError(
            f"from_jax: lhs_dilation={tuple(lhs_dilation)} makes a transposed convolution; "
            "translate it with from_jax_transpose(w, strides=lhs_dilation, padding=pairs)"
        )
    lhs, rhs, out = _layouts(dimension_numbers, w.ndim - 2)
    w, layout = _weight(w, lhs, rhs, out, "from_jax")
    kwargs = dict(
        stride=tuple(window_strides),
        padding=_padding(padding),
        dilation=tuple(rhs_dilation) if rhs_dilation else 1,
        groups=feature_group_count,
        layout=layout,
    )
    return w, kwargs


def from_jax_transpose(
    w: npt.ArrayLike,
    *,
    input_shape: Sequence[int],
    strides: Sequence[int],
    padding: Any,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    transpose_kernel: bool = False,
) -> Translation:
    """``jax.lax.conv_transpose``: a convolution of the stride-dilated input.

    JAX pads the input spread by ``strides`` (``lhs_dilation``) with its
    ``_conv_transpose_padding`` rule for "SAME"/"VALID" (explicit pairs pad the spread
    input directly) and convolves it with the kernel as given, or flipped with its ``I``
    and ``O`` axes swapped when ``transpose_kernel=True`` (the gradient convention, as
    Keras).  That is :func:`npconv.conv_transpose` with padding
    ``dilation * (kernel - 1) - jax_pad_before`` and the kernel flipped when
    ``transpose_kernel`` is False.

    Parameters
    ----------
    w : array_like
        The ``rhs`` kernel, laid out as ``dimension_numbers[1]`` (JAX's default for
        conv_transpose is TensorFlow's: NHWC / HWIO / NHWC).
    input_shape : sequence of int
        The shape of ``lhs``.
    strides, padding, rhs_dilation, dimension_numbers, transpose_kernel
        As JAX takes them.

    Returns
    -------
    (ndarray, dict)
        The weight of the forward convolution that this one transposes, in npconv's
        layout, and the keyword arguments of :func:`npconv.conv_transpose`.

    Raises
    ------
    ValueError
        Pads that npconv's conv_transpose cannot express (a before-pad beyond
        ``dilation * (kernel - 1)``, or an output_padding of stride or more).

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_jax_transpose
    >>> w, kw = from_jax_transpose(np.ones((3, 3, 2, 4)), input_shape=(1, 5, 5, 2),
    ...                            strides=(2, 2), padding="SAME")
    >>> npconv.conv_transpose(np.ones((1, 5, 5, 2)), w, **kw).shape
    (1, 10, 10, 4)
    """
    w = np.asarray(w)
    nd = w.ndim - 2
    s = letters(nd)
    lhs, rhs, out = _layouts(dimension_numbers or ("N" + s + "C", s + "IO", "N" + s + "C"), nd)
    kernel = tuple(w.shape[rhs.index(a)] for a in rhs if a not in "OI")
    dilation = tuple(rhs_dilation) if rhs_dilation else (1,) * nd
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"from_jax_transpose: padding must be SAME, VALID or pairs, "
                             f"got {padding!r}")  # fmt: skip
        pads = [_transpose_padding(e, st, padding.upper()) for e, st in zip(extents, strides)]
    else:
        pads = [tuple(p) for p in padding]
    spatial = [i for i, a in enumerate(lhs) if a not in "NC"]
    in_size = [tuple(input_shape)[i] for i in spatial]
    # The spread input convolved at stride 1: output o reads spread index o - a + j * d,
    # i.e. the unpadded transposed output from e - 1 - a on, (n-1)*s + 1 + a + b - (e-1) long.
    windows = [
        (e - 1 - a, (n - 1) * st + 1 + a + b - (e - 1))
        for (a, b), n, st, e in zip(pads, in_size, strides, extents)
    ]
    kwargs = window_arguments("from_jax_transpose", windows, in_size, kernel, tuple(strides),
                               dilation)  # fmt: skip
    # npconv's conv_transpose weight is its forward convolution's weight.  JAX correlates
    # the spread input with K (rhs, or rhs flipped with I and O swapped when
    # transpose_kernel), whose I axis is the input's channels; the forward weight is K
    # flipped with I and O swapped: rhs itself when transpose_kernel.
    if transpose_kernel:
        forward, kernel_spec = w, rhs
    else:
        swapped = rhs.replace("I", "*").replace("O", "I").replace("*", "O")
        forward, kernel_spec = convert_weight(w, rhs, rhs, flip=True), swapped
    w, layout = _weight(forward, lhs, kernel_spec, out, "from_jax_transpose")
    return w, {**kwargs, "layout": layout}


def _transpose_padding(extent: int, stride: int, padding: str) -> tuple[int, int]:
    """JAX's ``_conv_transpose_padding``: pads of the spread input for SAME / VALID."""
    if padding == "SAME":
        total = extent + stride - 2
        before = extent - 1 if stride > extent - 1 else math.ceil(total / 2)
    else:
        total = extent + stride - 2 + max(extent - stride, 0)
        before = extent - 1
    return before, total - before
