"""Canonical convolution arguments: the one place where user input is validated.

Every public entry point turns its keyword arguments into a frozen :class:`ConvSpec`
through :func:`ConvSpec.build`.  The spec knows the named sizes of the problem (batch,
channels, groups, spatial extents), the explicit ``(before, after)`` padding of every
spatial axis, and the output shape.  Algorithms receive a spec and never look at the
raw arguments again.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["LAYOUTS", "PADDING_MODES", "ConvSpec", "Layout", "PaddingArg"]

Layout = Literal["NCHW", "NHWC"]
IntOrTuple = int | Sequence[int]
PaddingArg = int | str | Sequence[int] | Sequence[Sequence[int]]

LAYOUTS = ("NCHW", "NHWC")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same", "same_upper", "same_lower")
SPATIAL_NAMES = ("L", "HW", "DHW")  # used in messages: 1-d, 2-d and 3-d convolutions


def is_int(value: object) -> bool:
    return type(value) is int or (  # the common case first: this runs on every call
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def int_tuple(fn: str, name: str, value: object, nd: int, minimum: int) -> tuple[int, ...]:
    """``value`` as ``nd`` integers >= ``minimum``; an int is repeated for every axis."""
    if is_int(value):
        values: tuple[object, ...] = (value,) * nd
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != nd:
            raise ValueError(
                f"{fn}: {name} must be an int or {nd} ints (one per spatial dim), "
                f"got {len(values)} values {value!r}"
            )
    else:
        raise TypeError(f"{fn}: {name} must be an int or a tuple of ints, got {value!r}")
    for v in values:
        if not is_int(v):
            raise TypeError(f"{fn}: {name} must contain ints, got {value!r}")
        if v < minimum:  # type: ignore[operator]
            raise ValueError(f"{fn}: {name} must be >= {minimum} in every dim, got {value!r}")
    return tuple(int(v) for v in values)  # type: ignore[call-overload]


def _same_pads(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    """ONNX SAME_UPPER / SAME_LOWER (TensorFlow "SAME"): output = ceil(size / stride)."""
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


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
            flat = int_tuple(fn, "padding", [v for p in items for v in p], 2 * nd, 0)  # type: ignore[union-attr]
            return tuple((flat[2 * i], flat[2 * i + 1]) for i in range(nd))
    symmetric = int_tuple(fn, "padding", padding, nd, 0)
    return tuple((p, p) for p in symmetric)


@dataclass(frozen=True)
class ConvSpec:
    """Validated, canonical description of one N-d convolution.

    Sizes are named after the math: ``batch`` (N), ``in_channels`` (C), ``out_channels``
    (O), ``groups`` (G), and per spatial axis ``in_size``, ``kernel``, ``stride``,
    ``dilation``, ``pads`` (before, after) and ``out_size``.
    """

    layout: Layout
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    padding_mode: str
    out_size: tuple[int, ...]

    # ----------------------------------------------------------------- derived sizes
    @property
    def nd(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.kernel)

    @property
    def group_in(self) -> int:
        """Input channels seen by one filter, C / G."""
        return self.in_channels // self.groups

    @property
    def group_out(self) -> int:
        """Output channels produced by one group, O / G."""
        return self.out_channels // self.groups

    @property
    def padded_size(self) -> tuple[int, ...]:
        """Spatial size of the input after padding."""
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_size, self.pads))

    @property
    def extent(self) -> tuple[int, ...]:
        """Span of a dilated kernel, (k - 1) * d + 1, per spatial axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the result in the spec's layout."""
        if self.layout == "NCHW":
            return (self.batch, self.out_channels, *self.out_size)
        return (self.batch, *self.out_size, self.out_channels)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the direct algorithm: N * O * C/G * prod(kernel) * prod(out)."""
        return (
            self.batch
            * self.out_channels
            * self.group_in
            * math.prod(self.kernel)
            * math.prod(self.out_size)
        )

    @property
    def flops(self) -> int:
        """2 x multiply-accumulates, the usual GFLOP/s numerator."""
        return 2 * self.macs

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        x_shape: Sequence[int],
        w_shape: Sequence[int],
        *,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        layout: str = "NCHW",
        fn: str = "conv",
    ) -> ConvSpec:
        """Validate a convolution and put it in canonical form.

        ``x_shape`` is batched (N first).  ``w_shape`` is O, C/G, *kernel for "NCHW" and
        *kernel, C/G, O for "NHWC".  Every error is a ``ValueError`` or ``TypeError``
        whose message starts with ``fn``.  Specs are immutable, so arguments made of
        ints, strings and tuples of them (a layer called again) reuse the spec built
        the first time.
        """
        args = (tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups, padding_mode)
        if _plain((args, layout, fn)):
            return _build_cached(*args, layout, fn)
        return cls._build(*args, layout, fn)

    @classmethod
    def _build(
        cls,
        x_shape: tuple[int, ...],
        w_shape: tuple[int, ...],
        stride: IntOrTuple,
        padding: PaddingArg,
        dilation: IntOrTuple,
        groups: int,
        padding_mode: str,
        layout: str,
        fn: str,
    ) -> ConvSpec:
        """:meth:`build` without the cache."""
        if not isinstance(layout, str) or layout not in LAYOUTS:
            raise ValueError(f"{fn}: layout must be one of {LAYOUTS}, got {layout!r}")
        nd = len(w_shape) - 2
        if nd not in (1, 2, 3):
            raise ValueError(
                f"{fn}: w must have 3, 4 or 5 dims (1-, 2- or 3-d convolution), "
                f"got w.ndim={len(w_shape)} with shape {tuple(w_shape)}"
            )
        if len(x_shape) != nd + 2:
            axes = (
                "N, C, " + ", ".join(SPATIAL_NAMES[nd - 1])
                if layout == "NCHW"
                else ("N, " + ", ".join(SPATIAL_NAMES[nd - 1]) + ", C")
            )
            raise ValueError(
                f"{fn}: x must have {nd + 2} dims ({axes}) for a {nd}-d convolution in "
                f"layout {layout!r}, got x.ndim={len(x_shape)} with shape {tuple(x_shape)}"
            )
        if not is_int(groups):
            raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
        if groups < 1:
            raise ValueError(f"{fn}: groups must be >= 1, got {groups}")
        if layout == "NCHW":
            batch, in_channels, *in_size = x_shape
            out_channels, w_in, *kernel = w_shape
        else:
            batch, *in_size, in_channels = x_shape
            *kernel, w_in, out_channels = w_shape
        if in_channels % groups:
            raise ValueError(
                f"{fn}: groups={groups} must divide the input channels, but x has "
                f"{in_channels} channels"
            )
        if out_channels % groups:
            raise ValueError(
                f"{fn}: groups={groups} must divide the output channels, but w has "
                f"{out_channels} output channels"
            )
        if w_in * groups != in_channels:
            w_axis = "w.shape[1]" if layout == "NCHW" else f"w.shape[{nd}]"
            raise ValueError(
                f"{fn}: x has {in_channels} channels but w expects {w_in * groups} "
                f"= {w_in} ({w_axis}) x groups({groups})"
            )
        if min(kernel) < 1:
            raise ValueError(f"{fn}: kernel size must be >= 1 in every dim, got {tuple(kernel)}")

        stride_t = int_tuple(fn, "stride", stride, nd, 1)
        dilation_t = int_tuple(fn, "dilation", dilation, nd, 1)
        if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{fn}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
            )

        extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation_t)]
        if isinstance(padding, str):
            mode = padding.lower()
            if mode not in PADDING_STRINGS:
                raise ValueError(
                    f"{fn}: padding string must be one of {PADDING_STRINGS}, got {padding!r}"
                )
            if mode == "valid":
                pads = tuple((0, 0) for _ in range(nd))
            else:
                if padding_mode != "zeros" and (mode == "same_lower" or max(stride_t) > 1):
                    raise ValueError(
                        f"{fn}: padding={padding!r} with padding_mode={padding_mode!r} is "
                        f"ambiguous for stride={stride_t}: only 'same' at stride 1 (PyTorch) "
                        "is defined with a non-zero padding mode; pass explicit pads instead"
                    )
                pads = tuple(
                    _same_pads(n, k, s, d, lower=mode == "same_lower")
                    for n, k, s, d in zip(in_size, kernel, stride_t, dilation_t)
                )
        else:
            pads = explicit_pads(fn, padding, nd)

        for axis, (n, (lo, hi)) in enumerate(zip(in_size, pads)):
            if padding_mode == "reflect" and max(lo, hi) >= n:
                raise ValueError(
                    f"{fn}: padding_mode='reflect' needs pads smaller than the input, but "
                    f"spatial dim {axis} has size {n} and pads ({lo}, {hi})"
                )
            if padding_mode in ("replicate", "circular") and max(lo, hi) > 0 and n == 0:
                raise ValueError(
                    f"{fn}: padding_mode={padding_mode!r} cannot pad an empty dim {axis}"
                )
            if padding_mode == "circular" and max(lo, hi) > n:
                raise ValueError(
                    f"{fn}: padding_mode='circular' needs pads no larger than the input, but "
                    f"spatial dim {axis} has size {n} and pads ({lo}, {hi})"
                )

        out_size = []
        for axis, (n, (lo, hi), e, s) in enumerate(zip(in_size, pads, extents, stride_t)):
            padded = n + lo + hi
            if padded < e:
                raise ValueError(
                    f"{fn}: the kernel is larger than the padded input in spatial dim "
                    f"{axis}: dilated kernel extent {e} > padded size {padded} "
                    f"(input {n} + pads {lo}+{hi}), so the output would be empty"
                )
            out_size.append((padded - e) // s + 1)

        return cls(
            layout=layout,  # type: ignore[arg-type]
            batch=int(batch),
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            groups=int(groups),
            in_size=tuple(int(n) for n in in_size),
            kernel=tuple(int(k) for k in kernel),
            stride=stride_t,
            dilation=dilation_t,
            pads=pads,
            padding_mode=padding_mode,
            out_size=tuple(out_size),
        )


def _plain(value: object) -> bool:
    """Whether ``value`` is an int, a str or a tuple of such (nested): safe to cache by."""
    if type(value) is tuple:
        for item in value:  # a loop, not all(): this runs on every call
            if not _plain(item):
                return False
        return True
    return type(value) is int or type(value) is str


_build_cached = functools.lru_cache(maxsize=4096)(ConvSpec._build)
