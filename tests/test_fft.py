"""The fft algorithm: random configurations against PyTorch, the float32 bound."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv.algorithms import REGISTRY, fft

from conftest import torch_conv


@given(
    nd=st.integers(1, 3),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 3),
    groups=st.integers(1, 2),
    complex_=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_configurations_match_torch(nd, kernel, stride, dilation, groups, complex_, seed):
    rng = np.random.default_rng(seed)
    size = (kernel - 1) * dilation + 1 + int(rng.integers(0, 6))
    x = rng.standard_normal((2, 2 * groups, *[size] * nd))
    w = rng.standard_normal((2 * groups, 2, *[kernel] * nd))
    if complex_:
        x = x + 1j * rng.standard_normal(x.shape)
    kwargs = dict(stride=stride, dilation=dilation, groups=groups)
    y = npconv.conv(x, w, algorithm="fft", **kwargs)
    ref = torch_conv(x, w, **kwargs)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("kernel", [3, 7])
def test_float32_error_bound_on_unit_scale_data(kernel, rng):
    x = rng.standard_normal((2, 32, 40, 40))
    w = rng.standard_normal((32, 32, kernel, kernel))
    y = npconv.conv(x.astype(np.float32), w.astype(np.float32), algorithm="fft")
    ref = torch_conv(x, w)
    error = np.abs(y - ref).max() / np.abs(ref).max()
    assert error <= 1e-4 <= REGISTRY["fft"].error_scale * 1e-5


@contextlib.contextmanager
def small_workspace(size: int):
    """A workspace of ``size`` bytes: tiles, and blocks of samples, groups and channels."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fft, "WORKSPACE_BYTES", size)
        fft.plan.cache_clear()
        try:
            yield
        finally:
            fft.plan.cache_clear()


@given(
    nd=st.integers(1, 3),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    groups=st.integers(1, 3),
    complex_=st.booleans(),
    workspace=st.sampled_from([2**16, 2**10]),  # the second fits nothing: blocks of 1
    seed=st.integers(0, 2**16),
)
def test_tiles_and_blocks_match_torch(
    nd, kernel, stride, dilation, groups, complex_, workspace, seed
):
    rng = np.random.default_rng(seed)
    size = (kernel - 1) * dilation + 1 + int(rng.integers(0, [40, 12, 5][nd - 1]))
    x = rng.standard_normal((3, 5 * groups, *[size] * nd))
    w = rng.standard_normal((6 * groups, 5, *[kernel] * nd))
    if complex_:
        x = x + 1j * rng.standard_normal(x.shape)
    kwargs = dict(stride=stride, dilation=dilation, groups=groups)
    with small_workspace(workspace):
        cut = fft.plan(npconv.ConvSpec.build(x.shape, w.shape, **kwargs), x.dtype)
        assert cut.bytes <= workspace or cut.blocks == (1, 1, 1, 1)
        y = npconv.conv(x, w, algorithm="fft", **kwargs)
    ref = torch_conv(x, w, **kwargs)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def test_large_images_are_cut_into_tiles_within_the_workspace():
    """A 25x25 kernel on a 1024 x 1024 image: tiles, not whole-image spectra (2.3 GiB)."""
    spec = npconv.ConvSpec.build((1, 16, 1024, 1024), (16, 16, 25, 25), padding=12)
    cut = fft.plan(spec, np.dtype(np.float32))
    assert max(cut.tile) < 1024 and cut.bytes <= fft.WORKSPACE_BYTES == 32 * 2**20
    assert fft.memory(spec, np.dtype(np.float32)) == cut.bytes
