"""The ``npconv`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``npconv`` and ``python -m npconv``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="npconv", description="Convolutions of deep learning in NumPy."
    )
    parser.add_argument("--version", action="version", version=f"npconv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="run every algorithm on the reference examples and compare with PyTorch",
    )
    check.add_argument("--repeats", type=int, default=3, help="timed runs per algorithm (median)")
    onnx_run = commands.add_parser(
        "onnx", help="run an ONNX model with npconv's evaluator and time each node type"
    )
    onnx_run.add_argument("model", help="the .onnx file")
    onnx_run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="a graph input (repeatable); inputs left out get random data of their shape",
    )
    onnx_run.add_argument("--output", metavar="FILE.npz", help="save the outputs")
    onnx_run.add_argument("--repeats", type=int, default=3, help="timed runs (mean)")
    onnx_run.add_argument(
        "--tune",
        action="store_true",
        help="time each Conv node's candidate algorithms where it runs first, and keep the fastest",
    )
    bench = commands.add_parser(
        "bench", help="time npconv against PyTorch (and SciPy) on a suite of layers"
    )
    bench.add_argument(
        "--suite",
        default="all",
        help="notes, resnet, mobilenet, vgg, conv1d, tiny or all (several: comma-separated)",
    )
    bench.add_argument("--dtype", default="float32", help="dtype of the arrays (default float32)")
    bench.add_argument("--against", default="torch", help="comma-separated peers: torch,scipy")
    bench.add_argument(
        "--algorithms", default="auto", help="comma-separated npconv algorithms (default auto)"
    )
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per contender (median)")
    bench.add_argument("--threads", type=int, help="threads for npconv, BLAS and the peers")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument("--plot", metavar="FILE", help="draw a PNG bar chart (needs matplotlib)")
    bench.add_argument(
        "--backward",
        action="store_true",
        help="time the input and weight gradients (npconv.grad) against torch.autograd",
    )
    bench.add_argument(
        "--bias",
        action="store_true",
        help="give every layer a bias, as most layers of a network have (forward only)",
    )
    bench.add_argument("--only", metavar="TEXT", help="only the layers whose name contains TEXT")
    bench.add_argument(
        "--one-process",
        action="store_true",
        help="time every contender in this process, not one fresh process each "
        "(shows what the libraries' spinning threads cost each other)",
    )
    bench.add_argument(
        "--warm-allocator",
        action="store_true",
        help="free a 30 MiB block in each worker first, so that temporaries come from the "
        "heap as in a long-running process rather than from fresh pages",
    )
    args = parser.parse_args(argv)

    if args.command == "onnx":
        from .onnx._command import run_command  # needs the onnx extra

        return run_command(args.model, args.input, args.output, args.repeats, args.tune)

    if args.command == "bench":
        from ._bench import run_bench
        from ._threads import set_threads

        if args.threads is not None:
            set_threads(args.threads)
        run_bench(
            args.suite,
            dtype=args.dtype,
            against=[p for p in args.against.split(",") if p],
            algorithms=[a for a in args.algorithms.split(",") if a],
            repeats=args.repeats,
            backward=args.backward,
            bias=args.bias,
            only=args.only,
            one_process=args.one_process,
            warm_allocator=args.warm_allocator,
            json_path=args.json,
            plot_path=args.plot,
        )
        return 0

    from ._check import run_check

    return 0 if run_check(repeats=args.repeats) else 1
