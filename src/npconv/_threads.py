"""The threads setting: how many cores npconv's elementwise stages, FFTs and BLAS use.

Matrix products run in the BLAS library's own threads; FFTs in ``scipy.fft``'s workers;
the elementwise stages without a matrix product (the ``depthwise`` algorithm) on several
Python threads, each on its own block of the output (NumPy releases the GIL in its
loops).  Copies that sit between two BLAS calls stay on one thread: BLAS's worker
threads spin for a while after each call, and extra copying threads would compete with
them for the cores.  :func:`set_threads` sets every count; the default is every core
(``os.cpu_count()``).  It changes how npconv runs, never what it computes: the cost
model that "auto" consults takes the thread count as an input, so the choice of
algorithm may differ between counts, and every algorithm gives the same result up to
its stated rounding error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["get_threads", "parallel_map", "set_threads"]

T = TypeVar("T")
_state: dict[str, object] = {"threads": os.cpu_count() or 1, "pool": None}
_lock = threading.Lock()  # guards the swap of the pool against submissions to it


def get_threads() -> int:
    """The number of threads npconv uses.

    Examples
    --------
    >>> import npconv
    >>> npconv.get_threads() >= 1
    True
    """
    return int(_state["threads"])  # type: ignore[call-overload]


def set_threads(threads: int) -> int:
    """Use ``threads`` threads for npconv's own stages, FFTs and BLAS; return the old count.

    Parameters
    ----------
    threads : int
        Number of threads, >= 1.  BLAS is limited to the same count through
        ``threadpoolctl`` (for the BLAS libraries loaded in the process).

    Returns
    -------
    int
        The previous setting, so that a caller can restore it.

    Raises
    ------
    TypeError
        ``threads`` is not an int.
    ValueError
        ``threads`` is smaller than 1.

    Examples
    --------
    >>> import npconv
    >>> old = npconv.set_threads(1)
    >>> npconv.get_threads()
    1
    >>> _ = npconv.set_threads(old)
    """
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise TypeError(f"set_threads: threads must be an int, got {threads!r}")
    if threads < 1:
        raise ValueError(f"set_threads: threads must be >= 1, got {threads}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    with _lock:  # no parallel_map is submitting to the pool being replaced
        old, pool = get_threads(), _state["pool"]
        _state.update(threads=threads, pool=None)
    if isinstance(pool, ThreadPoolExecutor):
        pool.shutdown(wait=False)  # its submitted jobs still run, then its threads end
    return old


def parallel_map(fn: Callable[[T], object], items: Sequence[T]) -> None:
    """Call ``fn`` on every item, on up to :func:`get_threads` threads; re-raise errors.

    Safe while another thread calls :func:`set_threads`: the jobs are submitted to one
    pool at once, which finishes them even when it has been replaced.
    """
    if get_threads() <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(get_threads(), thread_name_prefix="npconv")
        pool: ThreadPoolExecutor = _state["pool"]  # type: ignore[assignment]
        jobs = [pool.submit(fn, item) for item in items]
    for job in jobs:
        job.result()
