"""Gradients of :func:`npconv.conv`, as convolutions (JAX's transpose rules).

For ``y = conv(x, w) + bias`` and an upstream gradient ``gy = dL/dy``:

* ``dL/dx`` is the transposed convolution of ``gy`` with ``w``
  (:func:`npconv.conv_transpose`), followed by the adjoint of the padding mode (pads
  that copied input elements send their gradient back to them);
* ``dL/dw`` is a convolution of ``x`` with ``gy``, the batch and the channels exchanged
  (:func:`npconv._adjoint.weight_gradient`); for floats, an algorithm with a weight
  gradient of the forward's own (``winograd_jit``: the adjoint of its transforms)
  computes it where named or estimated cheaper, and for channels-first floats where
  that convolution would run by an algorithm with a weight gradient of its own
  (``im2col``, ``depthwise_jit``), that function computes it
  (:func:`npconv._dispatch.run_weight_gradient`);
* ``dL/dbias`` is ``gy`` summed over the batch and every position.

Both convolutions run through the same dispatch as :func:`npconv.conv`, by the
algorithm asked for, so integers are exact (Python ints beyond int64) as in the forward
pass.  For complex arrays the gradients follow PyTorch's convention (the conjugate
Wirtinger derivative): the input gradient uses ``conj(w)`` and the weight gradient
``conj(x)``, so that ``grad_input`` is the adjoint (conjugate transpose) of the
convolution applied to ``gy``.

The functions mirror ``torch.nn.grad`` (``conv2d_input``, ``conv2d_weight``, ...) and
accept every padding form, ``padding_mode``, stride, dilation, groups and layout that
:func:`npconv.conv` does.  :func:`conv_backward` returns all three from one call;
:func:`conv_transpose_backward` does the same for :func:`npconv.conv_transpose`.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from ._dispatch import run, run_weight_gradient
from ._operands import Problem, as_array, bind_shapes, compute_dtypes
from ._ranked import rank_variant
from ._spec import ConvOptions, IntOrTuple, PaddingArg

__all__ = [
    "NEEDS",
    "ConvGrads",
    "conv1d_input",
    "conv1d_weight",
    "conv2d_input",
    "conv2d_weight",
    "conv3d_input",
    "conv3d_weight",
    "conv_backward",
    "conv_transpose_backward",
]

#: What :func:`conv_backward` can compute.
NEEDS = ("input", "weight", "bias")


class ConvGrads(NamedTuple):
    """Gradients of a convolution; a field is None when it was not requested."""

    input: np.ndarray | None
    weight: np.ndarray | None
    bias: np.ndarray | None


def _conjugated(a: np.ndarray) -> np.ndarray:
    """``conj(a)`` for complex ``a`` (PyTorch's convention, above), ``a`` itself otherwise."""
    return a.conj() if a.dtype.kind == "c" else a


def _checked_needs(fn: str, needs: Collection[str]) -> frozenset[str]:
    """``needs`` as a set of names from :data:`NEEDS` (a single name is accepted)."""
    names = frozenset((needs,) if isinstance(needs, str) else needs)
    unknown = sorted(names - set(NEEDS))
    if unknown:
        raise ValueError(f"{fn}: needs may only name {NEEDS}, got {unknown}")
    return names


def _integer_sum_dtype(gy: np.ndarray, channel_axis: int) -> np.dtype:
    """int64 where a channel's sum of ``gy`` cannot overflow it, Python ints otherwise."""
    count = gy.size // max(gy.shape[channel_axis], 1)
    largest = max(-float(gy.min(initial=0)), float(gy.max(initial=0)))
    return np.dtype(np.int64 if largest * count < 2**62 else object)


def _grads(
    opts: ConvOptions,
    grad_output: npt.ArrayLike,
    x: npt.ArrayLike | Sequence[int],
    w: npt.ArrayLike | Sequence[int],
    needs: Collection[str],
    *,
    given: str = "xw",
    transposed: bool = False,
    output_size: Sequence[int] | None = None,
    algorithm: str = "auto",
) -> ConvGrads:
    """Every requested gradient of ``conv`` (``conv_transpose`` if ``transposed``).

    ``given`` says which of ``x`` and ``w`` are arrays; the others are only shapes.
    """
    fn = opts.fn
    names = _checked_needs(fn, needs)
    gy = as_array(fn, "grad_output", grad_output)
    xa = as_array(fn, "x", x) if "x" in given else None
    wa = as_array(fn, "w", w) if "w" in given else None
    x_shape = xa.shape if xa is not None else tuple(x)  # type: ignore[arg-type]
    w_shape = wa.shape if wa is not None else tuple(w)  # type: ignore[arg-type]
    x_shape, w_shape = cast(tuple[int, ...], x_shape), cast(tuple[int, ...], w_shape)
    spec, unbatched = bind_shapes(
        opts, x_shape, w_shape, transposed=transposed, output_size=output_size
    )
    if unbatched:
        gy, xa = gy[None], None if xa is None else xa[None]
    expected = spec.input_shape if transposed else spec.output_shape  # the forward result's
    if gy.shape != expected:
        shown, got = (expected[1:], gy.shape[1:]) if unbatched else (expected, gy.shape)
        raise ValueError(
            f"{fn}: grad_output must have the shape of the forward result, {shown}, got {got}"
        )
    result = compute_dtypes(fn, *(a for a in (gy, xa, wa) if a is not None))[1]
    floats = result if result.kind in "fc" else None  # exact integers keep their own dtype

    grad_x = grad_w = grad_b = None
    if "input" in names and wa is not None:  # A^T gy, or A gy for a transposed convolution
        problem = Problem.of(fn, spec, gy, _conjugated(wa), transposed=not transposed)
        grad_x = run(problem, algorithm)
        grad_x = grad_x[0] if unbatched else grad_x
    if "weight" in names and xa is not None:  # conv(x, gy), the batch and channels exchanged
        x_in, x_out = (gy, _conjugated(xa)) if transposed else (_conjugated(xa), gy)
        grad_w = run_weight_gradient(fn, spec, x_in, x_out, algorithm)
    if "bias" in names:
        channel_axis = 1 if spec.layout == "NCHW" else gy.ndim - 1
        axes = tuple(i for i in range(gy.ndim) if i != channel_axis)
        grad_b = gy.sum(axis=axes, dtype=floats or _integer_sum_dtype(gy, channel_axis))
    if floats is not None:
        grads = [
            None if g is None else g.astype(floats, copy=False) for g in (grad_x, grad_w, grad_b)
        ]
        grad_x, grad_w, grad_b = grads
    return ConvGrads(grad_x, grad_w, grad_b)


def conv_backward(
    grad_output: npt.ArrayLike,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    algorithm: str = "auto",
    needs: Collection[str] = NEEDS,
) -> ConvGrads:
    """Gradients of ``y = conv(x, w, bias, ...)`` given ``grad_output = dL/dy``.

    Parameters
    ----------
    grad_output : array_like
        ``dL/dy``, the shape of the convolution's result.
    x, w : array_like
        The input and filters of the forward call (as for :func:`npconv.conv`).
    stride, padding, dilation, groups, padding_mode, layout
        Those of the forward call.
    algorithm : str
        ``"auto"`` or one of :func:`npconv.algorithms`, for both gradients (each is a
        convolution); ``"col2im"`` for the input gradient alone.
    needs : collection of {"input", "weight", "bias"}
        Which gradients to compute (default: all three).

    Returns
    -------
    ConvGrads
        ``(input, weight, bias)``: ``dL/dx`` with the shape of ``x``, ``dL/dw`` with the
        shape of ``w``, ``dL/dbias`` of shape ``(O,)``; None where not requested.  The
        dtype follows :func:`npconv.conv` for the three arrays together.

    Raises
    ------
    ValueError
        A ``grad_output`` whose shape is not the result's, an unknown name in ``needs``,
        and every error of :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Notes
    -----
    ``dL/dx`` is a transposed convolution with the forward's multiply-adds (split into
    ``prod(stride)`` stride-1 convolutions, or by ``col2im``); ``dL/dw`` a convolution
    of ``x`` with ``grad_output``, the batch and the channels exchanged, with the
    forward's multiply-adds (by ``im2col``: the transposed patch matrix times
    ``grad_output``, within the forward's workspace bound).

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((2, 1, 3, 3))
    >>> gx, gw, gb = npconv.grad.conv_backward(np.ones((1, 2, 4, 4)), x, w, padding=1)
    >>> gx[0, 0]
    array([[ 8., 12., 12.,  8.],
           [12., 18., 18., 12.],
           [12., 18., 18., 12.],
           [ 8., 12., 12.,  8.]])
    >>> gw[0, 0]
    array([[ 45.,  66.,  54.],
           [ 84., 120.,  96.],
           [ 81., 114.,  90.]])
    >>> gb
    array([16., 16.])
    """
    fn = "conv_backward"
    options = ConvOptions.create(fn, stride, padding, dilation, groups, padding_mode, layout)
    return _grads(options, grad_output, x, w, needs, algorithm=algorithm)


def conv_transpose_backward(
    grad_output: npt.ArrayLike,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: int | Sequence[int] | Sequence[Sequence[int]] = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    output_size: Sequence[int] | None = None,
    layout: str = "NCHW",
    algorithm: str = "auto",
    needs: Collection[str] = NEEDS,
) -> ConvGrads:
    """Gradients of ``y = conv_transpose(x, w, bias, ...)`` given ``grad_output = dL/dy``.

    Parameters
    ----------
    grad_output : array_like
        ``dL/dy``, the shape of the transposed convolution's result.
    x, w : array_like
        The input and filters of the forward call (as for
        :func:`npconv.conv_transpose`).
    stride, padding, output_padding, groups, dilation, output_size, layout
        Those of the forward call.
    algorithm : str
        ``"auto"`` or one of :func:`npconv.algorithms`, for the input gradient.
    needs : collection of {"input", "weight", "bias"}
        Which gradients to compute (default: all three).

    Returns
    -------
    ConvGrads
        ``(input, weight, bias)`` with the shapes of ``x``, ``w`` and ``(O,)``; None
        where not requested.

    Raises
    ------
    ValueError
        A ``grad_output`` whose shape is not the result's, an unknown name in ``needs``,
        and every error of :func:`npconv.conv_transpose`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Notes
    -----
    A transposed convolution is the adjoint of a convolution ``A``, so its input
    gradient is ``A`` itself applied to ``grad_output`` (a plain forward convolution),
    and its weight gradient is that of ``A`` with the roles of input and gradient
    swapped: both read the same padded ``grad_output``, built once.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x, w = np.ones((1, 2, 3, 3)), np.ones((2, 4, 3, 3))
    >>> y = npconv.conv_transpose(x, w, stride=2)
    >>> gx, gw, gb = npconv.grad.conv_transpose_backward(np.ones_like(y), x, w, stride=2)
    >>> gx.shape, gw.shape, gb
    ((1, 2, 3, 3), (2, 4, 3, 3), array([49., 49., 49., 49.]))
    """
    fn = "conv_transpose_backward"
    options = ConvOptions.create(
        fn, stride, padding, dilation, groups, layout=layout, output_padding=output_padding
    )
    grads = _grads(
        options,
        grad_output,
        x,
        w,
        needs,
        algorithm=algorithm,
        transposed=True,
        output_size=output_size,
    )
    return grads


def _input_grad(
    fn: str,
    input_size: Sequence[int],
    weight: npt.ArrayLike,
    grad_output: npt.ArrayLike,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    algorithm: str = "auto",
) -> np.ndarray:
    """``torch.nn.grad.conv{nd}d_input`` (see :func:`_input_variant`)."""
    options = ConvOptions.create(fn, stride, padding, dilation, groups, padding_mode, layout)
    grads = _grads(
        options, grad_output, input_size, weight, ("input",), given="w", algorithm=algorithm
    )
    return grads.input  # type: ignore[return-value]


def _weight_grad(
    fn: str,
    input: npt.ArrayLike,
    weight_size: Sequence[int],
    grad_output: npt.ArrayLike,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    algorithm: str = "auto",
) -> np.ndarray:
    """``torch.nn.grad.conv{nd}d_weight`` (see :func:`_weight_variant`)."""
    options = ConvOptions.create(fn, stride, padding, dilation, groups, padding_mode, layout)
    grads = _grads(
        options, grad_output, input, weight_size, ("weight",), given="x", algorithm=algorithm
    )
    return grads.weight  # type: ignore[return-value]


def _signature(impl: Any) -> inspect.Signature:
    """``impl``'s signature without its first parameter (the function's name)."""
    signature = inspect.signature(impl)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def _input_variant(nd: int) -> Any:
    spatial = ", 5" * nd
    doc = f"""Gradient of a {nd}-d convolution with respect to its input.

    As ``torch.nn.grad.conv{nd}d_input``: the transposed convolution of ``grad_output``
    with ``weight``, followed by the adjoint of ``padding_mode``.

    Parameters
    ----------
    input_size : tuple of int
        Shape of the forward input ``x`` (with or without the batch axis).
    weight : array_like
        The forward filters, ``(O, C/groups{", k" * nd})`` in "NCHW".
    grad_output : array_like
        ``dL/dy``, the shape of the forward result.
    stride, padding, dilation, groups, padding_mode, layout, algorithm
        As for :func:`npconv.conv`.

    Returns
    -------
    ndarray
        ``dL/dx``, of shape ``input_size``.

    Raises
    ------
    ValueError
        ``weight`` not {nd + 2}-d, ``grad_output`` not the result's shape, and every
        error of :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> w = np.ones((4, 3{", 3" * nd}))
    >>> gy = np.ones((2, 4{spatial}))
    >>> npconv.grad.conv{nd}d_input((2, 3{", 7" * nd}), w, gy).shape
    (2, 3{", 7" * nd})
    """
    name = f"conv{nd}d_input"
    return rank_variant(name, nd, _input_grad, _signature(_input_grad), "weight", doc)


def _weight_variant(nd: int) -> Any:
    spatial = ", 5" * nd
    doc = f"""Gradient of a {nd}-d convolution with respect to its weight.

    As ``torch.nn.grad.conv{nd}d_weight``: a convolution of the input with
    ``grad_output``, the batch and the channels exchanged (by ``im2col``: the patch
    matrix of the padded input, transposed, times ``grad_output``).

    Parameters
    ----------
    input : array_like
        The forward input ``x``.
    weight_size : tuple of int
        Shape of the forward filters, ``(O, C/groups{", k" * nd})`` in "NCHW".
    grad_output : array_like
        ``dL/dy``, the shape of the forward result.
    stride, padding, dilation, groups, padding_mode, layout, algorithm
        As for :func:`npconv.conv`.

    Returns
    -------
    ndarray
        ``dL/dw``, of shape ``weight_size``.

    Raises
    ------
    ValueError
        ``weight_size`` without {nd + 2} entries, ``grad_output`` not the result's shape,
        and every error of :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((2, 3{", 7" * nd}))
    >>> gy = np.ones((2, 4{spatial}))
    >>> gw = npconv.grad.conv{nd}d_weight(x, (4, 3{", 3" * nd}), gy)
    >>> gw.shape, float(gw.max())
    ((4, 3{", 3" * nd}), {2.0 * 5**nd})
    """
    name = f"conv{nd}d_weight"
    signature = _signature(_weight_grad)
    return rank_variant(name, nd, _weight_grad, signature, "weight_size", doc, shape=True)


conv1d_input = _input_variant(1)
conv2d_input = _input_variant(2)
conv3d_input = _input_variant(3)
conv1d_weight = _weight_variant(1)
conv2d_weight = _weight_variant(2)
conv3d_weight = _weight_variant(3)
