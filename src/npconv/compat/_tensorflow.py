"""TensorFlow's ``tf.nn.convolution`` / ``conv*d_transpose`` and Keras layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._checks import int_tuple
from ._common import Translation, convert_weight, letters, window_arguments


def _sizes(name: str, value: Any, nd: int, layout: str) -> tuple[int, ...]:
    """TensorFlow's strides/dilations: an int, ``nd`` ints, or ``nd + 2`` with N and C."""
    if isinstance(value, Sequence) and len(value) == nd + 2:
        value = value[1:-1] if layout == "NHWC" else value[2:]
    return int_tuple("from_tensorflow", name, value, nd, 1)


def _layout(data_format: str, nd: int) -> str:
    if data_format.upper() in ("NHWC", "NWC", "NDHWC", "CHANNELS_LAST"):
        return "NHWC"
    if data_format.upper() in ("NCHW", "NCW", "NCDHW", "CHANNELS_FIRST"):
        return "NCHW"
    raise ValueError(
        f"from_tensorflow: data_format must be channels-last (NHWC, NWC, NDHWC) or "
        f"channels-first (NCHW, NCW, NCDHW), got {data_format!r}"
    )


def _padding(padding: Any, layout: str, nd: int) -> Any:
    """TensorFlow's "SAME" / "VALID" / explicit ``[[0, 0], [t, b], ..., [0, 0]]``."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"from_tensorflow: padding must be SAME, VALID or explicit pairs, "
                             f"got {padding!r}")  # fmt: skip
        return "same" if padding.upper() == "SAME" else "valid"
    pairs = [tuple(p) for p in padding]
    return pairs[1:-1] if layout == "NHWC" else pairs[2:]


def from_tensorflow(
    w: npt.ArrayLike,
    *,
    strides: Any = 1,
    padding: Any = "VALID",
    dilations: Any = 1,
    data_format: str = "NHWC",
) -> Translation:
    """``tf.nn.convolution`` / ``tf.nn.conv2d``: HWIO weight; groups from its shape.

    Parameters
    ----------
    w : array_like
        ``(*kernel, C/groups, O)``; TensorFlow infers ``groups = C / w.shape[-2]``, which
        npconv needs explicitly: pass the result's ``groups`` (1 here) or set it yourself.
    strides, dilations : int or sequence
        ``nd`` values, or ``nd + 2`` with 1 for the batch and channel axes.
    padding : {"SAME", "VALID"} or sequence of pairs
        Explicit padding has one ``[before, after]`` pair per axis of ``x``.
    data_format : str
        "NHWC" (default, any rank's channels-last name) or "NCHW".

    Returns
    -------
    (ndarray, dict)
        For channels-last the weight is unchanged (npconv's "NHWC" layout takes HWIO);
        for channels-first it is converted to OIHW.

    Raises
    ------
    ValueError
        An unknown ``data_format`` or padding string.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_tensorflow
    >>> w, kwargs = from_tensorflow(np.ones((3, 3, 4, 8)), strides=2, padding="SAME")
    >>> npconv.conv(np.ones((1, 7, 7, 4)), w, **kwargs).shape  # ceil(7 / 2)
    (1, 4, 4, 8)
    """
    w = np.asarray(w)
    nd = w.ndim - 2
    layout = _layout(data_format, nd)
    kwargs = dict(
        stride=_sizes("strides", strides, nd, layout),
        dilation=_sizes("dilations", dilations, nd, layout),
        padding=_padding(padding, layout, nd),
        layout=layout,
    )
    if layout == "NCHW":
        s = letters(nd)
        w = convert_weight(w, s + "IO", "OI" + s)
    return w, kwargs


def from_keras(
    w: npt.ArrayLike,
    *,
    strides: Any = 1,
    padding: str = "valid",
    dilation_rate: Any = 1,
    groups: int = 1,
    data_format: str = "channels_last",
) -> Translation:
    """``keras.layers.Conv{1,2,3}D``: its kernel (HWIO) and keywords; "causal" for 1-d.

    ``padding="causal"`` (Conv1D) pads ``dilation * (kernel - 1)`` at the start only, so
    output ``t`` sees inputs up to ``t``.

    Parameters
    ----------
    w : array_like
        The layer's kernel, ``(*kernel, C/groups, O)`` (``layer.get_weights()[0]``).
    strides, dilation_rate, groups, data_format
        As the layer takes them.
    padding : {"valid", "same", "causal"}
        "same" is TensorFlow's SAME.

    Returns
    -------
    (ndarray, dict)
        The weight and the keyword arguments of :func:`npconv.conv`, as
        :func:`from_tensorflow` gives them, with ``groups``.

    Raises
    ------
    ValueError
        "causal" for a 2-d or 3-d kernel, and the errors of :func:`from_tensorflow`.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_keras
    >>> w, kwargs = from_keras(np.ones((3, 1, 1)), padding="causal")
    >>> npconv.conv(np.arange(5.0).reshape(1, 5, 1), w, **kwargs)[0, :, 0]
    array([0., 1., 3., 6., 9.])
    """
    w = np.asarray(w)
    nd = w.ndim - 2
    if padding.lower() == "causal":
        if nd != 1:
            raise ValueError(f"from_keras: padding='causal' is for 1-d convolutions, got {nd}-d")
        (d,) = int_tuple("from_keras", "dilation_rate", dilation_rate, 1, 1)
        causal = [d * (w.shape[0] - 1), 0]  # (W, I, O) kernel
        channels_last = _layout(data_format, 1) == "NHWC"
        padding_arg: Any = [[0, 0], causal, [0, 0]] if channels_last else [[0, 0], [0, 0], causal]
    else:
        padding_arg = padding
    w, kwargs = from_tensorflow(
        w, strides=strides, padding=padding_arg, dilations=dilation_rate, data_format=data_format
    )
    return w, {**kwargs, "groups": groups}


def from_tensorflow_transpose(
    w: npt.ArrayLike,
    *,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    strides: Any = 1,
    padding: str = "SAME",
    dilations: Any = 1,
    data_format: str = "NHWC",
) -> Translation:
    """``tf.nn.conv_transpose`` (``conv2d_transpose``): HWOI weight, explicit output shape.

    TensorFlow defines it as the gradient of ``tf.nn.convolution`` with respect to an input
    of ``output_shape``: the forward convolution's pads (SAME: from the output size, the
    odd one at the end; VALID: none) become npconv's ``padding`` pairs and the rest of the
    output size its ``output_padding``.

    Parameters
    ----------
    w : array_like
        ``(*kernel, O, C)``: the forward convolution's HWIO weight, whose input has the
        ``O`` channels of this result.
    input_shape, output_shape : sequence of int
        Full shapes of ``x`` and of the result, in ``data_format``.
    strides, padding, dilations, data_format
        As TensorFlow takes them.

    Returns
    -------
    (ndarray, dict)
        The weight (HWOI is npconv's channels-last conv_transpose weight; converted to
        IOHW for channels-first) and the keywords of :func:`npconv.conv_transpose`.

    Raises
    ------
    ValueError
        An ``output_shape`` that the forward convolution cannot come from.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_tensorflow_transpose
    >>> w, kw = from_tensorflow_transpose(
    ...     np.ones((3, 3, 2, 4)), input_shape=(1, 4, 4, 4), output_shape=(1, 8, 8, 2), strides=2
    ... )
    >>> kw["padding"], kw["output_padding"]
    (((0, 1), (0, 1)), (0, 0))
    >>> npconv.conv_transpose(np.ones((1, 4, 4, 4)), w, **kw).shape
    (1, 8, 8, 2)
    """
    w = np.asarray(w)
    nd = w.ndim - 2
    layout = _layout(data_format, nd)
    stride = _sizes("strides", strides, nd, layout)
    dilation = _sizes("dilations", dilations, nd, layout)
    spatial = slice(1, -1) if layout == "NHWC" else slice(2, None)
    in_size, out_size = tuple(input_shape)[spatial], tuple(output_shape)[spatial]
    windows = []
    for n, m, k, s, d in zip(in_size, out_size, w.shape[:nd], stride, dilation):
        forward_out = -(-m // s) if padding.upper() == "SAME" else (m - d * (k - 1) - 1) // s + 1
        if forward_out != n:
            raise ValueError(
                f"from_tensorflow_transpose: output_shape {tuple(output_shape)} does not match "
                f"input_shape {tuple(input_shape)}: a {padding} convolution of size {m} with "
                f"stride {s} gives {forward_out}, not {n}"
            )
        total = max((n - 1) * s + d * (k - 1) + 1 - m, 0) if padding.upper() == "SAME" else 0
        windows.append((total // 2, m))  # (begin, size) in the unpadded output
    kwargs = window_arguments("from_tensorflow_transpose", windows, in_size, w.shape[:nd],
                               stride, dilation)  # fmt: skip
    if layout == "NCHW":
        axes = letters(nd)
        w = convert_weight(w, axes + "OI", "IO" + axes)
    return w, {**kwargs, "layout": layout}
