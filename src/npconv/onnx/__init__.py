"""Run ONNX models in NumPy with npconv's convolutions (needs the ``onnx`` extra).

:func:`evaluator` is onnx's own ``ReferenceEvaluator`` with its convolution operators
(``Conv``, ``ConvTranspose``, ``ConvInteger``, ``QLinearConv``) replaced by npconv's,
which follow the ONNX operator spec to the letter and run at BLAS speed, and ``MaxPool``
by a max over npconv's strided windows (the reference's loops would otherwise cost as
much as all of a ResNet's convolutions); every other operator is onnx's reference.
:func:`run` is the one-call form and :func:`profile` times each node type (the
``npconv onnx`` command prints it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from ._ops import OPS
from ._profile import Profile, profile

__all__ = ["OPS", "Evaluator", "Profile", "evaluator", "profile", "run"]

ModelLike = onnx.ModelProto | str | os.PathLike | bytes


class Evaluator(ReferenceEvaluator):
    """``ReferenceEvaluator`` whose convolution operators are npconv's.

    The class itself carries npconv's operators, so the evaluators onnx creates for
    functions and subgraphs (``If``, ``Loop``, ``Scan`` bodies) use them too.  Operators
    passed in ``new_ops`` take precedence over npconv's.
    """

    def __init__(self, proto: Any, *, new_ops: list[type] | None = None, **kwargs: Any):
        if isinstance(proto, os.PathLike):
            proto = os.fspath(proto)
        super().__init__(proto, new_ops=[*(new_ops or []), *OPS], **kwargs)


def evaluator(model: ModelLike, **kwargs: Any) -> Evaluator:
    """An onnx ``ReferenceEvaluator`` for ``model`` that convolves with npconv.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model (or a GraphProto/FunctionProto/NodeProto, as ``ReferenceEvaluator``
        takes them).
    **kwargs
        Passed to ``onnx.reference.ReferenceEvaluator`` (``verbose``, ``new_ops``, ...).

    Returns
    -------
    Evaluator
        A ``ReferenceEvaluator`` subclass; call ``.run(None, feeds)`` for every output.

    Raises
    ------
    ValueError
        When run: a node's attributes break the operator spec (``pads`` of the wrong
        length, ``kernel_shape`` that differs from the weight, unknown ``auto_pad``) or
        its shapes do not fit (channels, groups, a kernel larger than the padded input);
        the message names the operator.

    Notes
    -----
    ``Conv``, ``ConvInteger`` and ``QLinearConv`` of every opset version run through
    :func:`npconv.conv` (the integer ones through :func:`npconv.quant.quantized_conv`,
    exactly), ``ConvTranspose`` through :func:`npconv.conv_transpose`; float16 is
    computed in float32 and rounded once.  More than 3 spatial dims, dtypes NumPy cannot
    compute in (bfloat16), and MaxPool's ``ceil_mode`` and ``Indices`` output fall back
    to onnx's reference code.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper
    >>> import npconv.onnx
    >>> node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")
    >>> graph = helper.make_graph(
    ...     [node], "g",
    ...     [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xw"],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    ... )
    >>> sess = npconv.onnx.evaluator(helper.make_model(graph))
    >>> x = np.ones((1, 1, 5, 5), np.float32)
    >>> w = np.ones((1, 1, 3, 3), np.float32)
    >>> sess.run(None, {"x": x, "w": w})[0]
    array([[[[4., 6., 4.],
             [6., 9., 6.],
             [4., 6., 4.]]]], dtype=float32)
    """
    return Evaluator(model, **kwargs)


def run(
    model: ModelLike, feeds: dict[str, np.ndarray], outputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Run ``model`` once on ``feeds`` with npconv's evaluator; outputs by name.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model.
    feeds : dict of str to ndarray
        One array per graph input.
    outputs : list of str, optional
        The outputs wanted (default: every graph output).

    Returns
    -------
    dict of str to ndarray
        ``{name: value}`` in the order of ``outputs``.

    Raises
    ------
    ValueError
        As :func:`evaluator`.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper
    >>> import npconv.onnx
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0, 0, 0])], "g",
    ...     [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xw"],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    ... )
    >>> feeds = {"x": np.ones((1, 1, 2, 2), np.float32), "w": np.ones((1, 1, 2, 2), np.float32)}
    >>> npconv.onnx.run(helper.make_model(graph), feeds)["y"]
    array([[[[2.],
             [4.]]]], dtype=float32)
    """
    sess = evaluator(model)
    names = list(sess.output_names if outputs is None else outputs)
    return dict(zip(names, sess.run(names, feeds)))
