"""Integer convolution: certified accumulator widths, accumulator simulation, quantization.

* :func:`max_filter_size`, :func:`accumulator_range`, :func:`accumulator_bits`,
  :func:`extreme_inputs`, :func:`bits_needed`, :func:`integer_range`: how many bits the
  partial sums of a layer need, before running it (``_bounds``).
* :func:`conv`: the convolution through a simulated B-bit accumulator that wraps,
  saturates or raises (``_accumulate``).
* :func:`quantize`, :func:`dequantize`, :func:`quantized_conv`: linear quantization and
  ONNX ConvInteger / QLinearConv (``_quantize``).
* :func:`matrix_stats`, :func:`plot_matrix`: what a convolution matrix
  (:func:`npconv.conv_matrix`) asks of an accumulator, and its picture (``_matrix_stats``).
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
from ._matrix_stats import MatrixStats, matrix_stats, plot_matrix
from ._quantize import dequantize, quantize, quantized_conv

__all__ = [
    "MatrixStats",
    "accumulator_bits",
    "accumulator_range",
    "bits_needed",
    "conv",
    "dequantize",
    "extreme_inputs",
    "integer_range",
    "matrix_stats",
    "max_filter_size",
    "plot_matrix",
    "quantize",
    "quantized_conv",
]
