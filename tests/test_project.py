"""The project's entry points: the console command and the README's Quick start."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    assert f"\n{ci_command}\n" in readme, ci_command


def test_python_m_npconv_check_succeeds():
    result = subprocess.run(
        [sys.executable, "-m", "npconv", "check", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "OK: every algorithm agrees" in result.stdout


def test_unknown_command_is_an_error():
    result = subprocess.run(
        [sys.executable, "-m", "npconv", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_readme_layout_names_every_module():
    """README's "Layout of the code" lists every module and package of src/npconv."""
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout of the code", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "src" / "npconv"
    names = {p.name for p in package.glob("*.py")} | {
        f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()
    }
    missing = sorted(n for n in names if n not in layout)
    assert not missing, f"README's layout does not mention {missing}"
