"""The reference notes' worked examples, each against an independent computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import npconv
from npconv._check import examples, run_check

from conftest import FORWARD, assert_close

ALGORITHMS = ["shifted", "im2col", "einsum", "matrix"]  # naive: see the stride-2 exercise


def loop_reference(image: np.ndarray, filt: np.ndarray, stride: int) -> np.ndarray:
    """Dot product of the filter with every window, visiting windows with plain loops."""
    kh, kw, _ = filt.shape
    rows = (image.shape[0] - kh) // stride + 1
    cols = (image.shape[1] - kw) // stride + 1
    out = np.zeros((rows, cols))
    for i, j in itertools.product(range(rows), range(cols)):
        window = image[i * stride : i * stride + kh, j * stride : j * stride + kw]
        out[i, j] = np.sum(window * filt)
    return out


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, "naive", "auto"])
def test_33x33x3_exercise_with_stride_2(algorithm):
    rng = np.random.default_rng(123)
    image = rng.normal(size=(33, 33, 3)).round(2)
    filt = rng.normal(size=(5, 5, 3)).round(2)
    y = npconv.conv(image[None], filt[..., None], stride=2, layout="NHWC", algorithm=algorithm)
    assert y.shape == (1, 15, 15, 1)
    assert_close(y[0, ..., 0], loop_reference(image, filt, 2))


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, "auto"])
@pytest.mark.parametrize("index", [0, 1])
def test_nhwc_batches_match_torch(algorithm, index):
    ex = examples()[index]
    y = npconv.conv(ex.x, ex.w, layout="NHWC", algorithm=algorithm)
    xt = torch.from_numpy(ex.x).permute(0, 3, 1, 2)
    wt = torch.from_numpy(ex.w).permute(3, 2, 0, 1)
    expected = torch.nn.functional.conv2d(xt, wt).permute(0, 2, 3, 1).numpy()
    assert y.shape == (ex.x.shape[0], 30, 30, 16)
    assert_close(y, expected)


def test_check_reports_agreement():
    lines: list[str] = []
    assert run_check(repeats=1, print_fn=lines.append)
    text = "\n".join(lines)
    for name in FORWARD:  # every algorithm that computes forward convolutions
        assert name in text
    assert "torch" in text and text.splitlines()[-1].startswith("OK")
