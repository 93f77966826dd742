"""The encrypted edge-detection example runs and agrees with plaintext npconv."""

from __future__ import annotations

import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "encrypted_edge_detection.py"


def test_encrypted_edge_detection_example() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--size", "8", "--bits", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "certified by npconv.quant 5 bits, measured by Concrete 5 bits" in result.stdout
    assert "encrypted result matches plaintext npconv: True" in result.stdout
