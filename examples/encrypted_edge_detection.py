"""Edge detection on an encrypted image with Concrete, checked against plaintext npconv.

Quantizes a synthetic image to a few bits, certifies the accumulator width of a 3x3 Sobel
filter with npconv.quant, compiles the filter (plus a threshold as a table lookup) into
an FHE circuit with npconv.fhe, runs it on the encrypted image, decrypts, and compares
with the plaintext result.  Needs the fhe extra: pip install 'npconv[fhe]'.

    python examples/encrypted_edge_detection.py --size 12 --bits 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import npconv
from npconv import fhe, quant

SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]])


def synthetic_image(size: int) -> np.ndarray:
    """A bright disc and a dark square on a horizontal gradient, values in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)  # (size, size) each
    image = 0.3 * xx
    image[(yy - 0.35) ** 2 + (xx - 0.6) ** 2 < 0.06] = 1.0
    image[(yy > 0.65) & (xx < 0.4)] = 0.0
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=12, help="image side in pixels")
    parser.add_argument("--bits", type=int, default=3, help="bits per pixel (2-4)")
    args = parser.parse_args()

    q, scale, zero = quant.quantize(
        synthetic_image(args.size), args.bits, signed=False, scheme="affine"
    )
    x = q.astype(np.int64)[None]  # (1, H, W): one channel, unbatched
    w = SOBEL_X[None, None]  # (1, 1, 3, 3)
    threshold = 2**args.bits  # an edge: |gradient| of at least one full step per column

    certified = quant.accumulator_bits(w, input_bits=args.bits, input_shape=x.shape, padding=1)
    start = time.perf_counter()
    circuit = fhe.compile_conv(
        w,
        x.shape,
        input_bits=args.bits,
        padding=1,
        then=lambda g: (np.abs(g) >= threshold).astype(np.int64),
    )
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    edges = circuit.encrypt_run_decrypt(x)  # (1, H, W)
    ran = time.perf_counter() - start

    plain = (np.abs(npconv.conv(x, w, padding=1)) >= threshold).astype(np.int64)
    print(
        f"image {args.size}x{args.size} quantized to {args.bits} bits "
        f"(scale {float(scale):.4f}, zero point {int(zero)})"
    )
    print(
        f"accumulator width: certified by npconv.quant {certified} bits, "
        f"measured by Concrete {fhe.circuit_accumulator_bits(circuit)} bits "
        f"(widest value in the circuit: {circuit.graph.maximum_integer_bit_width()} bits)"
    )
    print(f"compile {compiled:.2f} s, encrypt + run + decrypt {ran:.2f} s")
    for row in edges[0]:
        print("".join("#" if e else "." for e in row))
    same = np.array_equal(edges, plain)
    print("encrypted result matches plaintext npconv:", same)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
