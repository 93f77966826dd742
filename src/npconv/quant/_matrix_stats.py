"""What a convolution matrix (:func:`npconv.conv_matrix`) asks of an integer accumulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from ._bounds import bits_needed, input_interval

__all__ = ["MatrixStats", "matrix_stats", "plot_matrix"]


@dataclass(frozen=True)
class MatrixStats:
    """Summary of a convolution matrix ``M`` (``y_flat = x_flat @ M``)."""

    shape: tuple[int, int]
    nonzeros: int
    density: float
    max_column_l1: float
    value_bits: int | None  # bits of the entries (integer M only)
    accumulator_bits: int | None  # bits of x @ M over the input range (integer M, range given)


def _two_dimensional(fn: str, m: Any) -> Any:
    """``m`` as a sparse array or ndarray, checked to be 2-d."""
    a = m if scipy.sparse.issparse(m) else np.asarray(m)
    if a.ndim != 2:
        raise ValueError(f"{fn}: m must be 2-d, got shape {a.shape}")
    return a


def matrix_stats(
    m: npt.ArrayLike | scipy.sparse.sparray,
    *,
    input_bits: int | None = None,
    input_range: tuple[int, int] | None = None,
    signed_inputs: bool = False,
) -> MatrixStats:
    """Shape, nonzeros, largest column L1 norm and the bits needed by a convolution matrix.

    Parameters
    ----------
    m : array_like or scipy.sparse array
        ``(inputs, outputs)``, e.g. from :func:`npconv.conv_matrix`.
    input_bits, input_range, signed_inputs
        The range of the inputs, as for :func:`npconv.quant.accumulator_range`
        (optional: without it ``accumulator_bits`` is None).

    Returns
    -------
    MatrixStats
        ``max_column_l1`` times the largest input magnitude bounds every output;
        ``accumulator_bits`` is the exact width of ``x @ M`` for inputs in the range
        (columns are outputs, so this is :func:`npconv.quant.accumulator_bits` of the
        convolution with zero padding, edges included).

    Raises
    ------
    ValueError
        ``m`` not 2-d; an input range without 0.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.quant import matrix_stats
    >>> w = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]])
    >>> s = matrix_stats(npconv.conv_matrix((1, 1, 4, 4), w, padding=1), input_bits=2)
    >>> s.shape, s.nonzeros, s.max_column_l1, s.value_bits, s.accumulator_bits
    ((16, 16), 60, 8, 3, 5)
    """
    fn = "matrix_stats"
    csc = scipy.sparse.csc_array(_two_dimensional(fn, m))
    csc.eliminate_zeros()
    rows, cols = csc.shape
    integer = csc.dtype.kind in "biu"
    column_l1 = abs(csc).sum(axis=0)  # (outputs,)
    largest = column_l1.max(initial=0)
    value_bits = accumulator = None
    if integer:
        data = csc.data.astype(np.int64)
        value_bits = bits_needed(int(data.min(initial=0)), int(data.max(initial=0)))
    if integer and (input_bits is not None or input_range is not None):
        a, b = input_interval(fn, input_bits, input_range, signed_inputs)
        pos, neg = csc.astype(np.int64), csc.astype(np.int64)
        pos.data, neg.data = np.maximum(pos.data, 0), np.minimum(neg.data, 0)
        p = pos.sum(axis=0).astype(object)  # (outputs,): positive weights of each output
        n = neg.sum(axis=0).astype(object)
        accumulator = bits_needed(min(a * p + b * n, default=0), max(b * p + a * n, default=0))
    return MatrixStats(
        shape=(rows, cols),
        nonzeros=int(csc.nnz),
        density=csc.nnz / max(rows * cols, 1),
        max_column_l1=largest.item(),
        value_bits=value_bits,
        accumulator_bits=accumulator,
    )


def plot_matrix(
    m: npt.ArrayLike | scipy.sparse.sparray, path: str | Path, *, title: str | None = None
) -> Path:
    """Save a PNG picture of the sparsity pattern of ``m`` (needs matplotlib).

    Parameters
    ----------
    m : array_like or scipy.sparse array
        A 2-d matrix, e.g. from :func:`npconv.conv_matrix`.
    path : str or Path
        Where to write the PNG.
    title : str, optional
        Figure title (default: the shape and the number of nonzeros).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ImportError
        matplotlib is not installed (``pip install 'npconv[plot]'``).
    ValueError
        ``m`` not 2-d.

    Examples
    --------
    >>> import numpy as np, npconv, tempfile, pathlib
    >>> from npconv.quant import plot_matrix
    >>> m = npconv.conv_matrix((1, 1, 6, 6), np.ones((2, 1, 3, 3)), padding=1)
    >>> png = plot_matrix(m, pathlib.Path(tempfile.mkdtemp()) / "m.png")
    >>> png.read_bytes()[:4] == b"\\x89PNG"
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plot_matrix needs matplotlib: pip install 'npconv[plot]'") from err
    coo = scipy.sparse.coo_array(_two_dimensional("plot_matrix", m))
    rows, cols = coo.shape
    fig, ax = plt.subplots(figsize=(6, 6 * min(max(rows / max(cols, 1), 0.25), 4)))
    ax.spy(coo, markersize=max(0.5, 200 / max(rows, cols, 1)), aspect="auto")
    ax.set_title(title or f"{rows} x {cols}, {coo.nnz} nonzeros")
    ax.set_xlabel("output element")
    ax.set_ylabel("input element")
    path = Path(path)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
