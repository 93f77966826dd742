"""``npconv onnx MODEL.onnx``: run a model with npconv's evaluator, time each node type."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper

from ._profile import profile

__all__ = ["random_feeds", "run_command"]


def _parse_inputs(pairs: Sequence[str]) -> dict[str, np.ndarray]:
    """``NAME=FILE.npy`` pairs as arrays by name."""
    feeds = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"npconv onnx: --input must be NAME=FILE.npy, got {pair!r}")
        feeds[name] = np.load(path)
    return feeds


def random_feeds(model: onnx.ModelProto, given: dict[str, np.ndarray], seed: int = 0):
    """``given``, plus standard-normal data for every other graph input (static shapes)."""
    rng = np.random.default_rng(seed)
    feeds = dict(given)
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in feeds or value.name in initializers:
            continue
        tensor = value.type.tensor_type
        if not all(d.HasField("dim_value") for d in tensor.shape.dim):
            shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
            raise ValueError(
                f"npconv onnx: input {value.name!r} has a symbolic shape {shape}; "
                f"pass it with --input {value.name}=FILE.npy"
            )
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        shape_ints = [d.dim_value for d in tensor.shape.dim]
        feeds[value.name] = rng.standard_normal(shape_ints).astype(dtype)
    return feeds


def run_command(
    model_path: str, inputs: Sequence[str], output: str | None, repeats: int, tune: bool = False
) -> int:
    """Run the model (its Conv nodes first tuned where ``tune``), print the per-node-type
    times, save the outputs; the exit status."""
    model = onnx.load(model_path)
    feeds = random_feeds(model, _parse_inputs(inputs))
    result = profile(model, feeds, repeats=repeats, tune=tune)
    tuned = ", Conv nodes tuned" if tune else ""
    print(f"{model_path}: {result.total:.4f} s per run (mean of {repeats}{tuned}), by node type:\n")
    print(result.table())
    if output is not None:
        np.savez(output, **result.outputs)  # type: ignore[arg-type]
        print(f"\noutputs {sorted(result.outputs)} written to {output}")
    return 0
