"""Convolve a 3-channel image too large for memory with a small filter bank, with dask.

The image (20000 x 20000 by default: 4.8 GB of float32, generated lazily chunk by chunk)
is convolved by ``npconv.dask.conv`` with 8 filters (blur, edges, Laplacian, ...; 5x5,
padding "same").  The 12.8 GB response never exists at once: dask computes each output
chunk from its input chunk plus a halo and reduces it to per-filter statistics.  A
progress bar follows the computation; at the end the throughput is compared with
``npconv.conv`` on one in-memory tile, and the tile is checked against the dask result.

Run::

    python examples/giant_image.py                         # 20000 x 20000
    python examples/giant_image.py --size 4000 --chunk 1000
"""

from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
import numpy as np
from dask.diagnostics import ProgressBar

import npconv
import npconv.dask


def filter_bank(k: int = 5) -> np.ndarray:
    """Eight ``(3, k, k)`` filters, as ``(8, 3, k, k)`` float32: smoothing and edges."""
    r = np.arange(k) - k // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    gauss = np.exp(-(xx**2 + yy**2) / (2 * (k / 4) ** 2))
    gauss /= gauss.sum()
    sobel_x = np.outer(np.exp(-(r**2) / 2), r)  # derivative across x, smoothed along y
    sobel_y = sobel_x.T
    laplacian = -gauss.copy()
    laplacian[k // 2, k // 2] += 1.0
    box = np.full((k, k), 1.0 / k**2)
    gray = np.array([0.299, 0.587, 0.114])  # luma weights
    per_channel = np.eye(3)
    bank = [
        gauss[None] * gray[:, None, None],
        sobel_x[None] * gray[:, None, None],
        sobel_y[None] * gray[:, None, None],
        laplacian[None] * gray[:, None, None],
        box[None] * gray[:, None, None],
        *(gauss[None] * per_channel[c][:, None, None] for c in range(3)),
    ]
    return np.stack(bank).astype(np.float32)  # (8, 3, k, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000, help="image height and width")
    parser.add_argument("--chunk", type=int, default=2048, help="dask chunk height and width")
    parser.add_argument("--tile", type=int, default=2048, help="in-memory tile for comparison")
    parser.add_argument("--kernel", type=int, default=5, help="filter size")
    args = parser.parse_args()
    size, tile, k = args.size, min(args.tile, args.size - args.kernel), args.kernel

    bank = filter_bank(k)
    rng = da.random.default_rng(0)
    image = rng.random((1, 3, size, size), dtype=np.float32, chunks=(1, 3, args.chunk, args.chunk))
    response = npconv.dask.conv(image, bank, padding="same")  # (1, 8, size, size), lazy
    stats = [response.mean(axis=(0, 2, 3)), abs(response).max(axis=(0, 2, 3))]
    print(
        f"image 3 x {size} x {size} float32 ({image.nbytes / 1e9:.1f} GB, generated lazily), "
        f"{len(bank)} filters {k}x{k}, chunks {args.chunk} x {args.chunk}: "
        f"{response.npartitions} output chunks"
    )
    start = time.perf_counter()
    with dask.config.set(scheduler="threads"), ProgressBar():
        mean, peak = dask.compute(*stats)
    seconds = time.perf_counter() - start
    pixels = size * size
    print(f"dask:   {seconds:8.2f} s  {pixels / seconds / 1e6:8.2f} Mpixel/s (incl. generation)")

    # One in-memory tile from the middle of the image, with the halo a "valid" conv needs.
    r0, h = size // 2 - tile // 2, k // 2
    crop = image[:, :, r0 - h : r0 + tile + h, r0 - h : r0 + tile + h].compute()
    start = time.perf_counter()
    expected = npconv.conv(crop, bank)  # (1, 8, tile, tile)
    tile_seconds = time.perf_counter() - start
    print(
        f"tile:   {tile_seconds:8.2f} s  {tile * tile / tile_seconds / 1e6:8.2f} Mpixel/s "
        f"(npconv.conv on one in-memory {tile} x {tile} tile)"
    )
    print(
        f"dask throughput / in-memory throughput: {tile_seconds / tile**2 * pixels / seconds:.2f}"
    )
    got = response[:, :, r0 : r0 + tile, r0 : r0 + tile].compute()
    print(f"max abs difference on the tile: {np.abs(got - expected).max():.2e}")
    print("per-filter mean:", np.round(mean, 4))
    print("per-filter max |response|:", np.round(peak, 4))


if __name__ == "__main__":
    main()
