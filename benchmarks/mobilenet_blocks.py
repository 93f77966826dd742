"""MobileNetV2's blocks one after another, as a network runs them, at batch 1.

Each of MobileNetV2's seven kinds of inverted-residual blocks (1x1 expansion with bias,
3x3 depthwise with bias at stride 1 or 2, 1x1 projection) runs by :func:`npconv.conv`
with "auto", the seven in sequence; the script prints the median time of the whole
sequence and of each depthwise layer inside it.  Unlike ``npconv bench``, whose layers
each run alone in a process of their own, the layers here follow one another: a
depthwise layer starts while OpenBLAS's threads, woken by the 1x1 layer before it,
still spin, and the 1x1 layer after it starts while npconv's threads, woken by the
depthwise layer, still spin.

Run from the repository root (2 threads)::

    python benchmarks/mobilenet_blocks.py --repeats 40
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import npconv

#: (channels in and out, expanded channels, input size, depthwise stride)
BLOCKS = [
    (24, 144, 56, 1),
    (32, 192, 28, 1),
    (64, 384, 14, 1),
    (96, 576, 14, 1),
    (160, 960, 7, 1),
    (24, 144, 56, 2),
    (32, 192, 28, 2),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed runs (median)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    npconv.set_threads(args.threads)
    rng = np.random.default_rng(0)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    layers = []
    for channels, expanded, size, stride in BLOCKS:
        layers.append(
            (f32(1, channels, size, size), f32(expanded, channels, 1, 1), f32(expanded),
             f32(expanded, 1, 3, 3), f32(expanded), f32(channels, expanded, 1, 1), stride)
        )  # fmt: skip
    depthwise: list[list[float]] = [[] for _ in layers]
    totals = []
    for _ in range(3 + args.repeats):  # three warm-up runs
        start = time.perf_counter()
        for k, (x, w1, b1, wd, bd, w2, stride) in enumerate(layers):
            h = npconv.conv(x, w1, b1)  # (1, expanded, size, size)
            before = time.perf_counter()
            d = npconv.conv(h, wd, bd, groups=h.shape[1], padding=1, stride=stride)
            depthwise[k].append(time.perf_counter() - before)
            npconv.conv(d, w2)
        totals.append(time.perf_counter() - start)
    print(f"seven blocks in sequence: {statistics.median(totals[3:]) * 1e3:.2f} ms (median)")
    for (_, expanded, size, stride), times in zip(BLOCKS, depthwise):
        name = f"depthwise 3x3{'/2' if stride > 1 else ''} {expanded} @{size}"
        print(f"  {name}: {statistics.median(times[3:]) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
