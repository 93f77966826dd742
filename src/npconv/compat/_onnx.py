"""ONNX's ``Conv`` and ``ConvTranspose`` attributes.

:func:`conv_arguments` and :func:`transpose_window` are also what :mod:`npconv.onnx` runs
the operators with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._common import Translation, window_arguments

_AUTO_PAD = {"VALID": "valid", "SAME_UPPER": "same_upper", "SAME_LOWER": "same_lower"}


def _text(value: Any) -> str:
    """A string attribute as ``str`` (onnx hands over bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _pads(op: str, pads: Any, nd: int) -> tuple[tuple[int, int], ...]:
    """ONNX ``pads`` (all begins, then all ends) as one (begin, end) pair per axis."""
    pads = [0] * (2 * nd) if pads is None else [int(p) for p in pads]
    if len(pads) != 2 * nd:
        raise ValueError(
            f"{op}: pads must hold 2 x {nd} values [x1_begin, ..., x1_end, ...] for a "
            f"{nd}-d convolution, got {pads}"
        )
    return tuple(zip(pads[:nd], pads[nd:]))


def _checks(op: str, kernel: tuple[int, ...], kernel_shape: Any, auto_pad: Any) -> str:
    """The auto_pad mode, after checking it and ``kernel_shape`` against the weight."""
    if kernel_shape is not None and tuple(kernel_shape) != kernel:
        raise ValueError(
            f"{op}: kernel_shape={list(kernel_shape)} does not match the weight's spatial "
            f"shape {list(kernel)}"
        )
    mode = _text(auto_pad or "NOTSET")
    if mode not in ("NOTSET", *_AUTO_PAD):
        raise ValueError(
            f"{op}: auto_pad must be one of NOTSET, {', '.join(_AUTO_PAD)}, got {mode!r}"
        )
    return mode


def conv_arguments(
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
    mode = _checks(op, kernel, kernel_shape, auto_pad)
    padding = _pads(op, pads, len(kernel)) if mode == "NOTSET" else _AUTO_PAD[mode]
    return {
        "stride": tuple(strides) if strides else 1,
        "dilation": tuple(dilations) if dilations else 1,
        "groups": 1 if group is None else group,
        "padding": padding,
    }


def transpose_window(
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
    mode = _checks(op, kernel, kernel_shape, auto_pad)
    stride = tuple(strides) if strides else (1,) * nd
    extra = tuple(output_padding) if output_padding else (0,) * nd
    natural = [  # the spec's output size before pads
        s * (n - 1) + (k - 1) * d + 1 + p
        for n, k, s, d, p in zip(in_size, kernel, stride, dilations or (1,) * nd, extra)
    ]
    if output_shape is None and mode in ("NOTSET", "VALID"):
        crops = _pads(op, pads if mode == "NOTSET" else None, nd)
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
    return w, {**conv_arguments("from_onnx", w.shape[2:], **attributes), "layout": "NCHW"}


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
    windows = transpose_window("from_onnx_transpose", in_size, w.shape[2:], **attrs)
    stride = tuple(attrs.get("strides") or (1,) * nd)
    dilation = tuple(attrs.get("dilations") or (1,) * nd)
    kwargs = window_arguments("from_onnx_transpose", windows, in_size, w.shape[2:], stride,
                               dilation)  # fmt: skip
    return w, {**kwargs, "groups": groups, "layout": "NCHW"}
