"""Exact translations of other frameworks' convolution conventions into npconv's.

Each ``from_*`` function takes a framework's weight and its convolution parameters and
returns ``(w, kwargs)`` such that ``npconv.conv(x, w, **kwargs)`` (``from_*_transpose``:
``npconv.conv_transpose``) computes what the framework computes on the same ``x``:

=====================  ==============================  ===================================
framework              convolution                     transposed convolution
=====================  ==============================  ===================================
PyTorch                :func:`from_torch`              :func:`from_torch_transpose`
TensorFlow / Keras     :func:`from_tensorflow`,        :func:`from_tensorflow_transpose`
                       :func:`from_keras`
ONNX                   :func:`from_onnx`               :func:`from_onnx_transpose`
JAX (``lax``)          :func:`from_jax`                :func:`from_jax_transpose`
=====================  ==============================  ===================================

The conventions differ in three ways.  Padding: TensorFlow's "SAME" (ONNX SAME_UPPER)
pads ``(ceil(in / stride) - 1) * stride + dilation * (kernel - 1) + 1 - in`` in total,
the odd one at the end, so it depends on the input size and stride; ONNX SAME_LOWER puts
the odd one first; PyTorch's "same" exists for stride 1 only, where all three agree.
Transposed convolutions: PyTorch picks the output size with ``output_padding``, ONNX
with ``output_shape`` (pads split by its own rule), TensorFlow with ``output_shape`` (the
gradient of a forward convolution of that size), and JAX's ``conv_transpose`` convolves
the stride-dilated input with the kernel itself unless ``transpose_kernel=True``.
Weight layouts: OIHW (PyTorch, ONNX), HWIO (TensorFlow), IOHW for PyTorch/ONNX transposed
convolutions, HWOI for TensorFlow's; :func:`convert_weight` permutes and flips them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._spec import int_tuple

__all__ = [
    "convert_weight",
    "from_jax",
    "from_jax_transpose",
    "from_keras",
    "from_onnx",
    "from_onnx_transpose",
    "from_tensorflow",
    "from_tensorflow_transpose",
    "from_torch",
    "from_torch_transpose",
]

Translation = tuple[np.ndarray, dict[str, Any]]
_ONNX_AUTO_PAD = {"VALID": "valid", "SAME_UPPER": "same_upper", "SAME_LOWER": "same_lower"}


def convert_weight(w: npt.ArrayLike, src: str, dst: str, *, flip: bool = False) -> np.ndarray:
    """Permute a weight between layouts named by letters, e.g. ``"HWIO"`` -> ``"OIHW"``.

    Parameters
    ----------
    w : array_like
        The weight, laid out as ``src``.
    src, dst : str
        One letter per axis: ``O`` and ``I`` for the channel axes, any other letters for
        the spatial axes (``"OIW"``, ``"HWIO"``, ``"IODHW"``, ...); the same letters in both.
    flip : bool
        Also reverse every spatial axis (a correlation kernel as a convolution kernel).

    Returns
    -------
    ndarray
        A view of ``w`` laid out as ``dst``.

    Raises
    ------
    ValueError
        ``src`` and ``dst`` hold different letters, repeat one, or do not have ``w.ndim``
        letters.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv.compat import convert_weight
    >>> convert_weight(np.zeros((3, 3, 8, 16)), "HWIO", "OIHW").shape
    (16, 8, 3, 3)
    """
    w = np.asarray(w)
    if sorted(src) != sorted(dst) or len(set(src)) != len(src) or len(src) != w.ndim:
        raise ValueError(
            f"convert_weight: src={src!r} and dst={dst!r} must name the same {w.ndim} distinct "
            f"axes of w (shape {w.shape})"
        )
    if flip:
        w = w[tuple(slice(None, None, -1) if a not in "OI" else slice(None) for a in src)]
    return w.transpose([src.index(a) for a in dst])


def _letters(nd: int) -> str:
    return "DHW"[3 - nd :] if nd <= 3 else "".join(chr(ord("a") + i) for i in range(nd))


# -------------------------------------------------------------------------------- PyTorch
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


# --------------------------------------------------------------------- TensorFlow / Keras
def _tf_sizes(name: str, value: Any, nd: int, layout: str) -> tuple[int, ...]:
    """TensorFlow's strides/dilations: an int, ``nd`` ints, or ``nd + 2`` with N and C."""
    if isinstance(value, Sequence) and len(value) == nd + 2:
        value = value[1:-1] if layout == "NHWC" else value[2:]
    return int_tuple("from_tensorflow", name, value, nd, 1)


def _tf_layout(data_format: str, nd: int) -> str:
    if data_format.upper() in ("NHWC", "NWC", "NDHWC", "CHANNELS_LAST"):
        return "NHWC"
    if data_format.upper() in ("NCHW", "NCW", "NCDHW", "CHANNELS_FIRST"):
        return "NCHW"
    raise ValueError(
        f"from_tensorflow: data_format must be channels-last (NHWC, NWC, NDHWC) or "
        f"channels-first (NCHW, NCW, NCDHW), got {data_format!r}"
    )


def _tf_padding(padding: Any, layout: str, nd: int) -> Any:
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
    layout = _tf_layout(data_format, nd)
    kwargs = dict(
        stride=_tf_sizes("strides", strides, nd, layout),
        dilation=_tf_sizes("dilations", dilations, nd, layout),
        padding=_tf_padding(padding, layout, nd),
        layout=layout,
    )
    if layout == "NCHW":
        s = _letters(nd)
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
        channels_last = _tf_layout(data_format, 1) == "NHWC"
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
    layout = _tf_layout(data_format, nd)
    stride = _tf_sizes("strides", strides, nd, layout)
    dilation = _tf_sizes("dilations", dilations, nd, layout)
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
    kwargs = _window_arguments("from_tensorflow_transpose", windows, in_size, w.shape[:nd],
                               stride, dilation)  # fmt: skip
    if layout == "NCHW":
        letters = _letters(nd)
        w = convert_weight(w, letters + "OI", "IO" + letters)
    return w, {**kwargs, "layout": layout}


def _window_arguments(
    fn: str,
    windows: Sequence[tuple[int, int]],
    in_size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> dict[str, Any]:
    """conv_transpose keywords whose output is ``size`` elements from ``begin`` on of the
    unpadded transposed output (zeros past its end), per axis."""
    pads, extra = [], []
    for (begin, size), n, k, s, d in zip(windows, in_size, kernel, stride, dilation):
        full = (n - 1) * s + d * (k - 1) + 1
        after = max(full - begin - size, 0)
        grow = size - (full - begin - after)  # zeros appended: npconv's output_padding
        if begin < 0:
            raise ValueError(
                f"{fn}: the output starts {-begin} elements before the transposed output, "
                "which conv_transpose's padding cannot express"
            )
        if grow >= max(s, d):
            raise ValueError(
                f"{fn}: an output of {size} elements from {begin} on of the {full}-element "
                f"transposed output needs output_padding {grow}, but it must be smaller than "
                f"stride {s} or dilation {d}"
            )
        pads.append((begin, after))
        extra.append(grow)
    return dict(
        stride=tuple(stride), padding=tuple(pads), output_padding=tuple(extra),
        dilation=tuple(dilation),
    )  # fmt: skip


# ----------------------------------------------------------------------------------- ONNX
def _text(value: Any) -> str:
    """A string attribute as ``str`` (onnx hands over bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _onnx_pads(op: str, pads: Any, nd: int) -> tuple[tuple[int, int], ...]:
    """ONNX ``pads`` (all begins, then all ends) as one (begin, end) pair per axis."""
    pads = [0] * (2 * nd) if pads is None else [int(p) for p in pads]
    if len(pads) != 2 * nd:
        raise ValueError(
            f"{op}: pads must hold 2 x {nd} values [x1_begin, ..., x1_end, ...] for a "
            f"{nd}-d convolution, got {pads}"
        )
    return tuple(zip(pads[:nd], pads[nd:]))


def _onnx_checks(op: str, kernel: tuple[int, ...], kernel_shape: Any, auto_pad: Any) -> str:
    """The auto_pad mode, after checking it and ``kernel_shape`` against the weight."""
    if kernel_shape is not None and tuple(kernel_shape) != kernel:
        raise ValueError(
            f"{op}: kernel_shape={list(kernel_shape)} does not match the weight's spatial "
            f"shape {list(kernel)}"
        )
    mode = _text(auto_pad or "NOTSET")
    if mode not in ("NOTSET", *_ONNX_AUTO_PAD):
        raise ValueError(
            f"{op}: auto_pad must be one of NOTSET, {', '.join(_ONNX_AUTO_PAD)}, got {mode!r}"
        )
    return mode


def _onnx_conv_arguments(
    op: str,
    kernel: tuple[int, ...],
    *,
    auto_pad: Any = None,
    dilations: Any = None,
    group: Any = None,
    kernel_shape: Any = None,
    pads: Any = None,
    strides: Any = None,
) -> dict[str, Any]:
    """The keywords of :func:`npconv.conv` for ONNX Conv attributes (errors name ``op``).

    ``kernel`` is the weight's spatial shape; a ``kernel_shape`` attribute must match it.
    """
    mode = _onnx_checks(op, kernel, kernel_shape, auto_pad)
    padding = _onnx_pads(op, pads, len(kernel)) if mode == "NOTSET" else _ONNX_AUTO_PAD[mode]
    return {
        "stride": tuple(strides) if strides else 1,
        "dilation": tuple(dilations) if dilations else 1,
        "groups": 1 if group is None else group,
        "padding": padding,
    }


def _onnx_transpose_window(
    op: str,
    in_size: tuple[int, ...],
    kernel: tuple[int, ...],
    *,
    auto_pad: Any = None,
    dilations: Any = None,
    kernel_shape: Any = None,
    output_padding: Any = None,
    output_shape: Any = None,
    pads: Any = None,
    strides: Any = None,
) -> list[tuple[int, int]]:
    """Where ONNX ConvTranspose's output lies in its unpadded output: (begin, size) per axis.

    The unpadded output of an axis has ``stride * (in - 1) + (kernel - 1) * dilation + 1``
    elements; the result holds ``size`` elements from ``begin`` on, zeros past its end.
    Pads come from the spec's equations: given, or from ``output_shape`` / SAME
    (``in * stride``) with ``total_padding`` split (SAME_UPPER: the odd one at the end;
    otherwise at the beginning).  A negative total (an output larger than the unpadded
    one) appends zeros: the adjoint of a SAME Conv whose input is that long, which never
    reads its last positions (TensorFlow's reading).
    """
    nd = len(kernel)
    mode = _onnx_checks(op, kernel, kernel_shape, auto_pad)
    stride = tuple(strides) if strides else (1,) * nd
    extra = tuple(output_padding) if output_padding else (0,) * nd
    natural = [  # the spec's output size before pads
        s * (n - 1) + (k - 1) * d + 1 + p
        for n, k, s, d, p in zip(in_size, kernel, stride, dilations or (1,) * nd, extra)
    ]
    if output_shape is None and mode in ("NOTSET", "VALID"):
        crops = _onnx_pads(op, pads if mode == "NOTSET" else None, nd)
        window = [(lo, m - lo - hi) for m, (lo, hi) in zip(natural, crops)]
        if min(min(lo, hi) for lo, hi in crops) < 0 or min(n for _, n in window) < 1:
            raise ValueError(
                f"{op}: pads={list(pads)} must be >= 0 and leave an output: the unpadded "
                f"output has size {natural}"
            )
        return window
    if output_shape is not None:
        out = [int(n) for n in output_shape][-nd:]  # spatial sizes (N, C may lead)
    else:  # SAME_UPPER / SAME_LOWER
        out = [n * s for n, s in zip(in_size, stride)]
    window = []
    for m, n in zip(natural, out):
        total = max(m - n, 0)
        begin = total // 2 if mode == "SAME_UPPER" else total - total // 2
        window.append((begin, n))
    return window


def from_onnx(w: npt.ArrayLike, attributes: Mapping[str, Any]) -> Translation:
    """ONNX ``Conv`` attributes (a dict, as ``onnx.helper.make_node`` takes them).

    Parameters
    ----------
    w : array_like
        ``(M, C/group, *kernel)``.
    attributes : mapping
        Any of ``auto_pad``, ``dilations``, ``group``, ``kernel_shape``, ``pads``,
        ``strides``; the ones left out take the spec's defaults.

    Returns
    -------
    (ndarray, dict)
        The weight and the keyword arguments of :func:`npconv.conv` (SAME_UPPER becomes
        ``padding="same_upper"``, SAME_LOWER ``"same_lower"``).

    Raises
    ------
    ValueError
        ``pads`` of the wrong length, a ``kernel_shape`` that differs from the weight,
        an unknown ``auto_pad``.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_onnx
    >>> w, kwargs = from_onnx(np.ones((1, 1, 3, 3)), {"auto_pad": "SAME_LOWER", "strides": [2, 2]})
    >>> kwargs["padding"], npconv.conv(np.ones((1, 1, 6, 6)), w, **kwargs).shape
    ('same_lower', (1, 1, 3, 3))
    """
    w = np.asarray(w)
    return w, {**_onnx_conv_arguments("from_onnx", w.shape[2:], **attributes), "layout": "NCHW"}


def from_onnx_transpose(
    w: npt.ArrayLike, attributes: Mapping[str, Any], input_shape: Sequence[int]
) -> Translation:
    """ONNX ``ConvTranspose`` attributes for an input of ``input_shape`` (N, C, *spatial).

    Pads from ``output_shape`` or SAME are split by the spec's rule (which differs from
    PyTorch's and TensorFlow's) and expressed as npconv's ``padding`` pairs plus
    ``output_padding``.

    Parameters
    ----------
    w : array_like
        ``(C, M/group, *kernel)``.
    attributes : mapping
        Any of ``auto_pad``, ``dilations``, ``group``, ``kernel_shape``,
        ``output_padding``, ``output_shape``, ``pads``, ``strides``.
    input_shape : sequence of int
        The shape of ``X``, which SAME and ``output_shape`` depend on.

    Returns
    -------
    (ndarray, dict)
        The weight and the keyword arguments of :func:`npconv.conv_transpose`.

    Raises
    ------
    ValueError
        The attributes' errors, or an output larger than npconv's ``output_padding`` can
        reach (use :func:`npconv.onnx.evaluator`, which appends zeros).

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.compat import from_onnx_transpose
    >>> attrs = {"strides": [2], "output_shape": [8]}
    >>> w, kwargs = from_onnx_transpose(np.ones((1, 1, 3)), attrs, (1, 1, 4))
    >>> kwargs["padding"], kwargs["output_padding"]
    (((1, 0),), (0,))
    """
    w = np.asarray(w)
    attrs = dict(attributes)
    nd, groups = w.ndim - 2, attrs.pop("group", 1)
    in_size = tuple(input_shape)[2:]
    windows = _onnx_transpose_window("from_onnx_transpose", in_size, w.shape[2:], **attrs)
    stride = tuple(attrs.get("strides") or (1,) * nd)
    dilation = tuple(attrs.get("dilations") or (1,) * nd)
    kwargs = _window_arguments("from_onnx_transpose", windows, in_size, w.shape[2:], stride,
                               dilation)  # fmt: skip
    return w, {**kwargs, "groups": groups, "layout": "NCHW"}


# ------------------------------------------------------------------------------------ JAX
def _jax_layouts(dimension_numbers: Any, nd: int) -> tuple[str, str, str]:
    """(lhs, rhs, out) spec strings; JAX's default is NCHW / OIHW / NCHW."""
    if dimension_numbers is None:
        s = _letters(nd)
        return "NC" + s, "OI" + s, "NC" + s
    return tuple(dimension_numbers)  # type: ignore[return-value]


def _jax_weight(w: np.ndarray, lhs: str, rhs: str, out: str, fn: str) -> tuple[np.ndarray, str]:
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


def _jax_padding(padding: Any) -> Any:
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
    lhs, rhs, out = _jax_layouts(dimension_numbers, w.ndim - 2)
    w, layout = _jax_weight(w, lhs, rhs, out, "from_jax")
    kwargs = dict(
        stride=tuple(window_strides),
        padding=_jax_padding(padding),
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
    s = _letters(nd)
    lhs, rhs, out = _jax_layouts(dimension_numbers or ("N" + s + "C", s + "IO", "N" + s + "C"), nd)
    kernel = tuple(w.shape[rhs.index(a)] for a in rhs if a not in "OI")
    dilation = tuple(rhs_dilation) if rhs_dilation else (1,) * nd
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"from_jax_transpose: padding must be SAME, VALID or pairs, "
                             f"got {padding!r}")  # fmt: skip
        pads = [_jax_transpose_padding(e, st, padding.upper()) for e, st in zip(extents, strides)]
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
    kwargs = _window_arguments("from_jax_transpose", windows, in_size, kernel, tuple(strides),
                               dilation)  # fmt: skip
    # npconv's conv_transpose weight is its forward convolution's weight.  JAX correlates
    # the spread input with K (rhs, or rhs flipped with I and O swapped when
    # transpose_kernel), whose I axis is the input's channels; the forward weight is K
    # flipped with I and O swapped: rhs itself when transpose_kernel.
    if transpose_kernel:
        forward, letters = w, rhs
    else:
        swapped = rhs.replace("I", "*").replace("O", "I").replace("*", "O")
        forward, letters = convert_weight(w, rhs, rhs, flip=True), swapped
    w, layout = _jax_weight(forward, lhs, letters, out, "from_jax_transpose")
    return w, {**kwargs, "layout": layout}


def _jax_transpose_padding(extent: int, stride: int, padding: str) -> tuple[int, int]:
    """JAX's ``_conv_transpose_padding``: pads of the spread input for SAME / VALID."""
    if padding == "SAME":
        total = extent + stride - 2
        before = extent - 1 if stride > extent - 1 else math.ceil(total / 2)
    else:
        total = extent + stride - 2 + max(extent - stride, 0)
        before = extent - 1
    return before, total - before
