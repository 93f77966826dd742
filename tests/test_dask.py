"""npconv.dask.conv against npconv.conv on many chunk layouts, threaded and distributed."""

from __future__ import annotations

import itertools
import runpy
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster
from hypothesis import given
from hypothesis import strategies as st

import npconv
import npconv.dask

from conftest import assert_close
from strategies import Case, cases

EXAMPLE = Path(__file__).parent.parent / "examples" / "giant_image.py"


@st.composite
def chunkings(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Random chunk sizes for every axis of ``shape`` (any number of cuts, anywhere)."""
    chunks = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=4))) if n > 1 else []
        edges = [0, *cuts, n]
        chunks.append(tuple(b - a for a, b in itertools.pairwise(edges)) or (n,))
    return tuple(chunks)


@st.composite
def dask_cases(draw: st.DrawFn, dtypes=(np.float64, np.int64)):
    """A case, its layout and a chunking of its input in that layout."""
    case = draw(cases(dtypes=dtypes))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    x, w = case.x, case.w
    if layout == "NHWC":
        x, w = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2))
    return case, layout, x, w, draw(chunkings(x.shape))


def check(case: Case, layout: str, x: np.ndarray, w: np.ndarray, chunks, **compute) -> None:
    """npconv.dask.conv of the chunked x equals npconv.conv of x: shape, dtype, values."""
    xd = da.from_array(x, chunks=chunks)
    y = npconv.dask.conv(xd, w, case.bias, layout=layout, **case.kwargs)
    expected = npconv.conv(x, w, case.bias, layout=layout, **case.kwargs)
    assert (y.shape, y.dtype) == (expected.shape, expected.dtype)
    result = y.compute(**compute)
    assert result.shape == expected.shape  # every block had the size its chunks declare
    assert_close(result, expected)


@given(drawn=dask_cases())
def test_matches_npconv_on_any_chunking_threaded(drawn):
    with dask.config.set(scheduler="threads"):
        check(*drawn)


def test_chunks_follow_the_input_and_the_stride():
    x = da.zeros((3, 2, 40, 9), chunks=(2, 1, 10, 9))
    y = npconv.dask.conv(x, np.ones((4, 2, 3, 3)), stride=(3, 2), padding=((2, 0), (1, 1)))
    # output p of an axis sits with the input chunk holding p * stride - pad_before
    assert y.chunks == ((2, 1), (4,), (4, 4, 3, 3), (5,))  # ceil((10 * i + 2) / 3)
    blocks = [y.blocks[0, 0, i].compute().shape[2] for i in range(4)]
    assert blocks == [4, 4, 3, 3]


def test_unbatched_input(rng):
    x = rng.standard_normal((2, 11, 7))
    w = rng.standard_normal((3, 2, 2, 3))
    y = npconv.dask.conv(da.from_array(x, chunks=(2, 4, 3)), w, padding="same_lower")
    assert_close(y.compute(scheduler="sync"), npconv.conv(x, w, padding="same_lower"))


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as c,
        Client(c) as client,
    ):
        yield client


@given(drawn=dask_cases(dtypes=(np.float32, np.int64)))
def test_matches_npconv_on_a_two_worker_cluster(drawn, client):
    case, layout, x, w, chunks = drawn
    check(case, layout, x, w, chunks)  # the client is the default scheduler


def test_errors():
    x = da.ones((1, 3, 8, 8), chunks=4)
    with pytest.raises(TypeError, match=r"npconv\.dask\.conv: x must be a dask\.array\.Array, got"):
        npconv.dask.conv(np.ones((1, 3, 8, 8)), np.ones((2, 3, 3, 3)))
    with pytest.raises(
        ValueError, match=r"npconv\.dask\.conv: bias must have shape \(2,\), .* \(3,\)"
    ):
        npconv.dask.conv(x, np.ones((2, 3, 3, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"npconv\.dask\.conv: x has 3 channels but w expects 4"):
        npconv.dask.conv(x, np.ones((2, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"npconv\.dask\.conv: unknown algorithm 'fast'; choose"):
        npconv.dask.conv(x, np.ones((2, 3, 3, 3)), algorithm="fast")
    unknown = x[x[:, 0, 0, 0] > 0]  # a boolean mask leaves the batch chunks unknown
    with pytest.raises(ValueError, match=r"x has unknown chunk sizes \(shape \(nan, 3, 8, 8\)\)"):
        npconv.dask.conv(unknown, np.ones((2, 3, 3, 3)))


def test_giant_image_example_runs_small(capsys, monkeypatch):
    argv = ["giant_image.py", "--size", "300", "--chunk", "128", "--tile", "64"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = capsys.readouterr().out
    assert "300 x 300" in printed and "max abs difference" in printed
