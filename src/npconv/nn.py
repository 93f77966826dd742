"""Convolution layers with PyTorch's parameters: forward, backward and ``state_dict``.

Each layer holds ``weight`` and ``bias`` with the shapes and initialisation of its
``torch.nn`` namesake (Kaiming-uniform with ``a = sqrt(5)``, i.e. uniform in
``±1/sqrt(fan_in)``, bias likewise), runs :func:`npconv.conv` (or
:func:`npconv.conv_transpose`) forward, keeps a copy of its input (so that changing
that array in place before the backward pass cannot change the gradients), and on
``backward(grad_out)`` returns the input gradient and stores ``weight_grad`` and
``bias_grad`` for an optimiser.  ``state_dict()`` / ``load_state_dict()`` use PyTorch's
keys and shapes, so ``{k: v.numpy() for k, v in torch_layer.state_dict().items()}``
loads as is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ._api import conv
from ._checks import int_tuple, is_int
from ._spec import ConvOptions, IntOrTuple, PaddingArg
from ._transpose import conv_transpose
from .grad import conv_backward, conv_transpose_backward

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d"]


def _kept(x: npt.ArrayLike) -> np.ndarray:
    """A copy of the input for the backward pass, which later changes to ``x`` cannot reach."""
    return np.array(x, copy=True)


class _ConvNd:
    """Shared parameters, initialisation, caching and state of the convolution layers."""

    nd: ClassVar[int]
    transposed: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: npt.DTypeLike = np.float32,
        rng: np.random.Generator | int | None = None,
        *,
        output_padding: IntOrTuple = 0,
    ) -> None:
        name = type(self).__name__
        for arg, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        ):
            if not is_int(value):
                raise TypeError(f"{name}: {arg} must be an int, got {value!r}")
            least = 1 if arg == "groups" else 0  # no channels is allowed, as in PyTorch
            if value < least:
                raise ValueError(f"{name}: {arg} must be >= {least}, got {value}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"{name}: dtype must be a float dtype, got {self.dtype}")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be 'same', 'valid' or ints, got {padding!r}")
        options = ConvOptions.create(
            name, stride, padding, dilation, groups, padding_mode, output_padding=output_padding
        ).for_rank(self.nd)  # every value checked now, once
        if padding == "same" and max(options.stride) > 1:  # type: ignore[arg-type]
            raise ValueError(
                f"{name}: padding='same' is not supported for strided convolutions "
                f"(stride={options.stride}), as in PyTorch"
            )
        self.options = options
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = int_tuple(name, "kernel_size", kernel_size, self.nd, 1)
        self.stride, self.dilation = options.stride, options.dilation
        self.padding, self.padding_mode = options.padding, padding_mode
        self.output_padding = options.output_padding

        if self.transposed:  # (I, O/G, *kernel)
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:  # (O, I/G, *kernel)
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        fan_in = shape[1] * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0  # PyTorch's bound (0 without inputs)
        generator = np.random.default_rng(rng)
        self.weight = generator.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias = (
            generator.uniform(-bound, bound, out_channels).astype(self.dtype) if bias else None
        )
        self.weight_grad: np.ndarray | None = None
        self.bias_grad: np.ndarray | None = None
        self._input: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
            f"padding_mode={self.padding_mode!r})"
        )

    def __call__(self, x: npt.ArrayLike, **kwargs: Any) -> np.ndarray:
        return self.forward(x, **kwargs)

    def _conv_kwargs(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "padding_mode": self.padding_mode,
        }

    def forward(self, x: npt.ArrayLike) -> np.ndarray:
        """The layer's output for ``x`` (``(N, C, *spatial)`` or unbatched); caches ``x``."""
        self._input = _kept(x)
        return conv(self._input, self.weight, self.bias, **self._conv_kwargs())

    def backward(self, grad_out: npt.ArrayLike, *, input_grad: bool = True) -> np.ndarray | None:
        """Gradient w.r.t. the last input; stores ``weight_grad`` and ``bias_grad``.

        Parameters
        ----------
        grad_out : array_like
            ``dL/dy`` for the last output.
        input_grad : bool
            Compute the gradient w.r.t. the input (default).  A network's first layer,
            whose input needs none, passes False and saves a convolution; None is
            returned then.

        Raises
        ------
        RuntimeError
            When no forward pass has been run.
        """
        if self._input is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        needs = ["weight"] + ["input"] * input_grad + ["bias"] * (self.bias is not None)
        grads = self._grads(self._input, grad_out, needs)
        self.weight_grad, self.bias_grad = grads.weight, grads.bias
        return grads.input

    def _grads(self, x: np.ndarray, grad_out: npt.ArrayLike, needs: Sequence[str]) -> Any:
        return conv_backward(grad_out, x, self.weight, needs=needs, **self._conv_kwargs())

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"weight": ..., "bias": ...}`` (no bias key without a bias): the live arrays."""
        state = {"weight": self.weight}
        if self.bias is not None:
            state["bias"] = self.bias
        return state

    def grads(self) -> dict[str, np.ndarray | None]:
        """The last gradients, under the keys of :meth:`state_dict`."""
        grads = {"weight": self.weight_grad}
        if self.bias is not None:
            grads["bias"] = self.bias_grad
        return grads

    def load_state_dict(self, state: Mapping[str, npt.ArrayLike]) -> None:
        """Copy parameters in (cast to the layer's dtype); keys and shapes must match.

        Raises
        ------
        ValueError
            Missing or unexpected keys, or a shape that differs from the parameter's.
        """
        name = type(self).__name__
        own = self.state_dict()
        if set(state) != set(own):
            raise ValueError(
                f"{name}.load_state_dict: expected keys {sorted(own)}, got {sorted(state)}"
            )
        values = {key: np.asarray(state[key]) for key in own}
        for key, value in values.items():
            if value.shape != own[key].shape:
                raise ValueError(
                    f"{name}.load_state_dict: {key!r} must have shape {own[key].shape}, "
                    f"got {value.shape}"
                )
        for key, value in values.items():
            np.copyto(own[key], value, casting="unsafe")


_LAYER_DOC = """{nd}-d convolution layer, as ``torch.nn.Conv{nd}d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    kernel_size, stride, dilation : int or tuple of int
        As for :func:`npconv.conv`.
    padding : int, tuple, tuple of pairs, "same" or "valid"
        As for :func:`npconv.conv` ("same" only at stride 1, as in PyTorch).
    groups : int
        Must divide both channel counts.
    bias : bool
        Whether to add a learned bias.
    padding_mode : {{"zeros", "reflect", "replicate", "circular"}}
        What the pads hold.
    dtype : float dtype
        Of the parameters (default float32).
    rng : numpy.random.Generator, int or None
        Source (or seed) of the initial parameters.

    Attributes
    ----------
    weight : ndarray
        ``(out_channels, in_channels/groups, *kernel_size)``, uniform in
        ``±1/sqrt(fan_in)`` with ``fan_in = in_channels/groups * prod(kernel_size)``.
    bias : ndarray or None
        ``(out_channels,)``, uniform in the same range.
    weight_grad, bias_grad : ndarray or None
        Set by :meth:`backward`.

    Raises
    ------
    ValueError
        Non-positive sizes, groups not dividing the channels, an unknown padding (mode),
        "same" padding with a stride.
    TypeError
        Non-integer sizes or a non-float dtype.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> layer = npconv.nn.Conv{nd}d(2, 4, 3, padding=1, rng=0)
    >>> x = np.ones((5, 2{spatial}), dtype=np.float32)
    >>> y = layer(x)
    >>> y.shape
    (5, 4{spatial})
    >>> layer.backward(np.ones_like(y)).shape, layer.weight_grad.shape
    ((5, 2{spatial}), (4, 2{kernel}))
    """


class Conv1d(_ConvNd):
    __doc__ = _LAYER_DOC.format(nd=1, spatial=", 6", kernel=", 3")
    nd = 1


class Conv2d(_ConvNd):
    __doc__ = _LAYER_DOC.format(nd=2, spatial=", 6" * 2, kernel=", 3" * 2)
    nd = 2


class Conv3d(_ConvNd):
    __doc__ = _LAYER_DOC.format(nd=3, spatial=", 6" * 3, kernel=", 3" * 3)
    nd = 3


class ConvTranspose2d(_ConvNd):
    """2-d transposed convolution layer, as ``torch.nn.ConvTranspose2d``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        As for ``torch.nn.ConvTranspose2d`` (``padding`` as ints or pairs).
    padding_mode : {"zeros"}
        The only mode PyTorch defines for transposed convolutions.
    dtype, rng
        As for :class:`Conv2d`.
    output_padding : int or tuple of int
        Extra size at the end of each output dim; smaller than stride or dilation.

    Attributes
    ----------
    weight : ndarray
        ``(in_channels, out_channels/groups, *kernel_size)``, uniform in
        ``±1/sqrt(fan_in)`` with ``fan_in = out_channels/groups * prod(kernel_size)``
        (PyTorch's convention for this layer).
    bias, weight_grad, bias_grad
        As for :class:`Conv2d`.

    Raises
    ------
    ValueError
        As for :class:`Conv2d`, and a padding mode other than "zeros" or a padding string.
    TypeError
        As for :class:`Conv2d`.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> up = npconv.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, rng=0)
    >>> y = up(np.ones((1, 4, 5, 5)))
    >>> y.shape
    (1, 2, 10, 10)
    >>> up.backward(np.ones_like(y)).shape
    (1, 4, 5, 5)
    """

    nd = 2
    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: npt.DTypeLike = np.float32,
        rng: np.random.Generator | int | None = None,
        *,
        output_padding: IntOrTuple = 0,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"ConvTranspose2d: only padding_mode='zeros' is supported, got {padding_mode!r}"
            )
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be ints or pairs, got {padding!r}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            dtype,
            rng,
            output_padding=output_padding,
        )
        self._output_size: Sequence[int] | None = None

    def _conv_kwargs(self) -> dict[str, Any]:
        kwargs = super()._conv_kwargs()
        del kwargs["padding_mode"]
        if self._output_size is None:
            kwargs["output_padding"] = self.output_padding
        else:
            kwargs["output_size"] = self._output_size
        return kwargs

    def forward(self, x: npt.ArrayLike, output_size: Sequence[int] | None = None) -> np.ndarray:
        """The layer's output for ``x``; ``output_size`` picks among the possible sizes."""
        self._input, self._output_size = _kept(x), output_size
        return conv_transpose(self._input, self.weight, self.bias, **self._conv_kwargs())

    def _grads(self, x: np.ndarray, grad_out: npt.ArrayLike, needs: Sequence[str]) -> Any:
        return conv_transpose_backward(grad_out, x, self.weight, needs=needs, **self._conv_kwargs())
