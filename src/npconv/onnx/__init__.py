"""Run ONNX models in NumPy with npconv's convolutions (needs the ``onnx`` extra).

:func:`evaluator` is onnx's own ``ReferenceEvaluator`` with these operators replaced:

* ``Conv``, ``ConvTranspose``, ``ConvInteger``, ``QLinearConv``: npconv's, to the letter
  of the ONNX operator spec and at BLAS speed;
* ``MaxPool`` and ``AveragePool``: a max and a mean over npconv's strided windows (the
  reference's loops would otherwise cost as much as all of a ResNet's convolutions);
* inference ``BatchNormalization``: one scale and shift per channel;
* ``Softmax`` and ``LogSoftmax``: each opset's axis semantics;
* ``Relu``, ``Add``, ``Sum``: the reference's, but like ``BatchNormalization`` they may
  write over an input that no other node reads.

Nodes of constant inputs run once when the evaluator is built; every other operator is
onnx's reference.  A run asked for graph outputs goes through the nodes in a loop of the
evaluator's own, which drops each value after the last node that reads it
(:meth:`Evaluator.run`).  :func:`run` is the one-call form and :func:`profile` times each
node type (the ``npconv onnx`` command prints it).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from .._workspace import release
from ._ops import FRESH, OPS, Add, BatchNormalization, Conv, Relu, Sum, Timing, scale_and_shift
from ._profile import Profile, profile

__all__ = ["OPS", "Evaluator", "Profile", "evaluator", "profile", "run"]

ModelLike = onnx.ModelProto | str | os.PathLike | bytes


class Evaluator(ReferenceEvaluator):
    """``ReferenceEvaluator`` whose convolution operators are npconv's.

    The class itself carries npconv's operators, so the evaluators onnx creates for
    functions and subgraphs (``If``, ``Loop``, ``Scan`` bodies) use them too.  Operators
    passed in ``new_ops`` take precedence over npconv's.

    With ``fold_constants`` (the default), the nodes whose inputs are all initializers
    (constant folding, as onnxruntime does when it loads a model; random generators
    excepted) run once, here, and their outputs become read-only initializers.

    With ``fuse`` (the default), an inference ``BatchNormalization`` whose input only a
    ``Conv`` of constant weights writes and only it reads is folded into that
    convolution's weight and bias, as onnxruntime does when it loads a model: one pass
    over the activation instead of three, the results within float rounding of the
    unfolded nodes'.  A ``Relu`` whose input only a ``Conv``, an ``Add`` or a ``Sum``
    writes and only it reads is applied by that node to its fresh result: one node
    fewer, the same values.

    With ``reuse_buffers`` (the default), ``Relu``, ``BatchNormalization``, ``Add`` and
    ``Sum`` write their result over an input that only they read, when that input is
    the fresh output of an operator of npconv's (not a graph input, initializer, graph
    output, or a value a subgraph reads).

    ``run(..., intermediate=True)``, and a run asked for a value that is not a graph
    output, runs every node as the model has it, folding and overwriting nothing, so
    that every intermediate value it returns is the node's own.  A run asked for graph
    outputs only drops each value once no node reads it any more (see :meth:`run`).
    """

    def __init__(
        self,
        proto: Any,
        *,
        new_ops: list[type] | None = None,
        fold_constants: bool = True,
        fuse: bool = True,
        reuse_buffers: bool = True,
        **kwargs: Any,
    ):
        if isinstance(proto, os.PathLike):
            proto = os.fspath(proto)
        super().__init__(proto, new_ops=[*(new_ops or []), *OPS], **kwargs)
        if isinstance(self.proto_, onnx.ModelProto) and not self.proto_.HasField("graph"):
            shown = repr(proto) if isinstance(proto, str) else "the model"
            raise ValueError(f"npconv.onnx: {shown} has no graph (an empty or truncated file?)")
        if fold_constants:
            self.rt_nodes_ = _fold_constants(self.rt_nodes_, self.rt_inits_)
        self._as_given = self.rt_nodes_  # the nodes an intermediate=True run runs
        if fuse:
            self.rt_nodes_ = _fold_batch_norms(self.rt_nodes_, self.rt_inits_, self.output_names)
            self.rt_nodes_ = _fuse_relus(self.rt_nodes_, self.output_names)
        self._overwriting = (
            _plan_overwrites(self.rt_nodes_, self.output_names) if reuse_buffers else []
        )
        self._steps = _steps(self.rt_nodes_, self.output_names) if self._plain() else None

    def run(self, output_names, feed_inputs, attributes=None, intermediate=False, **kwargs):  # type: ignore[no-untyped-def,override]
        """``ReferenceEvaluator.run``; with ``intermediate=True``, or asked for a value that
        is not a graph output, it runs every node as the model has it, overwriting no
        value, so that every value it returns is the node's own.

        Asked for graph outputs only, a model runs its nodes in a loop of its own
        (:func:`_steps`), which drops each value after the last node that reads it, so
        that its memory is reused while still in the caches, rather than kept to the end
        of the run.  A model's feeds are checked first, as onnxruntime checks them: every
        name is a graph input, every input without an initializer is fed, and each array
        has the declared element type, rank and fixed sizes.
        """
        if isinstance(self.proto_, onnx.ModelProto):
            _check_feeds(self.proto_.graph, feed_inputs)
        names = self.output_names if output_names is None else list(output_names)
        as_given = intermediate or not set(names) <= set(self.output_names)
        if self._steps is not None and not (as_given or attributes is not None or kwargs):
            return _run_steps(self._steps, {**self.rt_inits_, **feed_inputs}, names)
        planned = [(op, op.overwrite) for op in self._overwriting] if as_given else []
        for op, _ in planned:
            op.overwrite = type(op).overwrite  # the class default: nothing overwritten
        fused, self.rt_nodes_ = self.rt_nodes_, self._as_given if as_given else self.rt_nodes_
        try:
            return super().run(output_names, feed_inputs, attributes, intermediate, **kwargs)
        finally:
            self.rt_nodes_ = fused
            for op, overwrite in planned:
                op.overwrite = overwrite

    def tune(self, feeds: dict[str, Any], repeats: int = 5) -> dict[str, dict[str, float]]:
        """Time each Conv node's candidate algorithms where it runs, in whole runs of the
        model on ``feeds``, and make each node run its fastest from then on.

        Like :func:`npconv.tune`, but measured in the network: a layer's time there
        depends on the layers around it (the caches they leave, the BLAS threads still
        spinning after their products), which a layer timed alone in a loop does not
        see.  A node's candidates are the supported algorithms whose estimate is within
        :data:`~npconv.onnx._ops.TUNE_WITHIN` times the cheapest's, at most
        :data:`~npconv.onnx._ops.TUNE_MOST`; the runs go on until each has been timed
        ``repeats`` times after a warm-up call, the nodes taking theirs in turn.  What
        the candidates kept for a node's weight (transformed filters, packed weights) is
        then released (:func:`npconv._workspace.release`): in the shared budget of kept
        arrays, the losers' would leave the winner's no room.  Every candidate computes
        the node's result within its own stated rounding error, so the outputs of later
        runs may differ from untuned ones by that much.

        Parameters
        ----------
        feeds : dict of str to ndarray
            One array per graph input, as for ``run``.
        repeats : int
            Timed calls per candidate and node; the median counts.

        Returns
        -------
        dict of str to dict of str to float
            By node (its name, else its first output's), the median seconds of each
            candidate, fastest (the one it now runs) first.

        Raises
        ------
        ValueError
            ``repeats`` below 1, or what ``run`` raises for these feeds.

        Notes
        -----
        Only the graph's own Conv nodes are tuned, not those of subgraphs; a Conv that a
        BatchNormalization or a Relu was fused into keeps "auto" in a run with
        ``intermediate=True``, which runs the nodes as the model has them.  A second
        call tunes again.
        """
        if not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"npconv.onnx: tune's repeats must be an int >= 1, got {repeats!r}")
        convs = [op for op in self.rt_nodes_ if isinstance(op, Conv)]
        timings = [Timing(offset=i) for i in range(len(convs))]  # neighbours out of step
        for op, timing in zip(convs, timings):
            op.algorithm, op.timing = type(op).algorithm, timing
        try:
            self.run(None, feeds)  # where each node finds its candidates
            while not all(timing.done(repeats) for timing in timings):
                self.run(None, feeds)
        finally:
            for op, timing in zip(convs, timings):
                op.timing = None
                if timing.weight is not None:
                    release(timing.weight)  # what the candidates kept: only the winner's again
        measured = {}
        for op, timing in zip(convs, timings):
            medians = timing.medians()
            if medians:  # the node ran
                op.algorithm = next(iter(medians))
                measured[op.onnx_node.name or op.onnx_node.output[0]] = medians
        return measured

    def _plain(self) -> bool:
        """Whether every run asked for graph outputs only may go by :func:`_steps`: a
        model (not a function, graph or node) without logging, subgraphs, nodes that
        read every value computed so far, or attributes linked to a function's."""
        if not isinstance(self.proto_, onnx.ModelProto) or self.verbose:
            return False
        if getattr(self, "check_shape_annotations_", False):  # where onnx has the option
            return False
        return not any(
            op.need_context() or op.has_subgraph or op.has_linked_attribute for op in self.rt_nodes_
        )


#: One node of :func:`_run_steps`: the operator, the names it reads and writes, and the
#: names no later node reads (dropped once it has run).
_Step = tuple[Any, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _steps(ops: list[Any], outputs: list[str]) -> list[_Step]:
    """The nodes as :func:`_run_steps` runs them: each with the values that no later
    node reads and that are not graph outputs."""
    last = {name: i for i, op in enumerate(ops) for name in op.onnx_node.input}
    kept = set(outputs)
    steps = []
    for i, op in enumerate(ops):
        node = op.onnx_node
        read = dict.fromkeys(node.input)
        dropped = [n for n in read if n and last[n] == i and n not in kept]
        dropped += [n for n in node.output if n and n not in last and n not in kept]
        steps.append((op, tuple(node.input), tuple(node.output), tuple(dropped)))
    return steps


def _run_steps(steps: list[_Step], values: dict[str, Any], outputs: list[str]) -> list[Any]:
    """Run ``steps`` on ``values`` (the initializers and feeds, by name); the ``outputs``."""
    values[""] = None  # an optional input left out
    for op, reads, writes, dropped in steps:
        try:
            inputs = [values[name] for name in reads]
        except KeyError as missing:
            raise ValueError(
                f"npconv.onnx: {op.op_type} node {op.onnx_node.name!r} reads {missing}, "
                "which no input, initializer or earlier node gives"
            ) from None
        for name, value in zip(writes, op.run(*inputs)):
            if name:  # not an optional output left out
                values[name] = value
        for name in dropped:
            del values[name]
    return [values[name] for name in outputs]


#: The element types whose NumPy dtype a feed must have (others are not checked).
_CHECKED_TYPES = tuple(
    getattr(onnx.TensorProto, name)
    for name in (
        *("FLOAT", "DOUBLE", "FLOAT16", "BOOL", "COMPLEX64", "COMPLEX128"),
        *(f"{sign}INT{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64)),
    )
)


def _check_feeds(graph: onnx.GraphProto, feeds: Any) -> None:
    """A TypeError or ValueError naming the input whose feed the graph does not declare."""
    declared = {value.name: value.type for value in graph.input}
    constant = {tensor.name for tensor in graph.initializer}
    unknown = [name for name in feeds if name not in declared]
    if unknown:
        raise ValueError(
            f"npconv.onnx: feed {unknown[0]!r} is not an input of the graph; its inputs "
            f"are {list(declared)}"
        )
    missing = [name for name in declared if name not in feeds and name not in constant]
    if missing:
        raise ValueError(f"npconv.onnx: inputs {missing} are missing from the feeds")
    for name, value in feeds.items():
        tensor = declared[name].tensor_type
        if not declared[name].HasField("tensor_type") or not isinstance(value, np.ndarray):
            continue
        if tensor.elem_type in _CHECKED_TYPES:
            expected = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
            if value.dtype != expected:
                raise TypeError(
                    f"npconv.onnx: input {name!r} is declared {expected}, got an array of "
                    f"{value.dtype}"
                )
        if not tensor.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if len(dims) != value.ndim or any(
            d is not None and d != n for d, n in zip(dims, value.shape)
        ):
            shown = tuple(
                d.dim_param or "?" if n is None else n for d, n in zip(tensor.shape.dim, dims)
            )
            raise ValueError(
                f"npconv.onnx: input {name!r} is declared with shape {shown} (rank "
                f"{len(dims)}), got an array of shape {value.shape}"
            )


#: Operators whose output is not a function of their inputs: never folded.
_RANDOM = ("Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
           "RandomUniformLike")  # fmt: skip


def _fold_constants(ops: list[Any], constants: dict[str, Any]) -> list[Any]:
    """Run every node whose inputs are all in ``constants``, adding its outputs there.

    Returns the nodes left to run.
    """
    left = []
    for op in ops:
        names = list(op.onnx_node.input)
        foldable = not (
            op.op_type in _RANDOM
            or op.has_subgraph
            or op.has_linked_attribute
            or op.need_context()
            or any(name and name not in constants for name in names)
        )
        if not foldable:
            left.append(op)
            continue
        outputs = op.run(*(constants[name] if name else None for name in names))
        for name, value in zip(op.onnx_node.output, outputs):
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every run from now on
            if name:
                constants[name] = value
    return left


def _absorbed(ops: list[Any], outputs: list[str], absorb: Callable[[Any, Any], Any]) -> list[Any]:
    """``ops`` with nodes absorbed into the node that writes their first input.

    A node is offered to ``absorb(op, writer)`` where its first input is read by it
    alone (not a graph output) and written by another node not yet replaced; where
    ``absorb`` returns a node (the writer's replacement, which writes ``op``'s output),
    that node takes the writer's place and ``op`` goes.
    """
    writer = {name: op for op in ops for name in op.onnx_node.output}
    reads = Counter(name for op in ops for name in _names_read(op.onnx_node))
    replaced: dict[int, Any] = {}  # id of a writer -> the node that replaces it
    dropped: set[int] = set()  # ids of the absorbed nodes
    for op in ops:
        x = op.onnx_node.input[0] if op.onnx_node.input else ""
        source = writer.get(x)
        if source is None or reads[x] != 1 or x in outputs or id(source) in replaced:
            continue
        replacement = absorb(op, source)
        if replacement is not None:
            replaced[id(source)] = replacement
            dropped.add(id(op))
    return [replaced.get(id(op), op) for op in ops if id(op) not in dropped]


def _fold_batch_norms(ops: list[Any], constants: dict[str, Any], outputs: list[str]) -> list[Any]:
    """``ops`` with each inference BatchNormalization folded into the Conv before it.

    A BatchNormalization folds when its statistics are constant 1-d floats and its input
    is read by it alone (not a graph output) and written by a Conv whose weight and
    bias are constant floats of the same dtype (float32 or float64): the Conv becomes
    one that writes the BatchNormalization's output, with ``w * a`` and ``(b - mean) * a
    + bias`` per output channel (``a = scale / sqrt(var + epsilon)``, computed in float64),
    and the BatchNormalization goes.
    """

    def fold(op: Any, conv: Any) -> Any:
        node = op.onnx_node
        if not isinstance(op, BatchNormalization) or len(node.input) != 5:
            return None
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        stats = node.input[1:]
        if not (
            op.inference(attributes)
            and isinstance(conv, Conv)
            and all(name in constants for name in (*stats, *conv.onnx_node.input[1:]) if name)
        ):
            return None
        w, *b = (constants[name] for name in conv.onnx_node.input[1:] if name)
        scale, beta, mean, var = (constants[name] for name in stats)
        dtype = w.dtype
        if dtype not in (np.float32, np.float64) or any(
            v.dtype != dtype or v.shape != (len(w),) for v in (*b, scale, beta, mean, var)
        ):
            return None
        a, shift = scale_and_shift(scale, beta, mean, var, attributes.get("epsilon"))
        per_channel = (-1, *(1,) * (w.ndim - 1))
        weight = (w.astype(np.float64) * a.reshape(per_channel)).astype(dtype)
        bias = ((b[0].astype(np.float64) if b else 0.0) * a + shift).astype(dtype)
        weight.flags.writeable = bias.flags.writeable = False
        replacement = _writing(conv, node.output[0], inputs=1)  # X: the weights its own
        replacement.folded = (weight, bias)
        return replacement

    return _absorbed(ops, outputs, fold)


def _fuse_relus(ops: list[Any], outputs: list[str]) -> list[Any]:
    """``ops`` with each Relu applied by the Conv, Add or Sum that writes its input.

    A Relu fuses when its input is read by it alone (not a graph output) and written by
    one of npconv's ``Conv``, ``Add`` or ``Sum`` nodes: that node becomes a copy of it
    that writes the Relu's output, with ``relu`` set, and the Relu goes.
    """

    def fuse(op: Any, source: Any) -> Any:
        if not isinstance(op, Relu) or not isinstance(source, (Conv, Add, Sum)):
            return None
        replacement = _writing(source, op.onnx_node.output[0])
        replacement.relu = True
        return replacement

    return _absorbed(ops, outputs, fuse)


def _writing(op: Any, output: str, inputs: int | None = None) -> Any:
    """A new operator of ``op``'s class for a copy of its node that writes ``output``
    instead (and reads only its first ``inputs`` inputs, where given), keeping the
    weights of a BatchNormalization folded into it (:func:`_fold_batch_norms`)."""
    node = onnx.NodeProto()
    node.CopyFrom(op.onnx_node)
    del node.input[len(node.input) if inputs is None else inputs :]
    node.output[:] = [output]
    copy = type(op)(node, op.run_params)
    if isinstance(op, Conv):  # and so is its copy
        copy.folded = op.folded
    return copy


def _names_read(node: onnx.NodeProto) -> Iterator[str]:
    """Every value name ``node`` reads, including those read inside its subgraphs."""
    yield from node.input
    for attr in node.attribute:
        for graph in (attr.g, *attr.graphs) if attr.HasField("g") else attr.graphs:
            for inner in graph.node:
                yield from _names_read(inner)


def _plan_overwrites(ops: list[Any], outputs: list[str]) -> list[Any]:
    """Mark the Relu, BatchNormalization, Add and Sum nodes that may overwrite an input.

    Returns them.

    An input may be overwritten when it is read once in the whole graph (subgraphs
    included), is not a graph output, and an operator of :data:`FRESH` produced it.
    """
    reads = Counter(name for op in ops for name in _names_read(op.onnx_node))
    fresh = {name for op in ops if isinstance(op, FRESH) for name in op.onnx_node.output}
    private = {name for name in fresh if reads[name] == 1 and name not in outputs}
    planned = []
    for op in ops:
        inputs = list(op.onnx_node.input)
        if isinstance(op, (Relu, BatchNormalization)) and inputs[0] in private:
            op.overwrite = True
        elif isinstance(op, (Add, Sum)) and private.intersection(inputs):
            op.overwrite = tuple(i for i, name in enumerate(inputs) if name in private)
        else:
            continue
        planned.append(op)
    return planned


def evaluator(model: ModelLike, **kwargs: Any) -> Evaluator:
    """An onnx ``ReferenceEvaluator`` for ``model`` that convolves with npconv.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model (or a GraphProto/FunctionProto/NodeProto, as ``ReferenceEvaluator``
        takes them).
    **kwargs
        ``fold_constants``, ``fuse`` and ``reuse_buffers`` (all default True, see
        :class:`Evaluator`), and what
        ``onnx.reference.ReferenceEvaluator`` takes (``verbose``, ``new_ops``, ...).

    Returns
    -------
    Evaluator
        A ``ReferenceEvaluator`` subclass; call ``.run(None, feeds)`` for every output.

    Raises
    ------
    ValueError
        A model without a graph (an empty file).  When run: feeds that onnxruntime
        refuses (a name the graph lacks, a missing input, a rank or fixed size other
        than declared; a TypeError for another element type), naming the input; a
        node's attributes that break the operator spec (``pads`` of the wrong length,
        ``kernel_shape`` that differs from the weight, unknown ``auto_pad``, a
        ConvTranspose ``output_shape`` no Conv of its input has) or shapes that do not
        fit (channels, groups, a kernel larger than the padded input), naming the
        operator.

    Notes
    -----
    ``Conv``, ``ConvInteger`` and ``QLinearConv`` of every opset version run through
    :func:`npconv.conv` (the integer ones through :func:`npconv.quant.quantized_conv`,
    exactly), ``ConvTranspose`` through :func:`npconv.conv_transpose`; float16 is
    computed in float32 and rounded once.  More than 3 spatial dims, dtypes NumPy cannot
    compute in (bfloat16), the pools' ``ceil_mode``, MaxPool's ``Indices`` output and
    BatchNormalization in training mode fall back to onnx's reference code.

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
