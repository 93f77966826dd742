"""What every translation shares: weight layouts and transposed-output windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Translation = tuple[np.ndarray, dict[str, Any]]


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


def letters(nd: int) -> str:
    return "DHW"[3 - nd :] if nd <= 3 else "".join(chr(ord("a") + i) for i in range(nd))


def window_arguments(
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
