"""Integer convolution: certified accumulator widths, accumulator simulation, quantization.

* :func:`max_filter_size`, :func:`accumulator_range`, :func:`accumulator_bits`,
  :func:`extreme_inputs`, :func:`bits_needed`, :func:`integer_range`: how many bits the
  partial sums of a layer need, before running it (``_bounds``).
* :func:`conv`: the convolution through a simulated B-bit accumulator that wraps,
  saturates or raises (``_accumulate``).
"""

from ._accumulate import conv
from ._bounds import (
    accumulator_bits,
    accumulator_range,
    bits_needed,
    extreme_inputs,
    integer_range,
    max_filter_size,
)

__all__ = [
    "accumulator_bits",
    "accumulator_range",
    "bits_needed",
    "conv",
    "extreme_inputs",
    "integer_range",
    "max_filter_size",
]
