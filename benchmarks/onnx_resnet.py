"""ONNX evaluator benchmark: a ResNet-50 with random weights, three ways.

Builds a ResNet-50 (v1.5: the stride sits in each bottleneck's 3x3 conv; batch norm
folded into the convolutions, as an inference export has it) with ``onnx.helper`` and
random weights, runs it with onnxruntime, with onnx's plain ``ReferenceEvaluator`` and
with :func:`npconv.onnx.evaluator`, checks that the three outputs agree to float32
tolerance and prints a Markdown table of median times plus npconv's per-node-type
breakdown.

``--model onnx-test`` runs instead the ResNet-50 that onnx ships for its backend tests
(``onnx/backend/test/data/light/light_resnet50.onnx``: ResNet-50 v1 exported from
Caffe2, opset 9, with its 53 BatchNormalization nodes and with weights that
ConstantOfShape nodes fill at run time).

Run from the repository root::

    python benchmarks/onnx_resnet.py            # ResNet-50, batch 1, 224x224
    python benchmarks/onnx_resnet.py --size 112 --repeats 5
    python benchmarks/onnx_resnet.py --model onnx-test
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import npconv.onnx

#: Bottleneck blocks per stage of ResNet-50, and each stage's inner width.
STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))
IR_VERSION = 10  # what onnxruntime 1.17+ reads
OPSET = 17


class _Graph:
    """Collects nodes and random initializers while the network is built."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def _name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes)}"

    def _init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True):
        """Conv (He-initialised, with bias) and an optional Relu; returns the output name."""
        name = self._name("conv")
        w = self.rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))
        b = self.rng.standard_normal(c_out) * 0.01
        out = f"{name}_y"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._init(f"{name}_w", w), self._init(f"{name}_b", b)],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
            )
        )
        return self.op("Relu", out) if relu else out

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        out = f"{self._name(op_type.lower())}_y"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def bottleneck(self, x: str, c_in: int, width: int, stride: int) -> str:
        c_out = 4 * width
        y = self.conv(x, c_in, width, 1)
        y = self.conv(y, width, width, 3, stride)
        y = self.conv(y, width, c_out, 1, relu=False)
        skip = x if stride == 1 and c_in == c_out else self.conv(x, c_in, c_out, 1, stride, False)
        return self.op("Relu", self.op("Add", y, skip))


def resnet50(batch: int = 1, size: int = 224, classes: int = 1000, seed: int = 0):
    """A ResNet-50 ``onnx.ModelProto`` with random weights: input "x" (batch, 3, size, size)."""
    g = _Graph(np.random.default_rng(seed))
    y = g.conv("x", 3, 64, 7, stride=2)
    y = g.op("MaxPool", y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 64
    for i, (blocks, width) in enumerate(STAGES):
        for b in range(blocks):
            y = g.bottleneck(y, c, width, stride=2 if i > 0 and b == 0 else 1)
            c = 4 * width
    y = g.op("Flatten", g.op("GlobalAveragePool", y))
    fc_w = g.rng.standard_normal((classes, c)) / np.sqrt(c)
    y = g.op("Gemm", y, g._init("fc_w", fc_w), g._init("fc_b", np.zeros(classes)), transB=1)
    graph = helper.make_graph(
        g.nodes,
        "resnet50",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [batch, classes])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _interleaved_times(runs: dict[str, Callable[[], Any]], repeats: int):
    """Seconds of each run, timed in turn round after round (after one warm-up each), so
    that a change in the machine's load hits every contender alike; and the results."""
    results = {name: run() for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--model", choices=["built", "onnx-test"], default="built")
    args = parser.parse_args()

    if args.model == "built":
        model = resnet50(args.batch, args.size)
        title = f"ResNet-50 v1.5, random weights, batch {args.batch}, {args.size}x{args.size}"
    else:
        data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
        model = onnx.load(os.path.join(data, "light", "light_resnet50.onnx"))
        args.batch, args.size = 1, 224
        title = "onnx's backend-test ResNet-50 (light_resnet50.onnx), batch 1, 224x224"
    x = np.random.default_rng(1).standard_normal((args.batch, 3, args.size, args.size))
    feeds = {model.graph.input[0].name: x.astype(np.float32)}
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3  # errors only (the test model has an unused initializer)
    sessions: dict[str, Any] = {
        "onnxruntime": ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        ),
        "onnx ReferenceEvaluator": ReferenceEvaluator(model),
        "npconv.onnx.evaluator": npconv.onnx.evaluator(model),
    }
    runs = {name: (lambda s=sess: s.run(None, feeds)[0]) for name, sess in sessions.items()}
    rounds, outputs = _interleaved_times(runs, args.repeats)
    times = {name: statistics.median(t) for name, t in rounds.items()}
    expected = outputs["onnxruntime"]
    scale = float(np.abs(expected).max())
    gflop = _conv_gflop(model)

    print(f"{title}, float32, {gflop:.1f} GFLOP in Conv;")
    print(f"median of {args.repeats} interleaved runs after a warm-up\n")
    print("| evaluator | time (s) | vs onnxruntime | max abs diff / max abs |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in times.items():
        rel = float(np.abs(outputs[name] - expected).max()) / scale
        ratio = seconds / times["onnxruntime"]
        print(f"| {name} | {seconds:.3f} | {ratio:.1f}x | {rel:.1e} |")
    ours_name = "npconv.onnx.evaluator"
    ref, ours = rounds["onnx ReferenceEvaluator"], rounds[ours_name]
    paired = sorted(r / o for r, o in zip(ref, ours))  # both timed in the same round
    print(
        f"\nnpconv.onnx.evaluator is {times['onnx ReferenceEvaluator'] / times[ours_name]:.1f}x "
        f"faster than the plain ReferenceEvaluator (ratio of the medians); per round "
        f"{statistics.median(paired):.1f}x median, {paired[0]:.1f}x-{paired[-1]:.1f}x.\n"
    )
    for title, plain in (("npconv.onnx.evaluator", False), ("onnx ReferenceEvaluator", True)):
        print(f"Time per node type, {title} (mean of {args.repeats} runs):\n")
        print(npconv.onnx.profile(model, feeds, repeats=args.repeats, plain=plain).table(), "\n")


def _conv_gflop(model: onnx.ModelProto) -> float:
    """GFLOP (2 x multiply-accumulates) of the model's Conv nodes, from inferred shapes."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*inferred.graph.value_info, *inferred.graph.output)
    }
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            _, cg, *kernel = shapes[node.input[1]]
            total += 2 * int(np.prod(shapes[node.output[0]])) * cg * int(np.prod(kernel))
    return total / 1e9


if __name__ == "__main__":
    main()
