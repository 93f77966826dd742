"""npconv.fhe without its extra: a clear ImportError (the circuits are tested in tests/fhe)."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_import_without_concrete_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "concrete", None)  # as if concrete-python were absent
    monkeypatch.delitem(sys.modules, "npconv.fhe", raising=False)
    with pytest.raises(
        ImportError, match=r"npconv.fhe needs concrete-python .* pip install 'npconv\[fhe\]'"
    ):
        importlib.import_module("npconv.fhe")


def test_npconv_does_not_import_fhe() -> None:
    import npconv

    assert "fhe" not in npconv.__all__
