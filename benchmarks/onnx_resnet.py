"""ONNX evaluator benchmark: a ResNet-50 with random weights, three ways.

Builds a ResNet-50 (v1.5: the stride sits in each bottleneck's 3x3 conv; batch norm
folded into the convolutions, as an inference export has it) with ``onnx.helper`` and
random weights, runs it with onnxruntime, with onnx's plain ``ReferenceEvaluator`` and
with :func:`npconv.onnx.evaluator`, checks that the three outputs agree to float32
tolerance and prints a Markdown table of median times, the ratios to npconv's time
and the per-node-type breakdown of the two Python evaluators.  Each evaluator runs in a
fresh process of its own (one after the other), with the same thread count
(onnxruntime's ``intra_op_num_threads``, :func:`npconv.set_threads`): in one process
the threads that OpenBLAS and onnxruntime keep spinning after their calls would slow
the other.  With ``--rounds R``, onnxruntime and npconv run R times in turn, each time
in fresh processes, and each round's ratio is printed with their median: on a shared
machine whose speed drifts from minute to minute, a pair of runs a few seconds apart
compares the two under the same load, where one run of each may not.  With ``--tune``,
each round also times npconv's evaluator after :meth:`npconv.onnx.Evaluator.tune` (in a
process of its own, the tuning untimed).  With ``--passes``, each round also times the
network's GEMMs alone (in a process of its own): each Conv node's im2col product, ``w[O/G,
C/G*prod(kernel)] @ patches[C/G*prod(kernel), N*prod(out)]`` per group, by NumPy's
``matmul`` on arrays made once, one node after the other; and a table then splits
npconv's time per node kind into the time spent in NumPy's ``matmul`` (the BLAS GEMMs)
and the rest (gathers, transforms, bias, ReLU, adds, pooling, Python).

``--model onnx-test`` runs instead the ResNet-50 that onnx ships for its backend tests
(``onnx/backend/test/data/light/light_resnet50.onnx``: ResNet-50 v1 exported from
Caffe2, opset 9, with its 53 BatchNormalization nodes and with weights that
ConstantOfShape nodes fill at run time).

Run from the repository root::

    python benchmarks/onnx_resnet.py            # ResNet-50, batch 1, 224x224
    python benchmarks/onnx_resnet.py --size 112 --repeats 5
    python benchmarks/onnx_resnet.py --rounds 5 --repeats 10  # five pairs of runs
    python benchmarks/onnx_resnet.py --model onnx-test
    python benchmarks/onnx_resnet.py --layers   # npconv's Conv nodes: in the network, alone
    python benchmarks/onnx_resnet.py --rounds 5 --repeats 10 --tune  # also tuned in place
    python benchmarks/onnx_resnet.py --rounds 5 --repeats 10 --passes  # GEMMs and the rest
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import npconv.onnx
from npconv.onnx._profile import _timed

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


EVALUATORS = ("onnxruntime", "onnx ReferenceEvaluator", "npconv.onnx.evaluator")
#: npconv's evaluator after Evaluator.tune on the same feeds (``--tune``).
TUNED = "npconv.onnx.evaluator, tuned"
#: The Conv nodes' im2col GEMMs alone, by NumPy's matmul (``--passes``).
GEMMS = "the Conv nodes' im2col GEMMs alone (np.matmul)"


def _model(args: argparse.Namespace) -> tuple[onnx.ModelProto, str]:
    """The model the options ask for, and its title; every process builds the same one."""
    if args.model == "built":
        title = f"ResNet-50 v1.5, random weights, batch {args.batch}, {args.size}x{args.size}"
        return resnet50(args.batch, args.size), title
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    title = "onnx's backend-test ResNet-50 (light_resnet50.onnx), batch 1, 224x224"
    return onnx.load(os.path.join(data, "light", "light_resnet50.onnx")), title


def _feeds(model: onnx.ModelProto, args: argparse.Namespace) -> dict[str, np.ndarray]:
    x = np.random.default_rng(1).standard_normal((args.batch, 3, args.size, args.size))
    return {model.graph.input[0].name: x.astype(np.float32)}


def _time_alone(name: str, args: argparse.Namespace, profile: bool = True) -> dict[str, Any]:
    """In a fresh process: one evaluator's output and seconds per run (after a warm-up),
    and where ``profile``, for the two Python evaluators their time per node type."""
    npconv.set_threads(args.threads)  # NumPy's BLAS, as many threads as onnxruntime's
    model, _ = _model(args)
    feeds = _feeds(model, args)
    if name == "onnxruntime":
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3  # errors only (the test model has an unused initializer)
        session: Any = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    elif name == "onnx ReferenceEvaluator":
        session = ReferenceEvaluator(model)
    elif name == GEMMS:
        session = _Gemms(model)
    else:
        session = npconv.onnx.evaluator(model)
        if name == TUNED:
            session.tune(feeds)
    output = session.run(None, feeds)[0]  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    table = None
    if profile and name not in ("onnxruntime", GEMMS):
        plain = name == "onnx ReferenceEvaluator"
        tune = name == TUNED
        table = npconv.onnx.profile(model, feeds, args.repeats, plain=plain, tune=tune).table()
    return {"output": output, "times": times, "profile": table}


def _conv_gemms(model: onnx.ModelProto) -> list[tuple[int, int, int, int]]:
    """Each Conv node's im2col product as ``(groups, O/G, C/G*prod(kernel), N*prod(out))``,
    from inferred shapes."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*inferred.graph.value_info, *inferred.graph.output)
    }
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    gemms = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            out_channels, cg, *kernel = shapes[node.input[1]]
            batch, _, *out = shapes[node.output[0]]
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            rows = out_channels // groups
            gemms.append((groups, rows, cg * int(np.prod(kernel)), batch * int(np.prod(out))))
    return gemms


def _conv_gflop(model: onnx.ModelProto) -> float:
    """GFLOP (2 x multiply-accumulates) of the model's Conv nodes."""
    return sum(2 * g * m * k * n for g, m, k, n in _conv_gemms(model)) / 1e9


class _Gemms:
    """A "session" whose run is the model's Conv GEMMs (:func:`_conv_gemms`), one after
    the other, each by ``np.matmul`` into a result made once: what the convolutions
    would cost if gathering their patches, their bias, their ReLU and every other node
    cost nothing."""

    def __init__(self, model: onnx.ModelProto) -> None:
        rng = np.random.default_rng(0)
        self.operands = [
            (
                rng.standard_normal((g, m, k), dtype=np.float32),
                rng.standard_normal((g, k, n), dtype=np.float32),
                np.empty((g, m, n), np.float32),
            )
            for g, m, k, n in _conv_gemms(model)
        ]

    def run(self, output_names: Any, feeds: Any) -> list[Any]:
        for a, b, c in self.operands:
            np.matmul(a, b, out=c)
        return [None]


def _kind(node: Any, x: np.ndarray, w: np.ndarray) -> str:
    """A Conv node's kind: kernel/stride, channels and input size, e.g. "3x3/1 64->64 @56"."""
    stride = (getattr(node, "strides", None) or [1])[0]
    return f"{w.shape[2]}x{w.shape[3]}/{stride} {w.shape[1]}->{w.shape[0]} @{x.shape[2]}"


def _kind_table(
    first: str, columns: tuple[str, str, str], rows: dict[str, list[float]], sign: str = ""
) -> str:
    """A Markdown table of ``rows`` (kind: ``[nodes, a, b]``, seconds): ``a``, ``b`` and
    ``a - b`` in ms (``sign`` "+" to sign the difference), the largest difference first,
    then their sums."""
    lines = [f"| {first} | count | " + " | ".join(f"{c} (ms)" for c in columns) + " |"]
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for kind, (count, a, b) in sorted(rows.items(), key=lambda kv: kv[1][2] - kv[1][1]):
        lines.append(
            f"| {kind} | {count} | {a * 1e3:.2f} | {b * 1e3:.2f} | {(a - b) * 1e3:{sign}.2f} |"
        )
    a, b = (sum(row[j] for row in rows.values()) * 1e3 for j in (1, 2))
    count = sum(int(row[0]) for row in rows.values())
    lines.append(f"| all | {count} | {a:.1f} | {b:.1f} | {a - b:{sign}.1f} |")
    return "\n".join(lines)


def _passes(args: argparse.Namespace) -> str:
    """In a fresh process: npconv's time per node kind in the network (median over
    ``args.repeats`` runs after three warm-up runs), split into the time spent in NumPy's
    ``matmul`` (the GEMMs; summed over the threads that call it, where an algorithm shares
    its GEMMs out) and the rest, as a Markdown table, the largest rest first."""
    npconv.set_threads(args.threads)
    model, _ = _model(args)
    feeds = _feeds(model, args)
    session = npconv.onnx.evaluator(model)
    in_matmul: dict[str, float] = {"gemm": 0.0}
    matmul = np.matmul

    seconds: dict[int, list[tuple[float, float]]] = {}
    kinds: dict[int, str] = {}
    for i, node in enumerate(session.rt_nodes_):
        seconds[i] = []

        def timed(*a: Any, run: Any = node.run, i: int = i, node: Any = node, **k: Any) -> Any:
            in_matmul["gemm"] = 0.0
            start = time.perf_counter()
            out = run(*a, **k)
            seconds[i].append((time.perf_counter() - start, in_matmul["gemm"]))
            if i not in kinds:
                conv = node.op_type == "Conv"
                kinds[i] = _kind(node, a[0], a[1]) if conv else node.op_type
            return out

        node.run = timed
    np.matmul = _timed(matmul, "gemm", in_matmul)  # as the algorithms call it: np.matmul(...)
    try:
        for _ in range(3 + args.repeats):
            session.run(None, feeds)
    finally:
        np.matmul = matmul
    rows: dict[str, list[float]] = {}
    for i, times in seconds.items():
        row = rows.setdefault(kinds[i], [0, 0.0, 0.0])
        row[0] += 1
        row[1] += statistics.median(total for total, _ in times[3:])
        row[2] += statistics.median(gemm for _, gemm in times[3:])
    return _kind_table("nodes", ("time", "in GEMMs", "the rest"), rows)


def _layers_alone(args: argparse.Namespace) -> str:
    """In a fresh process: npconv's Conv nodes, each timed inside the network (median over
    ``args.repeats`` runs after three warm-up runs) and then alone, called again on the
    same arguments (median of 15 calls after 5), summed by kind (weight shape and input
    size), as a Markdown table: where the network's layers lose against the same layers
    run alone."""
    npconv.set_threads(args.threads)
    model, _ = _model(args)
    feeds = _feeds(model, args)
    session = npconv.onnx.evaluator(model)
    convs = [node for node in session.rt_nodes_ if node.op_type == "Conv"]
    seconds: dict[int, list[float]] = {i: [] for i in range(len(convs))}
    calls: dict[int, tuple[Any, Any]] = {}
    for i, node in enumerate(convs):

        def timed(*a: Any, run: Any = node.run, i: int = i, **k: Any) -> Any:
            start = time.perf_counter()
            out = run(*a, **k)
            seconds[i].append(time.perf_counter() - start)
            calls[i] = (a, k)
            return out

        node.run = timed
    for _ in range(3 + args.repeats):
        session.run(None, feeds)
    kinds: dict[str, list[float]] = {}
    for i, node in enumerate(convs):
        a, k = calls[i]
        kind = _kind(node, a[0], a[1])
        alone = []
        for _ in range(20):
            start = time.perf_counter()
            node.run(*a, **k)
            alone.append(time.perf_counter() - start)
        row = kinds.setdefault(kind, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += statistics.median(seconds[i][3:])
        row[2] += statistics.median(alone[5:])
    columns = ("in the network", "alone", "difference")
    return _kind_table("Conv nodes", columns, kinds, sign="+")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument(
        "--threads", type=int, default=2, help="onnxruntime intra-op threads and npconv threads"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="onnxruntime/npconv pairs, in fresh processes"
    )
    parser.add_argument("--model", choices=["built", "onnx-test"], default="built")
    parser.add_argument(
        "--layers", action="store_true", help="npconv's Conv nodes in the network and alone"
    )
    parser.add_argument(
        "--tune", action="store_true", help="time npconv's evaluator tuned in place too"
    )
    parser.add_argument(
        "--passes", action="store_true", help="time the GEMMs alone too; npconv's GEMMs and rest"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.model == "onnx-test":
        args.batch, args.size = 1, 224
    if args.layers:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            print(pool.submit(_layers_alone, args).result())
        return
    model, title = _model(args)
    gflop = _conv_gflop(model)
    del model

    ours = [EVALUATORS[-1], *([TUNED] if args.tune else []), *([GEMMS] if args.passes else [])]
    runs: dict[str, Any] = {}
    pairs: dict[str, list[float]] = {name: [] for name in ours}  # onnxruntime's time / its
    for r in range(args.rounds):  # one after the other, each in a fresh process of its own
        for name in [*EVALUATORS[:-1], *ours] if r == 0 else [EVALUATORS[0], *ours]:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                run = pool.submit(_time_alone, name, args, r == 0).result()
            kept = runs.setdefault(name, {**run, "times": [], "medians": []})  # round 1's output
            kept["times"] += run["times"]
            kept["medians"].append(statistics.median(run["times"]))
        for name in ours:
            pairs[name].append(runs[EVALUATORS[0]]["medians"][-1] / runs[name]["medians"][-1])
    times = {name: statistics.median(run["medians"]) for name, run in runs.items()}
    expected = runs["onnxruntime"]["output"]
    scale = float(np.abs(expected).max())

    print(f"{title}, float32, {gflop:.1f} GFLOP in Conv; {args.threads} threads;")
    rounds = f"; the median of {args.rounds} rounds' medians" if args.rounds > 1 else ""
    print(
        f"each evaluator in its own process, median of {args.repeats} runs after a warm-up"
        f"{rounds}\n"
    )
    print("| evaluator | time (s) | fastest-slowest run (s) | max abs diff / max abs |")
    print("| --- | ---: | ---: | ---: |")
    for name, run in runs.items():
        rel = "-" if name == GEMMS else f"{np.abs(run['output'] - expected).max() / scale:.1e}"
        spread = f"{min(run['times']):.3f}-{max(run['times']):.3f}"
        print(f"| {name} | {times[name]:.3f} | {spread} | {rel} |")
    npconv_time = times[EVALUATORS[-1]]
    print(
        f"\nonnxruntime's time / npconv.onnx.evaluator's: {times['onnxruntime'] / npconv_time:.2f}x"
        f"; the plain ReferenceEvaluator's / npconv's: "
        f"{times['onnx ReferenceEvaluator'] / npconv_time:.1f}x (> 1: npconv is faster).\n"
    )
    for name in ours if args.rounds > 1 else ():
        each = ", ".join(f"{ratio:.2f}x" for ratio in pairs[name])
        print(
            f"onnxruntime's time / {name}'s, round by round: {each}; "
            f"median {statistics.median(pairs[name]):.2f}x.\n"
        )
    for name, run in runs.items():
        if run["profile"] is not None:
            print(f"Time per node type, {name} (mean of {args.repeats} runs):\n")
            print(run["profile"], "\n")
    if args.passes:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            table = pool.submit(_passes, args).result()
        print(f"npconv's time per node kind, in GEMMs and the rest (medians of {args.repeats}):\n")
        print(table)


if __name__ == "__main__":
    main()
