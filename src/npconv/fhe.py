"""Encrypted convolution with Concrete (fully homomorphic encryption, the ``fhe`` extra).

A convolution with known integer filters is a multiplication of the encrypted input by a
constant matrix (:func:`npconv.conv_matrix`), which TFHE evaluates exactly as long as
every value fits the circuit's integer width.  :func:`compile_conv` builds that circuit
(or Concrete's own ``fhe.conv``), calibrates it on the inputs of
:func:`npconv.quant.extreme_inputs`, so that Concrete measures exactly the range that
:func:`npconv.quant.accumulator_range` certifies, and returns the compiled circuit.

Install with ``pip install 'npconv[fhe]'`` (Linux x86-64; concrete-python needs
``numpy<2`` and ``setuptools<81``, so keep it in its own environment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from concrete import fhe as concrete_fhe
except ImportError as err:  # the fhe extra is optional
    raise ImportError(
        "npconv.fhe needs concrete-python (Linux x86-64, numpy<2, setuptools<81): "
        "pip install 'npconv[fhe]'"
    ) from err

from ._api import conv_matrix
from ._operands import as_array, bind_shapes
from ._spec import ConvOptions
from ._windows import canonical_weight, weight_first
from .quant import extreme_inputs

__all__ = [
    "ACCUMULATOR_TAG",
    "GLOBAL_P_ERROR",
    "METHODS",
    "circuit_accumulator_bits",
    "compile_conv",
]

METHODS = ("matrix", "native")
#: Probability that one run of a circuit compiled by :func:`compile_conv` decrypts a
#: wrong result, unless a configuration says otherwise.
GLOBAL_P_ERROR = 1e-9

#: Concrete tag of the convolution's nodes, for ``circuit.graph`` queries.
ACCUMULATOR_TAG = "npconv.conv"


def compile_conv(
    w: npt.ArrayLike,
    input_shape: Sequence[int],
    *,
    input_bits: int,
    signed_inputs: bool = False,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "NCHW",
    method: str = "matrix",
    then: Callable[[np.ndarray], np.ndarray] | None = None,
    inputset: Iterable[np.ndarray] = (),
    configuration: Any = None,
) -> Any:
    """Compile ``conv(x, w)`` (optionally followed by ``then``) for an encrypted ``x``.

    Parameters
    ----------
    w : array_like of int
        Filters, as for :func:`npconv.conv`; they stay in the clear.
    input_shape : tuple of int
        Shape of the encrypted input, with or without a batch axis.
    input_bits : int
        Width of the input integers (unsigned unless ``signed_inputs``).
    signed_inputs : bool
        Two's-complement inputs.
    stride, padding, dilation, groups, layout
        As for :func:`npconv.conv` (zero padding).
    method : {"matrix", "native"}
        ``"matrix"``: ``x_flat @ conv_matrix(...)``, any option.  ``"native"``:
        Concrete's ``fhe.conv``, which compiles 2-d convolutions without padding.
    then : callable, optional
        Applied elementwise to the result as one table lookup (e.g. a ReLU or a
        rescale).  The lookup's input is the accumulator, so its width is the one
        :func:`npconv.quant.accumulator_bits` certifies (Concrete allows 16 bits).
    inputset : iterable of ndarray
        Calibration inputs added to the extreme inputs (they matter only for ``then``,
        whose output range Concrete measures on the calibration set).
    configuration : concrete.fhe.Configuration, optional
        Passed to Concrete's ``compile``.  By default ``global_p_error`` is
        :data:`GLOBAL_P_ERROR` (1e-9) instead of Concrete's 1e-5: an encrypted result is
        then wrong with probability below one in a billion, for slightly larger keys.

    Returns
    -------
    concrete.fhe.Circuit
        ``circuit.encrypt_run_decrypt(x)`` equals ``npconv.conv(x, w, ...)`` (then
        ``then`` of it) for every ``x`` in the input range.  Its convolution nodes are
        tagged :data:`ACCUMULATOR_TAG`; :func:`circuit_accumulator_bits` reads their
        width.

    Raises
    ------
    ValueError
        An unknown method; an option that ``method="native"`` cannot compile; the
        errors of :func:`npconv.conv`.
    TypeError
        Non-integer filters.

    Notes
    -----
    Concrete sizes every value from the range it observes on the calibration set.  The
    extreme inputs reach both ends of the certified range of every output channel and
    no input goes beyond it, so the convolution's measured width equals
    ``accumulator_bits(w, input_bits=..., input_shape=...)`` exactly.  Compilation
    time grows with that width and with the number of table lookups.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv import fhe
    >>> w = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]])
    >>> circuit = fhe.compile_conv(w, (1, 1, 5, 5), input_bits=2, padding=1)
    >>> fhe.circuit_accumulator_bits(circuit)
    5
    >>> x = np.arange(25).reshape(1, 1, 5, 5) % 4
    >>> np.array_equal(circuit.encrypt_run_decrypt(x), npconv.conv(x, w, padding=1))
    True
    """
    fn = "compile_conv"
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    w = as_array(fn, "w", w)
    if w.dtype.kind not in "biu":
        raise TypeError(f"{fn}: w must hold integers, got dtype {w.dtype}")
    options: dict[str, Any] = dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups, layout=layout
    )
    spec, unbatched = bind_shapes(ConvOptions.create(fn, **options), input_shape, w.shape)
    batched = not unbatched
    w = w.astype(np.int64)
    if method == "native":
        convolve = _native(fn, w, spec, batched)
    else:
        m = np.asarray(conv_matrix(input_shape, w, sparse=False, **options))  # (C*in, O*out)
        out_shape = spec.output_shape if batched else spec.output_shape[1:]

        def convolve(x: Any) -> Any:
            flat = x.reshape((spec.batch, -1) if batched else (-1,))  # (N, C*in) or (C*in,)
            with concrete_fhe.tag(ACCUMULATOR_TAG):
                y = flat @ m  # (N, O*out)
            return y.reshape(out_shape)

    def circuit(x: Any) -> Any:
        y = convolve(x)
        return y if then is None else concrete_fhe.univariate(then)(y)

    extremes = extreme_inputs(
        w, input_shape, input_bits=input_bits, signed_inputs=signed_inputs, **options
    )  # (2*O, *sample)
    calibration = [np.broadcast_to(e, tuple(input_shape)).copy() for e in extremes]
    calibration += [np.asarray(x) for x in inputset]
    compiler = concrete_fhe.Compiler(circuit, {"x": "encrypted"})
    if configuration is None:
        configuration = concrete_fhe.Configuration(global_p_error=GLOBAL_P_ERROR)
    return compiler.compile(calibration, configuration)


def _native(fn: str, w: np.ndarray, spec: Any, batched: bool) -> Callable[[Any], Any]:
    """Concrete's ``fhe.conv`` for ``spec``, or a ValueError naming what it cannot do."""
    if spec.nd != 2:
        reason = f"it compiles only 2-d convolutions, this one is {spec.nd}-d"
    elif spec.padded:
        reason = f"it compiles no padding, got pads {spec.pads}"
    else:
        reason = ""
    if reason:
        raise ValueError(
            f"{fn}: method='native' (Concrete's fhe.conv) cannot compile this convolution: "
            f"{reason}; use method='matrix'"
        )
    oihw = np.ascontiguousarray(weight_first(canonical_weight(w, spec)))
    # oihw: (O, C/G, KH, KW)
    nhwc = spec.layout == "NHWC"

    def convolve(x: Any) -> Any:
        x = x.reshape((spec.batch, *x.shape[-3:]))  # (N, C, H, W) or (N, H, W, C)
        if nhwc:
            x = np.transpose(x, (0, 3, 1, 2))  # (N, C, H, W)
        with concrete_fhe.tag(ACCUMULATOR_TAG):
            y = concrete_fhe.conv(
                x, oihw, strides=spec.stride, dilations=spec.dilation, group=spec.groups
            )  # (N, O, H_out, W_out)
        if nhwc:
            y = np.transpose(y, (0, 2, 3, 1))  # (N, H_out, W_out, O)
        return y if batched else y.reshape(y.shape[1:])

    return convolve


def circuit_accumulator_bits(circuit: Any) -> int:
    """Widest integer Concrete assigned to the convolution's nodes of ``circuit``.

    For a circuit from :func:`compile_conv`, this is the measured width of the
    accumulators; compare it with :func:`npconv.quant.accumulator_bits`.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv import fhe
    >>> c = fhe.compile_conv(np.full((1, 1, 3), 3), (1, 8), input_bits=2)
    >>> fhe.circuit_accumulator_bits(c), c.graph.maximum_integer_bit_width()
    (5, 5)
    """
    return int(circuit.graph.maximum_integer_bit_width(tag_filter=ACCUMULATOR_TAG))
