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
    args = parser.parse_args(argv)

    from ._check import run_check  # the only command so far

    return 0 if run_check(repeats=args.repeats) else 1
