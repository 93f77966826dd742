"""npconv: the convolutions of deep learning in NumPy, by interchangeable algorithms.

Results match ``torch.nn.functional.conv{1,2,3}d`` and the ONNX ``Conv`` operator.  The
algorithms live in :mod:`npconv.algorithms`, one module each; ``algorithm="auto"``
picks one.
"""

from . import compat, grad, nn, quant
from ._api import (
    algorithms,
    conv,
    conv1d,
    conv2d,
    conv3d,
    conv_matrix,
    conv_output_shape,
)
from ._autotune import Explanation, explain, tune
from ._spec import ConvSpec
from ._threads import get_threads, set_threads
from ._transpose import conv_transpose, conv_transpose1d, conv_transpose2d, conv_transpose3d
from ._workspace import free_workspaces

__version__ = "0.1.0"

__all__ = [
    "ConvSpec",
    "Explanation",
    "__version__",
    "algorithms",
    "compat",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_matrix",
    "conv_output_shape",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "explain",
    "free_workspaces",
    "get_threads",
    "grad",
    "nn",
    "quant",
    "set_threads",
    "tune",
]


def __getattr__(name: str) -> object:
    """``npconv.onnx`` and ``npconv.dask`` (optional extras) are imported on first use."""
    if name in ("onnx", "dask"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'npconv' has no attribute {name!r}")
