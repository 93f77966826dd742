"""Compiled kernels: the one place that imports numba (the optional ``jit`` extra).

A kernel is a plain Python function over arrays, written as numba code (loops, calls
to other kernels), and decorated with :func:`kernel`.  Nothing is imported or compiled
when npconv is imported: :func:`unavailable` imports numba the first time a registry
row asks whether it can run (importing numba takes ~0.4 s), and a kernel is compiled on
its first call for each combination of argument types, with ``cache=True``, so that a
second process loads the machine code from numba's cache instead of compiling again.
Kernels that several modules call (:func:`copy_rows`, and :func:`equal_bits` for the
workspaces) live here, and the three machine operations that numba code cannot write
itself (:class:`Intrinsic`): an atomic load and store of a flag that another thread
sets or reads, and the CPU's spin-wait hint, with which npconv's threads wait for work
(:mod:`npconv._threads`).

Kernels run on the thread that calls them, without the GIL (``nogil``): the calling
thread, or npconv's own pinned threads, among which an algorithm shares out its chunks
(:mod:`npconv._threads`).  numba's own threads are not used: on two cores they made the
Winograd transforms 1.5x slower (3x3 64->64 @224) and a depthwise layer run right
after a GEMM 2-3x slower than on one thread (NumPy 2.4, OpenBLAS 0.3.31, numba 0.68).
They are compiled without ``fastmath``: IEEE arithmetic, so that NaN and Inf
propagate as in a direct convolution.  A kernel may ask for two of LLVM's fast-math
flags (:data:`FLAGS`), which keep that: ``contract`` fuses ``a * b + c`` into one
multiply-add (one rounding instead of two; exact integers in float64 stay exact), and
``reassoc`` lets the additions of a sum be reordered, as a BLAS call does, so that a
long dot product is vectorised instead of being a chain of scalar additions.
"""

from __future__ import annotations

import platform
import threading
import types
from collections.abc import Callable, Collection
from typing import Any

__all__ = [
    "FLAGS",
    "MISSING",
    "Intrinsic",
    "Kernel",
    "add_channels",
    "copy_rows",
    "equal_bits",
    "kernel",
    "letting_go",
    "load_acquire",
    "pause",
    "store_release",
    "unavailable",
]

#: Why a compiled algorithm cannot run when numba is not installed.
MISSING = "it needs numba (pip install 'npconv[jit]')"
#: The fast-math flags a kernel may ask for: neither assumes away NaN, Inf or signed zeros.
FLAGS = frozenset({"contract", "reassoc"})

_numba: dict[str, Any] = {}  # "module" once imported, or "error": why it cannot be

#: Per thread, ``hook``: a function to call before the next kernel starts (once), set by
#: :mod:`npconv._threads` so that a parallel region's caller knows when a pool thread
#: is about to run its first kernel, and so to release the GIL.
entering = threading.local()


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
    """A function compiled by numba on its first call (cached on disk)."""

    def __init__(self, fn: Callable[..., Any], flags: Collection[str] = ()) -> None:
        if not FLAGS.issuperset(flags):
            raise ValueError(f"kernel flags must be among {sorted(FLAGS)}, got {flags!r}")
        self.fn = fn
        self.fastmath = set(flags) or False
        self._compiled: Any = None
        self.__doc__ = fn.__doc__

    def compiled(self) -> Any:
        """The numba dispatcher of the function (created once; it compiles per signature).

        Every other :class:`Kernel` the function calls is seen as that kernel's
        dispatcher (inlined into its callers' loops), every :class:`Intrinsic` as
        numba's intrinsic.
        """
        if self._compiled is None:
            numba = _numba["module"]
            names = dict(self.fn.__globals__)
            for name in self.fn.__code__.co_names:
                if isinstance(names.get(name), (Kernel, Intrinsic)):
                    names[name] = names[name].compiled()
            fn = types.FunctionType(self.fn.__code__, names, self.fn.__name__)
            fn.__qualname__, fn.__module__ = self.fn.__qualname__, self.fn.__module__
            options = dict(cache=True, nogil=True, inline="always", fastmath=self.fastmath)
            self._compiled = numba.njit(**options)(fn)
        return self._compiled

    def __call__(self, *args: Any) -> Any:
        """Run the compiled kernel on the calling thread (after the thread's ``hook`` in
        :data:`entering`, if one is set)."""
        if unavailable() is not None:
            raise RuntimeError(f"{self.fn.__name__}: {unavailable()}")
        letting_go()
        return self.compiled()(*args)


def letting_go() -> None:
    """Say that the calling thread is about to let the GIL go (a kernel, or a NumPy call
    that releases it, follows): call its ``hook`` in :data:`entering` once, if set."""
    hook = getattr(entering, "hook", None)
    if hook is not None:
        entering.hook = None
        hook()


class Intrinsic:
    """A machine operation for kernels: numba's ``intrinsic`` of ``build``, created on
    first use (``build(typingctx, *argument_types)`` returns the signature and a function
    that emits the LLVM instructions)."""

    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build
        self._compiled: Any = None
        self.__doc__ = build.__doc__

    def compiled(self) -> Any:
        """numba's intrinsic (callable from kernels only)."""
        if self._compiled is None:
            from numba.extending import intrinsic

            self._compiled = intrinsic(self.build)
        return self._compiled


def _element(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    """The address of element ``index`` of a 1-d array, in LLVM."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@Intrinsic
def load_acquire(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index]`` of a 1-d integer array, read atomically with acquire ordering: a
    value another thread writes, re-read on every call (a plain read in a loop could be
    read once, before it)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        address = _element(context, builder, signature.args[0], *args)
        return builder.load_atomic(address, "acquire", array.dtype.bitwidth // 8)

    return array.dtype(array, index), codegen


@Intrinsic
def store_release(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] = value``, written atomically with release ordering: a thread that
    reads it with :data:`load_acquire` sees every write made before it."""
    from numba.core import types as nb

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        address = _element(context, builder, signature.args[0], args[0], args[1])
        stored = context.cast(builder, args[2], signature.args[2], array.dtype)
        builder.store_atomic(stored, address, "release", array.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return nb.void(array, index, value), codegen


@Intrinsic
def pause(typingctx: Any) -> Any:
    """The CPU's spin-wait hint (x86's ``pause``; nothing elsewhere): a waiting loop
    then yields the core's resources to its other hyperthread, and leaves it without a
    memory-order stall when the awaited value arrives."""
    from llvmlite import ir
    from numba.core import cgutils
    from numba.core import types as nb

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            hint = ir.FunctionType(ir.VoidType(), [])
            name = "llvm.x86.sse2.pause"
            builder.call(cgutils.get_or_insert_function(builder.module, hint, name), [])
        return context.get_dummy_value()

    return nb.void(), codegen


def kernel(fn: Callable[..., Any] | None = None, *, flags: Collection[str] = ()) -> Any:
    """Decorator: ``fn`` as a :class:`Kernel`, compiled on first use; ``@kernel``, or
    ``@kernel(flags=("contract",))`` for fast-math flags among :data:`FLAGS`."""
    if fn is None:
        return lambda f: Kernel(f, flags)
    return Kernel(fn, flags)


@kernel
def copy_rows(dst, src):
    """``dst[:] = src[:rows, :cols]`` for 2-d ``dst`` (rows, cols), row by row: a loop per
    row, which numba vectorises, ran 3x faster than one 2-d slice assignment."""
    for i in range(dst.shape[0]):
        row, source = dst[i], src[i]
        for j in range(dst.shape[1]):
            row[j] = source[j]


@kernel
def add_channels(y, b, relu):
    """``y[n, c] += b[c]``, then where ``relu`` ``y = max(y, 0)`` (NaN stays NaN), for 4-d
    ``y`` (samples, channels, rows, columns): a bias, and the ReLU that follows it in a
    network, applied to a channels-first result, or to a block of its rows, in one
    vectorised loop per row.  NumPy's broadcast ``y += b[:, None, None]`` calls its inner
    loop once per row: 18 against 5 us on a result of 384 channels by 196 positions, one
    thread; 28 columns a row (3x3/2 128->128 @56) cost it 3x more per value."""
    for n in range(y.shape[0]):
        for c in range(y.shape[1]):
            value = b[c]
            for r in range(y.shape[2]):
                row = y[n, c, r]
                if relu:
                    for p in range(len(row)):
                        v = row[p] + value
                        row[p] = 0 if v < 0 else v  # NaN < 0 is false: NaN stays
                else:
                    for p in range(len(row)):
                        row[p] += value


@kernel
def equal_bits(a, b):
    """Whether the 1-d integer arrays ``a`` and ``b`` (of one length) hold the same values:
    the exclusive or of every pair, or-ed together without stopping at the first
    difference, so that the loop is vectorised."""
    if len(a) == 0:
        return True
    differ = a[0] ^ b[0]  # of the arrays' own type (a Python 0 would promote uint64)
    for i in range(1, len(a)):
        differ |= a[i] ^ b[i]
    return differ == 0
