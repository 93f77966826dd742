"""Canonical convolution arguments: the one place where user input is validated.

Two steps, as JAX's dimension numbers are: :class:`ConvOptions` holds the options of a
convolution (stride, padding rule, dilation, groups, padding mode, layout, output
padding), checked and canonicalised once and free of any shape; :meth:`ConvOptions.bind`
meets them with the shapes of ``x`` and ``w`` and gives a :class:`ConvSpec`, which
knows the named sizes of the problem (batch, channels, groups, spatial extents), the
explicit ``(before, after)`` padding of every spatial axis and the output shape.
:meth:`ConvOptions.bind_transposed` gives the spec of the convolution whose adjoint a
transposed convolution is.  Layers, framework translators, the ONNX operators and the
dask wrapper build options; algorithms receive a spec and never look at the raw
arguments again.  Both steps are cached: a layer called again validates nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast

from ._checks import (
    check_pad_modes,
    explicit_pads,
    int_tuple,
    is_int,
    is_pairs,
    is_plain,
    same_pads,
    shape_tuple,
    valid_ints,
    weight_rank,
)

__all__ = ["LAYOUTS", "PADDING_MODES", "ConvOptions", "ConvSpec", "Layout", "PaddingArg"]

Layout = Literal["NCHW", "NHWC"]
IntOrTuple = int | Sequence[int]
PaddingArg = int | str | Sequence[int] | Sequence[Sequence[int]]
Ints = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

LAYOUTS = ("NCHW", "NHWC")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same", "same_upper", "same_lower")
SPATIAL_NAMES = ("L", "HW", "DHW")  # used in messages: 1-d, 2-d and 3-d convolutions


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

    @functools.cached_property
    def padded_size(self) -> tuple[int, ...]:
        """Spatial size of the input after padding."""
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_size, self.pads))

    @functools.cached_property
    def padded(self) -> bool:
        """Whether any spatial axis is padded (before or after)."""
        return any(lo or hi for lo, hi in self.pads)

    @property
    def extent(self) -> tuple[int, ...]:
        """Span of a dilated kernel, (k - 1) * d + 1, per spatial axis."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the input in the spec's layout."""
        return self._in_layout(self.in_channels, self.in_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the result in the spec's layout."""
        return self._in_layout(self.out_channels, self.out_size)

    def _in_layout(self, channels: int, size: tuple[int, ...]) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (self.batch, channels, *size)
        return (self.batch, *size, channels)

    @functools.cached_property
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

    def valid(self) -> ConvSpec:
        """The same convolution of the already padded input: no pads, ``in_size`` padded."""
        return self._valid

    @functools.cached_property
    def _valid(self) -> ConvSpec:
        """:meth:`valid`, made once per spec (specs are cached: a layer called again
        reuses its own)."""
        return replace(self, in_size=self.padded_size, pads=((0, 0),) * self.nd)

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
        whose message starts with ``fn``.  The same as
        ``ConvOptions.create(fn, ...).bind(x_shape, w_shape)``.
        """
        options = ConvOptions.create(fn, stride, padding, dilation, groups, padding_mode, layout)
        return options.bind(x_shape, w_shape)


@dataclass(frozen=True)
class ConvOptions:
    """The options of a convolution, validated, without shapes.

    Build with :meth:`create`.  Per-axis values are an int (every axis) or a tuple (one
    per axis) until :meth:`for_rank` expands them; ``padding`` is a lower-case padding
    string, an int, a tuple of ints or a tuple of ``(before, after)`` pairs.  ``fn``
    names the public function in every error message.
    """

    fn: str = "conv"
    stride: int | tuple[int, ...] = 1
    padding: str | int | tuple[int, ...] | tuple[tuple[int, int], ...] = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    padding_mode: str = "zeros"
    layout: Layout = "NCHW"
    output_padding: int | tuple[int, ...] = 0  # transposed convolutions only

    @classmethod
    def create(
        cls,
        fn: str = "conv",
        stride: object = 1,
        padding: object = 0,
        dilation: object = 1,
        groups: object = 1,
        padding_mode: object = "zeros",
        layout: object = "NCHW",
        output_padding: object = 0,
    ) -> ConvOptions:
        """Check every option that needs no shape; raise ValueError / TypeError naming ``fn``.

        The options may be given by position, in the order of the fields.

        Options made of ints, strings and tuples of them (a layer called again) return
        the options built the first time.
        """
        args = (fn, stride, padding, dilation, groups, padding_mode, layout, output_padding)
        if is_plain(args):
            return _create_cached(*args)
        return _create(*args)  # type: ignore[arg-type]

    def for_rank(self, nd: int) -> ConvOptions:
        """These options with every per-axis value given for ``nd`` spatial axes."""
        return _for_rank(self, nd)

    def bind(self, x_shape: Sequence[int], w_shape: Sequence[int]) -> ConvSpec:
        """The convolution of these options on a (batched) ``x_shape`` and ``w_shape``.

        ``w_shape`` is O, C/G, *kernel for "NCHW" and *kernel, C/G, O for "NHWC".
        """
        return _bind(self, shape_tuple(self.fn, "x", x_shape), shape_tuple(self.fn, "w", w_shape))

    def bind_transposed(
        self,
        x_shape: Sequence[int],
        w_shape: Sequence[int],
        output_size: Sequence[int] | None = None,
    ) -> ConvSpec:
        """The forward convolution whose adjoint is the transposed one of these options.

        ``x_shape`` is batched; ``w_shape`` is I, O/G, *kernel ("NCHW") or *kernel, O/G,
        I ("NHWC").  The spec's ``in_size`` is the transposed output size, ``(in - 1) *
        stride - pad_before - pad_after + dilation * (kernel - 1) + 1 +
        output_padding`` (or ``output_size``), and its ``out_size`` is the spatial size
        of ``x``.
        """
        x_shape = shape_tuple(self.fn, "x", x_shape)
        w_shape = shape_tuple(self.fn, "w", w_shape)
        size = None if output_size is None else tuple(output_size)
        return _bind_transposed(self, x_shape, w_shape, size)


def _create(
    fn: str,
    stride: object,
    padding: object,
    dilation: object,
    groups: object,
    padding_mode: object,
    layout: object,
    output_padding: object,
) -> ConvOptions:
    """:meth:`ConvOptions.create` without the cache."""
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"{fn}: layout must be one of {LAYOUTS}, got {layout!r}")
    if not is_int(groups):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if groups < 1:  # type: ignore[operator]
        raise ValueError(f"{fn}: groups must be >= 1, got {groups}")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"{fn}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    pad: str | int | tuple
    if isinstance(padding, str):
        pad = padding.lower()
        if pad not in PADDING_STRINGS:
            raise ValueError(
                f"{fn}: padding string must be one of {PADDING_STRINGS}, got {padding!r}"
            )
    elif is_pairs(padding):
        pairs = cast(Sequence[Sequence[object]], padding)
        valid_ints(fn, "padding", [v for pair in pairs for v in pair], 0, shown=padding)
        pad = tuple(tuple(int(v) for v in pair) for pair in pairs)  # type: ignore[call-overload]
    else:
        pad = valid_ints(fn, "padding", padding, 0)
    return ConvOptions(
        fn=fn,
        stride=valid_ints(fn, "stride", stride, 1),
        padding=pad,
        dilation=valid_ints(fn, "dilation", dilation, 1),
        groups=int(groups),  # type: ignore[call-overload]
        padding_mode=padding_mode,
        layout=layout,  # type: ignore[arg-type]
        output_padding=valid_ints(fn, "output_padding", output_padding, 0),
    )


@functools.lru_cache(maxsize=4096)
def _for_rank(options: ConvOptions, nd: int) -> ConvOptions:
    """:meth:`ConvOptions.for_rank` (cached)."""
    fn = options.fn
    stride = int_tuple(fn, "stride", options.stride, nd, 1)
    padding = options.padding
    if isinstance(padding, str):
        if padding != "valid" and options.padding_mode != "zeros":
            if padding == "same_lower" or max(stride) > 1:
                raise ValueError(
                    f"{fn}: padding={padding!r} with padding_mode={options.padding_mode!r} is "
                    f"ambiguous for stride={stride}: only 'same' at stride 1 (PyTorch) is "
                    "defined with a non-zero padding mode; pass explicit pads instead"
                )
    else:
        padding = explicit_pads(fn, padding, nd)
    return replace(
        options,
        stride=stride,
        padding=padding,
        dilation=int_tuple(fn, "dilation", options.dilation, nd, 1),
        output_padding=int_tuple(fn, "output_padding", options.output_padding, nd, 0),
    )


@functools.lru_cache(maxsize=4096)
def _bind(options: ConvOptions, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> ConvSpec:
    """:meth:`ConvOptions.bind` (cached)."""
    fn, layout, groups = options.fn, options.layout, options.groups
    nd = weight_rank(fn, w_shape)
    if len(x_shape) != nd + 2:
        spatial = ", ".join(SPATIAL_NAMES[nd - 1])
        axes = f"N, C, {spatial}" if layout == "NCHW" else f"N, {spatial}, C"
        raise ValueError(
            f"{fn}: x must have {nd + 2} dims ({axes}) for a {nd}-d convolution in "
            f"layout {layout!r}, got x.ndim={len(x_shape)} with shape {x_shape}"
        )
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

    ranked = options.for_rank(nd)
    stride, dilation = cast(Ints, ranked.stride), cast(Ints, ranked.dilation)
    mode = options.padding_mode
    if ranked.padding == "valid":
        pads = ((0, 0),) * nd
    elif isinstance(ranked.padding, str):
        lower = ranked.padding == "same_lower"
        pads = tuple(
            same_pads(n, k, s, d, lower) for n, k, s, d in zip(in_size, kernel, stride, dilation)
        )
    else:
        pads = cast(Pads, ranked.padding)

    check_pad_modes(fn, mode, in_size, pads)

    out_size = []
    for axis, (n, (lo, hi), k, d, s) in enumerate(zip(in_size, pads, kernel, dilation, stride)):
        padded, extent = n + lo + hi, (k - 1) * d + 1
        if padded < extent:
            raise ValueError(
                f"{fn}: the kernel is larger than the padded input in spatial dim "
                f"{axis}: dilated kernel extent {extent} > padded size {padded} "
                f"(input {n} + pads {lo}+{hi}), so the output would be empty"
            )
        out_size.append((padded - extent) // s + 1)

    return ConvSpec(
        layout=layout,
        batch=batch,
        in_channels=in_channels,
        out_channels=out_channels,
        groups=groups,
        in_size=tuple(in_size),
        kernel=tuple(kernel),
        stride=stride,
        dilation=dilation,
        pads=pads,
        padding_mode=mode,
        out_size=tuple(out_size),
    )


@functools.lru_cache(maxsize=1024)
def _bind_transposed(
    options: ConvOptions,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    output_size: tuple[int, ...] | None,
) -> ConvSpec:
    """:meth:`ConvOptions.bind_transposed` (cached)."""
    fn, layout, groups = options.fn, options.layout, options.groups
    nd = weight_rank(fn, w_shape)
    if len(x_shape) != nd + 2:
        raise ValueError(
            f"{fn}: x must have {nd + 2} dims (N, C and {SPATIAL_NAMES[nd - 1]}) for a "
            f"{nd}-d transposed convolution, got x.ndim={len(x_shape)} with shape {x_shape}"
        )
    if layout == "NCHW":
        batch, channels, *in_size = x_shape
        w_in, w_out, *kernel = w_shape
    else:
        batch, *in_size, channels = x_shape
        *kernel, w_out, w_in = w_shape
    if channels != w_in:
        w_axis = "w.shape[0]" if layout == "NCHW" else f"w.shape[{nd + 1}]"
        raise ValueError(f"{fn}: x has {channels} channels but w expects {w_in} ({w_axis})")
    if channels % groups:
        raise ValueError(
            f"{fn}: groups={groups} must be >= 1 and divide the input channels, but x has "
            f"{channels} channels"
        )
    if isinstance(options.padding, str):
        raise ValueError(
            f"{fn}: padding must be ints or (before, after) pairs, got {options.padding!r}; "
            "pass output_size= for a given output shape"
        )
    ranked = options.for_rank(nd)  # every per-axis value a tuple of nd entries
    stride, dilation = cast(Ints, ranked.stride), cast(Ints, ranked.dilation)
    extra, pads = cast(Ints, ranked.output_padding), cast(Pads, ranked.padding)
    if any(p >= max(s, d) for p, s, d in zip(extra, stride, dilation)):
        raise ValueError(
            f"{fn}: output_padding must be smaller than stride or dilation in every dim, "
            f"got output_padding={extra} with stride={stride} and dilation={dilation}"
        )
    smallest = tuple(
        (n - 1) * s - lo - hi + (k - 1) * d + 1
        for n, s, (lo, hi), k, d in zip(in_size, stride, pads, kernel, dilation)  # type: ignore[misc]
    )
    if output_size is not None:
        if any(extra):
            raise ValueError(
                f"{fn}: pass output_size or output_padding, not both "
                f"(output_size fixes output_padding), got output_padding={extra}"
            )
        size = output_size[2:] if len(output_size) == nd + 2 else output_size
        size = int_tuple(fn, "output_size", size, nd, 1)
        largest = tuple(m + s - 1 for m, s in zip(smallest, stride))
        if any(not lo <= n <= hi for n, lo, hi in zip(size, smallest, largest)):
            raise ValueError(
                f"{fn}: output_size={size} is impossible for this input: each dim must lie "
                f"between {smallest} and {largest} (in - 1) * stride - pads + "
                "dilation * (kernel - 1) + 1 (+ stride - 1)"
            )
        extra = tuple(n - m for n, m in zip(size, smallest))
    out_size = tuple(m + p for m, p in zip(smallest, extra))
    if min(out_size) < 1:
        raise ValueError(
            f"{fn}: the output would be empty: output size {out_size} from input "
            f"{tuple(in_size)}, stride {stride}, pads {pads}, kernel {tuple(kernel)}, "
            f"dilation {dilation}"
        )
    channels_out = w_out * groups
    shape = (
        (batch, channels_out, *out_size) if layout == "NCHW" else (batch, *out_size, channels_out)
    )
    forward = replace(options, padding=pads, padding_mode="zeros", output_padding=0)
    # An output_padding >= stride (allowed below the dilation) lets the forward conv reach
    # past x; its adjoint only reads x's positions.
    return replace(_bind(forward, shape, w_shape), out_size=tuple(in_size))


_create_cached = functools.lru_cache(maxsize=4096)(_create)
