"""Time spent per node type when npconv's evaluator runs a model."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from onnx.reference import ReferenceEvaluator

__all__ = ["Profile", "profile"]


@dataclass(frozen=True)
class Profile:
    """Mean seconds per run spent in each node type, and how many nodes of each."""

    seconds: dict[str, float]
    counts: dict[str, int]
    outputs: dict[str, np.ndarray]

    @property
    def total(self) -> float:
        """Seconds per run in all nodes together."""
        return sum(self.seconds.values())

    def table(self) -> str:
        """A Markdown table, slowest node type first."""
        lines = ["| node type | nodes | time (s) | share |", "| --- | ---: | ---: | ---: |"]
        for op, seconds in sorted(self.seconds.items(), key=lambda item: -item[1]):
            share = seconds / self.total if self.total else 0.0
            lines.append(f"| {op} | {self.counts[op]} | {seconds:.4f} | {share:.0%} |")
        lines.append(f"| all | {sum(self.counts.values())} | {self.total:.4f} | 100% |")
        return "\n".join(lines)


def _timed(run: Callable[..., Any], op_type: str, seconds: dict[str, float]):
    """``run`` that adds its duration to ``seconds[op_type]``."""

    def timed_run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            seconds[op_type] += time.perf_counter() - start

    return timed_run


def profile(
    model: Any,
    feeds: dict[str, np.ndarray],
    repeats: int = 1,
    *,
    plain: bool = False,
    tune: bool = False,
) -> Profile:
    """Run ``model`` ``repeats`` times with :func:`npconv.onnx.evaluator`, timing each node.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model.
    feeds : dict of str to ndarray
        One array per graph input.
    repeats : int
        Timed runs (>= 1), after one untimed warm-up run; times are averaged.
    plain : bool
        Time onnx's plain ``ReferenceEvaluator`` instead, for comparison.
    tune : bool
        Tune npconv's evaluator on ``feeds`` first (:meth:`npconv.onnx.Evaluator.tune`,
        untimed).

    Returns
    -------
    Profile
        ``seconds`` and ``counts`` per node type (``op_type``, prefixed by its domain
        outside the default one; "Conv+Relu", "Add+Relu" and "Sum+Relu" where the
        evaluator fused a ``Relu`` into the node before it) and the graph ``outputs`` of
        the last run.

    Raises
    ------
    ValueError
        ``repeats < 1``, or as :func:`npconv.onnx.evaluator`.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper
    >>> import npconv.onnx
    >>> nodes = [
    ...     helper.make_node("Conv", ["x", "w"], ["c"]),
    ...     helper.make_node("Relu", ["c"], ["y"]),
    ... ]
    >>> graph = helper.make_graph(
    ...     nodes, "g",
    ...     [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xw"],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    ... )
    >>> feeds = {"x": np.ones((1, 1, 4, 4), np.float32), "w": np.ones((1, 1, 3, 3), np.float32)}
    >>> p = npconv.onnx.profile(helper.make_model(graph), feeds, repeats=2)
    >>> p.counts
    {'Conv+Relu': 1}
    >>> p.outputs["y"].shape
    (1, 1, 2, 2)
    """
    from . import evaluator

    if repeats < 1:
        raise ValueError(f"npconv.onnx.profile: repeats must be >= 1, got {repeats}")
    if plain:
        sess = ReferenceEvaluator(model)
    else:
        sess = evaluator(model)
        if tune:
            sess.tune(feeds)
    sess.run(None, feeds)  # warm-up, outside the timings
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for node in sess.rt_nodes_:  # the evaluator's operator instances, in run order
        op_type = node.op_type if not node.domain else f"{node.domain}.{node.op_type}"
        if getattr(node, "relu", False):  # a Relu fused into it (npconv.onnx.Evaluator)
            op_type += "+Relu"
        counts[op_type] += 1
        node.run = _timed(node.run, op_type, seconds)
    for _ in range(repeats):
        values = cast("list[np.ndarray]", sess.run(None, feeds))
    return Profile(
        seconds={op: s / repeats for op, s in seconds.items()},
        counts=dict(counts),
        outputs=dict(zip(sess.output_names, values)),
    )
