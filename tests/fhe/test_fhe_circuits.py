"""Encrypted convolution with Concrete: exact results, and the certified width is Concrete's.

These tests need the ``fhe`` extra; ``scripts/test-fhe`` runs them in their own virtual
environment (the main test run ignores this folder).
"""

from __future__ import annotations

import numpy as np
import pytest

import npconv
from npconv import fhe, quant

# (input shape, weight shape, input bits, signed inputs, conv options): small layers that
# each compile in a few seconds, covering stride, dilation, asymmetric pads, groups, 1-d
# and 3-d, NHWC and a batch axis.
LAYERS = [
    ((1, 6, 6), (2, 1, 3, 3), 2, False, dict(padding=1)),
    ((2, 5, 5), (2, 2, 3, 3), 3, True, dict(stride=2, padding=((1, 0), (0, 2)))),
    ((2, 7, 7), (4, 1, 2, 2), 2, False, dict(dilation=2, groups=2)),
    ((1, 9), (3, 1, 4), 4, False, dict(padding="same")),
    ((1, 3, 3, 3), (1, 1, 2, 2, 2), 2, False, dict(padding=1)),
    ((5, 5, 2), (3, 3, 2, 2), 2, False, dict(padding=1, layout="NHWC")),
    ((2, 1, 4, 4), (1, 1, 3, 3), 2, True, dict(padding=1)),
]


def random_weights(shape, seed):
    return np.random.default_rng(seed).integers(-3, 4, size=shape)


@pytest.mark.parametrize(("input_shape", "w_shape", "bits", "signed", "options"), LAYERS)
def test_matrix_circuit_is_exact_and_its_width_is_certified(
    input_shape, w_shape, bits, signed, options
) -> None:
    w = random_weights(w_shape, len(input_shape) + bits)
    circuit = fhe.compile_conv(w, input_shape, input_bits=bits, signed_inputs=signed, **options)
    certified = quant.accumulator_bits(
        w, input_bits=bits, signed_inputs=signed, input_shape=input_shape, **options
    )
    assert fhe.circuit_accumulator_bits(circuit) == certified
    assert circuit.graph.maximum_integer_bit_width() == max(certified, bits)
    lo, hi = quant.integer_range(bits, signed)
    rng = np.random.default_rng(bits)
    for x in [rng.integers(lo, hi + 1, size=input_shape) for _ in range(2)]:
        np.testing.assert_array_equal(circuit.encrypt_run_decrypt(x), npconv.conv(x, w, **options))


@pytest.mark.parametrize("options", [dict(), dict(stride=(2, 1)), dict(dilation=2), dict(groups=2)])
def test_native_circuit_is_exact_and_its_width_is_certified(options) -> None:
    w = random_weights((2, 2 // options.get("groups", 1), 3, 3), 7)
    shape = (1, 2, 7, 7)
    circuit = fhe.compile_conv(w, shape, input_bits=2, method="native", **options)
    assert fhe.circuit_accumulator_bits(circuit) == quant.accumulator_bits(
        w, input_bits=2, input_shape=shape, **options
    )
    x = np.random.default_rng(1).integers(0, 4, size=shape)
    np.testing.assert_array_equal(circuit.encrypt_run_decrypt(x), npconv.conv(x, w, **options))


def test_table_lookup_after_the_convolution() -> None:
    w = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]])
    circuit = fhe.compile_conv(
        w, (1, 6, 6), input_bits=2, padding=1, then=lambda v: np.maximum(v, 0) // 2
    )
    x = np.random.default_rng(3).integers(0, 4, size=(1, 6, 6))
    expected = np.maximum(npconv.conv(x, w, padding=1), 0) // 2
    np.testing.assert_array_equal(circuit.encrypt_run_decrypt(x), expected)
    assert fhe.circuit_accumulator_bits(circuit) == 5  # the lookup reads the 5-bit sums


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(method="dense"), ValueError, "compile_conv: method must be one of"),
        (
            dict(method="native", padding=1),
            ValueError,
            r"compiles no padding, got pads \(\(1, 1\), \(1, 1\)\); use method='matrix'",
        ),
        (
            dict(method="native", w=np.ones((1, 1, 3), dtype=int), shape=(1, 1, 6)),
            ValueError,
            "compiles only 2-d convolutions, this one is 1-d",
        ),
        (dict(w=np.ones((1, 1, 3, 3))), TypeError, "compile_conv: w must hold integers"),
    ],
)
def test_error_messages(kwargs, error, match) -> None:
    w = kwargs.pop("w", np.ones((1, 1, 3, 3), dtype=int))
    shape = kwargs.pop("shape", (1, 1, 6, 6))
    with pytest.raises(error, match=match):
        fhe.compile_conv(w, shape, input_bits=2, **kwargs)
