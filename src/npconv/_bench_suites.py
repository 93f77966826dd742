"""The layers that ``npconv bench`` times: a :class:`Case` per layer, grouped in :data:`SUITES`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ._spec import ConvSpec

__all__ = ["SUITES", "Case"]


@dataclass(frozen=True)
class Case:
    """One layer: input and weight shapes in ``layout`` plus conv keywords."""

    name: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    layout: str = "NCHW"

    def spec(self) -> ConvSpec:
        return ConvSpec.build(self.x_shape, self.w_shape, layout=self.layout, **self.kwargs)

    def options(self) -> dict[str, Any]:
        """The keywords of ``npconv.conv`` for this layer (layout included)."""
        return {"layout": self.layout, **self.kwargs}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        """The case that :meth:`to_json` wrote (JSON has lists where the case has tuples)."""
        shapes = {key: tuple(data[key]) for key in ("x_shape", "w_shape")}
        return cls(**{**data, **shapes})


def _layer(
    name: str, n: int, c: int, o: int, size: int, k: int, stride: int = 1, groups: int = 1
) -> Case:
    kwargs = {"stride": stride, "padding": k // 2, "groups": groups}
    return Case(f"{name} b{n}", (n, c, size, size), (o, c // groups, k, k), kwargs)


def _resnet() -> list[Case]:
    layers = [
        ("stem 7x7/2 3->64 @224", 3, 64, 224, 7, 2),
        ("3x3 64->64 @56", 64, 64, 56, 3, 1),
        ("3x3 128->128 @28", 128, 128, 28, 3, 1),
        ("3x3 256->256 @14", 256, 256, 14, 3, 1),
        ("3x3 512->512 @7", 512, 512, 7, 3, 1),
        ("1x1 256->64 @56", 256, 64, 56, 1, 1),
        ("1x1 512->128 @28", 512, 128, 28, 1, 1),
        ("3x3/2 128->128 @56", 128, 128, 56, 3, 2),
    ]
    return [_layer(name, n, *args) for n in (1, 8) for name, *args in layers]


SUITES: dict[str, list[Case]] = {
    "notes": [
        Case("notes 10x32x32x8 * 3x3x8x16", (10, 32, 32, 8), (3, 3, 8, 16), layout="NHWC"),
        Case("notes 100x32x32x3 * 3x3x3x16", (100, 32, 32, 3), (3, 3, 3, 16), layout="NHWC"),
        Case("notes 33x33x3 * 5x5x3 /2", (1, 33, 33, 3), (5, 5, 3, 1), {"stride": 2}, "NHWC"),
    ],
    "resnet": _resnet(),
    "vgg": [_layer("vgg 3x3 64->64 @224", n, 64, 64, 224, 3) for n in (1, 8)],
    "mobilenet": [
        _layer("mbv2 dw 3x3 144 @56", 1, 144, 144, 56, 3, groups=144),
        _layer("mbv2 dw 3x3 384 @14", 1, 384, 384, 14, 3, groups=384),
        _layer("mbv2 1x1 24->144 @56", 1, 24, 144, 56, 1),
        _layer("mbv2 1x1 64->384 @14", 1, 64, 384, 14, 1),
    ],
    "conv1d": [  # 1-d stride-1 layers of three taps, as sequence and audio models have
        Case(f"conv1d 3 {c}->{c} @{n} b{b}", (b, c, n), (c, c, 3), {"padding": 1})
        for b, c, n in ((1, 512, 4096), (8, 256, 1024), (16, 128, 2048), (4, 64, 16000))
    ],
    "tiny": [  # a quick smoke test of the command itself
        _layer("tiny 3x3 4->4 @8", 2, 4, 4, 8, 3),
        _layer("tiny dw 3x3 4 @8", 1, 4, 4, 8, 3, groups=4),
    ],
}
SUITES["all"] = [c for key in ("notes", "resnet", "vgg", "mobilenet") for c in SUITES[key]]
