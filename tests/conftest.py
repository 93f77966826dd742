"""Shared test helpers: tolerances per dtype (stated once) and the PyTorch referee."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import settings

import npconv
from npconv import ConvSpec
from npconv._dispatch import _PLANS
from npconv._jit import MISSING, unavailable
from npconv.algorithms import REGISTRY


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--without-numba",
        action="store_true",
        help="run as where numba is not installed: `import numba` raises ImportError",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--without-numba"):
        assert "numba" not in sys.modules, "numba was imported before the tests started"
        sys.modules["numba"] = None  # type: ignore[assignment]


settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile("ci")

torch.set_num_threads(2)

#: The registered algorithms that compute forward convolutions (all but the adjoint-only).
FORWARD = [name for name, algorithm in REGISTRY.items() if algorithm.fn is not None]

#: Relative tolerance (to the largest |reference|) per result dtype.
RTOL = {
    np.dtype(np.float16): 2e-3,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex64): 1e-5,
    np.dtype(np.complex128): 1e-10,
}


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: np.dtype | None = None) -> None:
    """Equal shapes, and values within the dtype's tolerance (exact for integers)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    dtype = np.dtype(dtype or actual.dtype)
    if dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected)
        return
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    err = float(np.abs(actual.astype(np.complex128) - expected).max(initial=0.0))
    assert err <= RTOL[dtype] * scale, f"max error {err:.3g} > {RTOL[dtype]:g} x {scale:.3g}"


def declines(algorithm: str, x: np.ndarray, w: np.ndarray, layout: str = "NCHW", **kwargs) -> bool:
    """Whether a registered algorithm refuses this problem (its declared limits)."""
    if algorithm == "auto":
        return False
    spec = ConvSpec.build(x.shape, w.shape, layout=layout, **kwargs)
    compute = np.result_type(x, w)
    compute = np.dtype(np.int64) if compute.kind in "biu" else compute
    return REGISTRY[algorithm].unsupported(spec, compute) is not None


def refuses_without_numba(algorithm: str, call: Callable[[], object]) -> bool:
    """Where numba is missing (``--without-numba``), a compiled row refuses every problem
    with a ValueError naming numba: check that ``call`` does, and say so (the test then
    has nothing more to check).  False, calling nothing, anywhere else."""
    if algorithm == "auto" or not REGISTRY[algorithm].compiled or unavailable() is None:
        return False
    with pytest.raises(ValueError, match=re.escape(MISSING)):
        call()
    return True


_PAD_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def spy_weight_gradient(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple]:
    """The arguments of every call of registry row ``name``'s own weight gradient (its
    ``weight_grad`` if it has one, else its ``weight_grad_channels_first``), for this
    test (the row is replaced by a copy whose function records its calls)."""
    calls: list[tuple] = []
    row = REGISTRY[name]
    own = row.weight_grad.fn if row.weight_grad else row.weight_grad_channels_first

    def recorded(*args: object) -> np.ndarray:
        calls.append(args)
        return own(*args)

    if row.weight_grad:
        spy = replace(row, weight_grad=replace(row.weight_grad, fn=recorded))
    else:
        spy = replace(row, weight_grad_channels_first=recorded)
    monkeypatch.setitem(REGISTRY, name, spy)
    return calls


@contextmanager
def using_threads(count: int) -> Iterator[None]:
    """npconv set to ``count`` threads while the block runs, then to what it was."""
    old = npconv.set_threads(count)
    try:
        yield
    finally:
        npconv.set_threads(old)


def in_threads(fn: Callable[[], object], count: int = 2) -> list[Exception]:
    """Call ``fn`` on ``count`` new threads at once, wait for them, and return the
    exceptions they raised (for the test's own thread to assert on)."""
    errors: list[Exception] = []

    def guarded() -> None:
        try:
            fn()
        except Exception as err:  # returned to the caller
            errors.append(err)

    workers = [threading.Thread(target=guarded) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def torch_conv(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride=1,
    pads=None,
    dilation=1,
    groups=1,
    padding_mode="zeros",
) -> np.ndarray:
    """torch.nn.functional.conv{1,2,3}d on NCHW arrays, in float64 (or complex128).

    ``pads`` is one (before, after) pair per spatial dim; asymmetric pads are applied
    with ``torch.nn.functional.pad`` first, as PyTorch's own modules do.
    """
    nd = w.ndim - 2
    dtype = torch.complex128 if np.iscomplexobj(x) or np.iscomplexobj(w) else torch.float64
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
    wt = torch.from_numpy(np.ascontiguousarray(w)).to(dtype)
    bt = None if bias is None else torch.from_numpy(np.asarray(bias)).to(dtype)
    pads = pads or [(0, 0)] * nd
    flat = [p for pair in reversed(pads) for p in pair]  # torch pads the last dim first
    mode = "constant" if padding_mode == "zeros" else _PAD_MODE[padding_mode]
    if any(flat):
        xt = torch.nn.functional.pad(xt, flat, mode=mode)
    fn = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)
    with torch.no_grad():
        y = fn[nd - 1](xt, wt, bt, stride=stride, dilation=dilation, groups=groups)
    return y.numpy()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


@pytest.fixture(autouse=True)
def _without_plans() -> None:
    """Each test starts without the plans that earlier tests' calls made (under their own
    patches of npconv's internals), as a fresh process does."""
    _PLANS.clear()
