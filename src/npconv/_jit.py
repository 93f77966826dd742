"""Compiled kernels: the one place that imports numba (the optional ``jit`` extra).

A kernel is a plain Python function over arrays, written as numba code (``prange`` for
the parallel loop, calls to other kernels), and decorated with :func:`kernel`.  Nothing
is imported or compiled when npconv is imported: :func:`unavailable` imports numba the
first time a registry row asks whether it can run (importing numba takes ~0.4 s), and
a kernel is compiled on its first call for each combination of argument types, with
``cache=True``, so that a second process loads the machine code from numba's cache
instead of compiling again.  Parallel kernels run on :func:`npconv.get_threads` threads,
one launch at a time (numba's ``workqueue`` threading layer cannot launch from two Python
threads at once).  They are compiled without ``fastmath``: IEEE arithmetic, so that
NaN and Inf propagate as in a direct convolution.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

from ._threads import get_threads

__all__ = ["MISSING", "Kernel", "kernel", "prange", "serial_kernel", "unavailable"]

#: Why a compiled algorithm cannot run when numba is not installed.
MISSING = "it needs numba (pip install 'npconv[jit]')"

#: The parallel loop of a kernel: ``numba.prange`` once compiled (``range`` until then).
prange = range

_numba: dict[str, Any] = {}  # "module" once imported, or "error": why it cannot be
_launch = threading.Lock()


def unavailable() -> str | None:
    """Why compiled kernels cannot run here (numba missing or broken), or None."""
    if not _numba:
        try:
            import numba
        except ImportError as error:  # not installed, or built for another NumPy
            _numba["error"] = MISSING if error.name == "numba" else f"{MISSING}: {error}"
        else:
            _numba["module"] = numba
    return _numba.get("error")


class Kernel:
    """A function compiled by numba on its first call (cached on disk; parallel if it uses
    ``prange``)."""

    def __init__(self, fn: Callable[..., Any], serial: bool = False) -> None:
        self.fn = fn
        self.serial = serial
        self._compiled: Any = None
        self.__doc__ = fn.__doc__

    def compiled(self) -> Any:
        """The numba dispatcher of the function (created once; it compiles per signature).

        The function's globals are seen as numba sees them: ``prange`` is
        ``numba.prange`` and every other :class:`Kernel` it calls is that kernel's
        dispatcher.
        """
        if self._compiled is None:
            numba = _numba["module"]
            names = dict(self.fn.__globals__, prange=range if self.serial else numba.prange)
            for name in self.fn.__code__.co_names:
                if isinstance(names.get(name), Kernel):
                    names[name] = names[name].compiled()
            fn = types.FunctionType(self.fn.__code__, names, self.fn.__name__)
            fn.__qualname__, fn.__module__ = self.fn.__qualname__, self.fn.__module__
            if "prange" in self.fn.__code__.co_names and not self.serial:
                self._compiled = numba.njit(parallel=True, cache=True, nogil=True)(fn)
            else:  # serial, or a helper (inlined into its callers' loops)
                self._compiled = numba.njit(cache=True, nogil=True, inline="always")(fn)
        return self._compiled

    def __call__(self, *args: Any) -> Any:
        """Run the compiled kernel on :func:`npconv.get_threads` threads (serial: on this one)."""
        if unavailable() is not None:
            raise RuntimeError(f"{self.fn.__name__}: {unavailable()}")
        compiled = self.compiled()
        if self.serial:  # no numba threads: Python threads may run it at once (nogil)
            return compiled(*args)
        numba = _numba["module"]
        with _launch:
            numba.set_num_threads(min(get_threads(), numba.config.NUMBA_NUM_THREADS))
            return compiled(*args)


def kernel(fn: Callable[..., Any]) -> Kernel:
    """Decorator: ``fn`` as a :class:`Kernel`, compiled on first use."""
    return Kernel(fn)


def serial_kernel(fn: Callable[..., Any]) -> Kernel:
    """Decorator: ``fn`` as a :class:`Kernel` whose ``prange`` loops run on the calling
    thread, for a kernel called between BLAS calls.

    After each call OpenBLAS's threads keep spinning on every core for a while, so
    numba's threads launched between two GEMMs share the cores with them: on two cores
    the compiled Winograd transforms took 1.5x longer on two numba threads than on one
    (3x3 64->64 @224, NumPy 2.4, OpenBLAS 0.3.31, numba 0.68).
    """
    return Kernel(fn, serial=True)
