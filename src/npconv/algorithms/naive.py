"""``naive``: the definition of convolution, written as loops.

For every sample ``n``, output position ``p`` and output channel ``o`` (in group
``g = o // (O/G)``), the result is the sum over kernel offsets ``k`` and the group's
input channels ``c``::

    y[n, p, o] = sum_k sum_c  xp[n, p * stride + k * dilation, g * C/G + c] * w[k, c, o]

Every product is formed by the Python interpreter, one at a time, with Python numbers:
integers are exact at any size and floats accumulate in double precision.  That makes
this the oracle the other algorithms are tested against, and the slowest of them
(roughly a microsecond per multiply-accumulate).

Cost: ``N * O * C/G * prod(kernel) * prod(out)`` interpreted multiply-adds; memory: the
output plus Python-list copies of the padded input and the weight.  It refuses problems
larger than :data:`MAX_MACS` multiply-accumulates.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np

from .._cost import units
from .._spec import ConvSpec

#: The largest problem (in multiply-accumulates) the loops accept: a few seconds of work.
MAX_MACS = 4_000_000


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Loop-by-loop convolution of a canonical input (see :mod:`npconv._windows`)."""
    x = xp.tolist()  # nested lists (N, *padded_size, C) of Python numbers
    w = wc.tolist()  # nested lists (*kernel, C/G, O)
    cg, og = spec.group_in, spec.group_out
    y = np.zeros((spec.batch, *spec.out_size, spec.out_channels), dtype=object)

    def at(nested: list, index: tuple[int, ...]) -> list:  # type: ignore[type-arg]
        for i in index:
            nested = nested[i]
        return nested

    for n in range(spec.batch):
        for p in itertools.product(*map(range, spec.out_size)):
            for o in range(spec.out_channels):
                g = o // og
                total = 0
                for k in itertools.product(*map(range, spec.kernel)):
                    pos = tuple(
                        pi * s + ki * d for pi, ki, s, d in zip(p, k, spec.stride, spec.dilation)
                    )
                    pixel = at(x[n], pos)  # the C channels at that input position
                    taps = at(w, k)  # (C/G, O)
                    for c in range(cg):
                        total += pixel[g * cg + c] * taps[c][o]
                index = (n, *p, o)
                y[index] = total
    return y.astype(np.result_type(xp, wc))


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """One interpreted multiply-add per multiply-accumulate (about 20 calls' worth)."""
    return units(calls=20 * spec.macs)
