"""Exact translations of other frameworks' convolution conventions into npconv's.

Each ``from_*`` function takes a framework's weight and its convolution parameters and
returns ``(w, kwargs)`` such that ``npconv.conv(x, w, **kwargs)`` (``from_*_transpose``:
``npconv.conv_transpose``) computes what the framework computes on the same ``x``:

=====================  ==============================  ===================================
framework              convolution                     transposed convolution
=====================  ==============================  ===================================
PyTorch                :func:`from_torch`              :func:`from_torch_transpose`
TensorFlow / Keras     :func:`from_tensorflow`,        :func:`from_tensorflow_transpose`
                       :func:`from_keras`
ONNX                   :func:`from_onnx`               :func:`from_onnx_transpose`
JAX (``lax``)          :func:`from_jax`                :func:`from_jax_transpose`
=====================  ==============================  ===================================

The conventions differ in three ways.  Padding: TensorFlow's "SAME" (ONNX SAME_UPPER)
pads ``(ceil(in / stride) - 1) * stride + dilation * (kernel - 1) + 1 - in`` in total,
the odd one at the end, so it depends on the input size and stride; ONNX SAME_LOWER puts
the odd one first; PyTorch's "same" exists for stride 1 only, where all three agree.
Transposed convolutions: PyTorch picks the output size with ``output_padding``, ONNX
with ``output_shape`` (pads split by its own rule), TensorFlow with ``output_shape`` (the
gradient of a forward convolution of that size), and JAX's ``conv_transpose`` convolves
the stride-dilated input with the kernel itself unless ``transpose_kernel=True``.
Weight layouts: OIHW (PyTorch, ONNX), HWIO (TensorFlow), IOHW for PyTorch/ONNX transposed
convolutions, HWOI for TensorFlow's; :func:`convert_weight` permutes and flips them.
"""

from ._common import convert_weight
from ._jax import from_jax, from_jax_transpose
from ._onnx import from_onnx, from_onnx_transpose
from ._tensorflow import from_keras, from_tensorflow, from_tensorflow_transpose
from ._torch import from_torch, from_torch_transpose

__all__ = [
    "convert_weight",
    "from_jax",
    "from_jax_transpose",
    "from_keras",
    "from_onnx",
    "from_onnx_transpose",
    "from_tensorflow",
    "from_tensorflow_transpose",
    "from_torch",
    "from_torch_transpose",
]
