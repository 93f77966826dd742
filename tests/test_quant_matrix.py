"""matrix_stats and plot_matrix on convolution matrices, against dense NumPy arithmetic."""

from __future__ import annotations

import sys

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv import quant


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 2),
    st.integers(1, 2),
)
def test_matrix_stats_agree_with_dense_math_and_the_certified_width(
    seed, bits, signed, pad, stride
) -> None:
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, size=(2, 3, 3, 3))
    shape = (3, int(rng.integers(3, 7)), int(rng.integers(3, 7)))
    m = npconv.conv_matrix(shape, w, padding=pad, stride=stride)
    dense = m.toarray()
    s = quant.matrix_stats(m, input_bits=bits, signed_inputs=signed)
    assert s.shape == dense.shape
    assert s.nonzeros == np.count_nonzero(dense)
    assert s.density == np.count_nonzero(dense) / dense.size
    assert s.max_column_l1 == np.abs(dense).sum(axis=0).max()
    nonzero = dense[dense != 0]
    assert s.value_bits == quant.bits_needed(min(nonzero.min(), 0), max(nonzero.max(), 0))
    width = quant.accumulator_bits(
        w, input_bits=bits, signed_inputs=signed, input_shape=shape, padding=pad, stride=stride
    )
    assert s.accumulator_bits == width
    assert quant.matrix_stats(dense).accumulator_bits is None


def test_matrix_stats_of_a_float_matrix() -> None:
    s = quant.matrix_stats(np.array([[0.5, 0.0], [-1.0, 2.0]]))
    assert (s.nonzeros, s.max_column_l1, s.value_bits, s.accumulator_bits) == (3, 2.0, None, None)


def test_plot_matrix_draws_the_pattern(tmp_path) -> None:
    m = npconv.conv_matrix((1, 8, 8), np.ones((2, 1, 3, 3)), padding=1, stride=2)
    path = quant.plot_matrix(m, tmp_path / "m.png", title="stride 2")
    image = matplotlib.image.imread(path)  # (height, width, RGBA)
    assert image.ndim == 3 and image.shape[0] > 100
    assert image[..., :3].min() < 0.5  # something was drawn


def test_plot_matrix_without_matplotlib(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'npconv\[plot\]'"):
        quant.plot_matrix(np.eye(3), tmp_path / "m.png")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: quant.matrix_stats(np.ones((2, 2), dtype=int), input_range=(1, 2)),
            "matrix_stats: input_range must contain 0",
        ),
        (lambda: quant.matrix_stats(np.ones(3)), "matrix_stats: m must be 2-d"),
        (lambda: quant.plot_matrix(np.ones((2, 2, 2)), "m.png"), "plot_matrix: m must be 2-d"),
    ],
)
def test_error_messages(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
