"""npconv.onnx: every attribute combination of the ONNX convolution operators.

Each graph is built with onnx.helper and run three ways: npconv's evaluator, onnxruntime
and onnx's plain ReferenceEvaluator.  npconv's result is also compared with PyTorch given
the pads that the operator spec's text prescribes (strategies.reference_pads), so where
onnxruntime and the reference disagree, the spec decides (the tests say where).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

import npconv.onnx
from npconv._choose import candidates
from npconv._cli import main
from npconv._dispatch import convolve
from npconv._operands import prepare
from npconv._spec import ConvOptions

from conftest import assert_close, torch_conv
from strategies import Case, cases

IR_VERSION = 10  # onnx stamps newer models than onnxruntime 1.17+ reads
AUTO_PAD = {"same": "SAME_UPPER", "same_lower": "SAME_LOWER", "valid": "VALID"}


def tensor_type(dtype: Any) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def make_model(
    op_type: str, inputs: dict[str, np.ndarray | None], out_dtype: Any, opset: int, **attrs: Any
) -> onnx.ModelProto:
    """A one-node model: every array in ``inputs`` is a graph input (None: omitted)."""
    names = [name if value is not None else "" for name, value in inputs.items()]
    while names and not names[-1]:
        names.pop()  # trailing optional inputs are left out
    node = helper.make_node(op_type, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        op_type,
        [
            helper.make_tensor_value_info(name, tensor_type(v.dtype), v.shape)
            for name, v in inputs.items()
            if v is not None
        ],
        [helper.make_tensor_value_info("y", tensor_type(out_dtype), None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def run_all(model: onnx.ModelProto, inputs: dict, onnxruntime=True, reference=True):
    """(npconv, onnxruntime, reference) outputs of a one-output model (None: not run)."""
    feeds = {name: v for name, v in inputs.items() if v is not None}
    ours = npconv.onnx.run(model, feeds)["y"]
    theirs = None
    if onnxruntime:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        sess = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        (theirs,) = sess.run(None, feeds)
    plain = ReferenceEvaluator(model).run(None, feeds)[0] if reference else None
    return ours, theirs, plain


def onnxruntime_runs(attrs: dict[str, Any]) -> bool:
    """onnxruntime refuses SAME_UPPER / SAME_LOWER with a dilation > 1 (the spec allows it)."""
    same = attrs.get("auto_pad", "").startswith("SAME")
    return not (same and max(attrs.get("dilations", [1])) > 1)


def conv_attributes(case: Case, draw: st.DrawFn) -> dict[str, Any]:
    """ONNX attributes for a case; defaults are left out at random."""
    nd, kw = case.nd, case.kwargs
    padding = kw["padding"]
    attrs: dict[str, Any] = {}
    if isinstance(padding, str):
        attrs["auto_pad"] = AUTO_PAD[padding]
    elif any(case.pads) or draw(st.booleans()):
        attrs["pads"] = [lo for lo, _ in case.pads] + [hi for _, hi in case.pads]
    for name, key in (("strides", "stride"), ("dilations", "dilation")):
        if kw[key] != (1,) * nd or draw(st.booleans()):
            attrs[name] = list(kw[key])
    if kw["groups"] != 1 or draw(st.booleans()):
        attrs["group"] = kw["groups"]
    if draw(st.booleans()):
        attrs["kernel_shape"] = list(case.w.shape[2:])
    return attrs


@st.composite
def onnx_cases(draw: st.DrawFn, dtype: Any = np.float32) -> tuple[Case, dict[str, Any]]:
    case = draw(cases(dtypes=(dtype,), modes=("zeros",), max_batch=1))
    return case, conv_attributes(case, draw)


def referee(case: Case, arrays: tuple | None = None) -> np.ndarray:
    """PyTorch in float64, with the pads the spec's text gives, on (x, w, bias) or the case's."""
    kw = case.kwargs
    x, w, bias = (case.x, case.w, case.bias) if arrays is None else arrays
    return torch_conv(
        x,
        w,
        bias,
        stride=kw["stride"],
        pads=case.pads,
        dilation=kw["dilation"],
        groups=kw["groups"],
    )


# ------------------------------------------------------------------------------ Conv
@given(drawn=onnx_cases(), opset=st.sampled_from([7, 11, 22]))  # Conv-1, Conv-11, Conv-22
def test_conv_matches_spec_onnxruntime_and_reference(drawn, opset):
    case, attrs = drawn
    inputs = {"X": case.x, "W": case.w, "B": case.bias}
    model = make_model("Conv", inputs, np.float32, opset, **attrs)
    ours, theirs, reference = run_all(model, inputs, onnxruntime_runs(attrs))
    assert ours.dtype == np.float32
    assert_close(ours, referee(case).astype(np.float32))
    if theirs is not None:
        assert_close(ours, theirs)
    assert_close(ours, reference)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_conv_keeps_the_input_dtype(dtype, rng):
    x = rng.standard_normal((2, 4, 7, 6)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 2)).astype(dtype)
    inputs = {"X": x, "W": w}
    attrs = {"group": 2, "strides": [2, 1], "auto_pad": "SAME_LOWER"}
    model = make_model("Conv", inputs, dtype, 22, **attrs)
    ours = npconv.onnx.run(model, inputs)["y"]
    (reference,) = ReferenceEvaluator(model).run(None, inputs)
    assert ours.dtype == dtype
    expected = torch_conv(x, w, stride=(2, 1), pads=[(1, 1), (1, 0)], groups=2)
    assert_close(ours, expected.astype(dtype))
    assert_close(ours, reference)


def test_conv_beyond_three_spatial_dims_falls_back_to_the_reference(rng):
    x = rng.standard_normal((1, 2, 3, 3, 3, 3)).astype(np.float32)
    w = rng.standard_normal((2, 2, 2, 2, 2, 2)).astype(np.float32)
    inputs = {"X": x, "W": w}
    model = make_model("Conv", inputs, np.float32, 22)
    (reference,) = ReferenceEvaluator(model).run(None, inputs)
    # 4-d: a sum over the kernel of shifted 3-d windows, written out
    expected = np.zeros((1, 2, 2, 2, 2, 2))
    for k in np.ndindex(2, 2, 2, 2):
        window = x[(0, slice(None), *(slice(i, i + 2) for i in k))]  # (C, 2, 2, 2, 2)
        expected[0] += np.einsum("oc,c...->o...", w[(slice(None), slice(None), *k)], window)
    assert_close(npconv.onnx.run(model, inputs)["y"], expected.astype(np.float32))
    assert_close(reference, expected.astype(np.float32))
    # a Relu after it, fused into the Conv by the evaluator, applied after the fallback
    relu = onnx.ModelProto()
    relu.CopyFrom(model)
    relu.graph.node[0].output[0] = "c"
    relu.graph.node.append(helper.make_node("Relu", ["c"], ["y"]))
    (fused,) = npconv.onnx.evaluator(relu).rt_nodes_
    assert fused.relu and (expected < 0).any()
    assert_close(npconv.onnx.run(relu, inputs)["y"], np.maximum(expected, 0).astype(np.float32))


# ---------------------------------------------------------------------- ConvTranspose
def spec_window(natural: int, out: int, mode: str) -> tuple[int, int]:
    """(begin, size) from the spec's total_padding equations.

    A negative total (an output larger than the unpadded one) leaves zeros at the end: the
    adjoint of a SAME Conv whose input is ``in * stride`` long, which never reads its last
    positions (TensorFlow's reading too).
    """
    total = max(natural - out, 0)
    begin = total // 2 if mode == "SAME_UPPER" else total - total // 2
    return begin, out


@st.composite
def transpose_cases(draw: st.DrawFn):
    """x, w, bias, attributes and the (begin, size) windows the spec's text gives."""
    nd = draw(st.sampled_from([1, 2, 3]))
    small = nd == 3
    groups, cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = draw(st.tuples(*[st.integers(1, 3)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 3)] * nd))
    dilation = draw(st.tuples(*[st.integers(1, 2)] * nd))
    size = draw(st.tuples(*[st.integers(1, 2 if small else 4)] * nd))
    extra = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    natural = [
        s * (n - 1) + (k - 1) * d + 1 + p
        for n, k, s, d, p in zip(size, kernel, stride, dilation, extra)
    ]
    attrs: dict[str, Any] = {"strides": list(stride), "dilations": list(dilation)}
    if groups > 1 or draw(st.booleans()):
        attrs["group"] = groups
    if any(extra) or draw(st.booleans()):
        attrs["output_padding"] = list(extra)
    kind = draw(st.sampled_from(["pads", "output_shape", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if kind == "pads":
        crops = [
            (draw(st.integers(0, (m - 1) // 2)), draw(st.integers(0, (m - 1) // 2)))
            for m in natural
        ]
        attrs["pads"] = [lo for lo, _ in crops] + [hi for _, hi in crops]
        windows = [(lo, m - lo - hi) for m, (lo, hi) in zip(natural, crops)]
    elif kind == "output_shape":
        mode = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER"]))
        largest = [s * n + (k - 1) * d for n, k, s, d in zip(size, kernel, stride, dilation)]
        out = [draw(st.integers(max(1, m - 3), min(m + 1, t))) for m, t in zip(natural, largest)]
        attrs["output_shape"] = out
        if mode != "NOTSET":
            attrs["auto_pad"] = mode
        windows = [spec_window(m, n, mode) for m, n in zip(natural, out)]
    else:
        attrs["auto_pad"] = kind
        out = natural if kind == "VALID" else [n * s for n, s in zip(size, stride)]
        windows = [spec_window(m, n, kind) for m, n in zip(natural, out)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((1, groups * cg, *size)).astype(np.float32)
    w = rng.standard_normal((groups * cg, og, *kernel)).astype(np.float32)
    bias = rng.standard_normal(groups * og).astype(np.float32) if draw(st.booleans()) else None
    beyond = any(b + n > m for (b, n), m in zip(windows, natural))
    return x, w, bias, attrs, windows, beyond


def transpose_referee(x, w, bias, attrs, windows, beyond) -> np.ndarray:
    """PyTorch's unpadded transposed convolution, cut to the windows, zeros past its end."""
    nd = w.ndim - 2
    fn = (
        torch.nn.functional.conv_transpose1d,
        torch.nn.functional.conv_transpose2d,
        torch.nn.functional.conv_transpose3d,
    )[nd - 1]
    with torch.no_grad():
        full = fn(
            torch.from_numpy(x).double(),
            torch.from_numpy(w).double(),
            stride=attrs["strides"],
            dilation=attrs["dilations"],
            groups=attrs.get("group", 1),
        ).numpy()
    padded = np.pad(full, [(0, 0), (0, 0), *[(0, b + n) for b, n in windows]])
    y = padded[(slice(None), slice(None), *(slice(b, b + n) for b, n in windows))]
    return y if bias is None else y + bias.reshape(-1, *[1] * nd)


@given(case=transpose_cases(), opset=st.sampled_from([7, 11, 22]))  # ConvTranspose-1, -11, -22
def test_conv_transpose_matches_spec_onnxruntime_and_reference(case, opset):
    x, w, bias, attrs, _, beyond = case
    inputs = {"X": x, "W": w, "B": bias}
    model = make_model("ConvTranspose", inputs, np.float32, opset, **attrs)
    extra = attrs.get("output_padding", [0])
    # Where they part from the spec: onnxruntime refuses an output_padding >= stride (the
    # spec says "less than stride/dilation", PyTorch allows it below the dilation) and an
    # output_shape larger than the unpadded output, and for SAME returns the unpadded size
    # when that is less than in * stride.  The reference slices grouped weights by output
    # channel, cannot apply output_padding, and shifts the window when the pads go negative.
    use_ort = all(p < s for p, s in zip(extra, attrs["strides"])) and not beyond
    use_reference = attrs.get("group", 1) == 1 and not any(extra) and not beyond
    ours, theirs, reference = run_all(model, inputs, use_ort, use_reference)
    assert_close(ours, transpose_referee(*case).astype(np.float32))
    if theirs is not None:
        assert_close(ours, theirs)
    if reference is not None:
        assert_close(ours, reference)


# ---------------------------------------------------------- ConvInteger / QLinearConv
def integer_arrays(case: Case, x_dtype, w_dtype, seed: int):
    """Full-range integer x and w of the case's shapes, and zero points inside the ranges."""
    rng = np.random.default_rng(seed)
    xi, wi = np.iinfo(x_dtype), np.iinfo(w_dtype)
    x = rng.integers(xi.min, xi.max, case.x.shape, endpoint=True).astype(x_dtype)
    w = rng.integers(wi.min, wi.max, case.w.shape, endpoint=True).astype(w_dtype)
    x_zp = np.array(rng.integers(xi.min, xi.max, endpoint=True), dtype=x_dtype)
    return x, w, x_zp, rng


@given(
    drawn=onnx_cases(),
    w_dtype=st.sampled_from([np.uint8, np.int8]),
    seed=st.integers(0, 2**32 - 1),
)
def test_conv_integer_is_exact(drawn, w_dtype, seed):
    case, attrs = drawn
    x, w, x_zp, _ = integer_arrays(case, np.uint8, w_dtype, seed)
    w_zp = np.array(3, dtype=w_dtype)
    inputs = {"x": x, "w": w, "x_zero_point": x_zp, "w_zero_point": w_zp}
    model = make_model("ConvInteger", inputs, np.int32, 10, **attrs)
    ours, theirs, reference = run_all(model, inputs, onnxruntime_runs(attrs))
    expected = referee(case, (x.astype(np.int64) - x_zp, w.astype(np.int64) - w_zp, None))
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, expected)  # float64 is exact at these magnitudes
    if theirs is not None:
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, reference)


def test_conv_integer_per_channel_zero_points_and_no_zero_point(rng):
    x = rng.integers(0, 255, (1, 4, 5, 5), endpoint=True).astype(np.uint8)
    w = rng.integers(0, 255, (3, 4, 2, 3), endpoint=True).astype(np.uint8)
    w_zp = np.array([0, 100, 255], dtype=np.uint8)
    inputs = {"x": x, "w": w, "x_zero_point": None, "w_zero_point": w_zp}
    model = make_model("ConvInteger", inputs, np.int32, 10, pads=[1, 0, 0, 2])
    # onnxruntime refuses a per-channel w_zero_point ("not supported now"); the spec allows it
    ours, _, reference = run_all(model, inputs, onnxruntime=False)
    w_shifted = w.astype(np.int64) - w_zp[:, None, None, None]
    expected = torch_conv(x, w_shifted, pads=[(1, 0), (0, 2)])
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(ours, reference)


def requantize(acc: np.ndarray, multiplier: np.ndarray, y_zp: np.ndarray) -> np.ndarray:
    """The spec's output rule, written out: round half to even, add y_zp, saturate."""
    info = np.iinfo(y_zp.dtype)
    scaled = np.rint(acc * multiplier.astype(np.float64).reshape(1, -1, *[1] * (acc.ndim - 2)))
    return np.clip(scaled + int(y_zp), info.min, info.max).astype(y_zp.dtype)


@given(
    drawn=onnx_cases(),
    dtypes=st.sampled_from([(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)]),
    per_channel=st.booleans(),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_qlinear_conv(drawn, dtypes, per_channel, with_bias, seed):
    case, attrs = drawn
    x_dtype, w_dtype = dtypes
    x, w, x_zp, rng = integer_arrays(case, x_dtype, w_dtype, seed)
    m, shape = case.w.shape[0], (case.w.shape[0],) if per_channel else ()
    x_scale = np.array(rng.uniform(0.01, 0.05), np.float32)
    w_scale = rng.uniform(0.01, 0.05, shape).astype(np.float32)
    y_scale = np.array(rng.uniform(0.5, 5.0), np.float32)
    y_zp = np.array(rng.integers(-20, 20) if x_dtype == np.int8 else 128, x_dtype)
    w_zp = rng.integers(0, 10, shape).astype(w_dtype)
    bias = rng.integers(-5000, 5000, m).astype(np.int32) if with_bias else None
    inputs = {
        "x": x, "x_scale": x_scale, "x_zero_point": x_zp, "w": w, "w_scale": w_scale,
        "w_zero_point": w_zp, "y_scale": y_scale, "y_zero_point": y_zp, "B": bias,
    }  # fmt: skip
    model = make_model("QLinearConv", inputs, x_dtype, 10, **attrs)
    # onnxruntime's uint8 x int8 kernel saturates pairs of products in int16 on x86 without
    # VNNI (documented), so it is compared on uint8 x uint8 and int8 x int8 only
    use_ort = onnxruntime_runs(attrs) and x_dtype == w_dtype
    # the reference broadcasts per-channel scales as for 2-d convolutions only
    use_reference = not per_channel or case.nd == 2
    ours, theirs, reference = run_all(model, inputs, use_ort, use_reference)
    w_shifted = w.astype(np.int64) - w_zp.reshape(w_zp.shape + (1,) * (w.ndim - w_zp.ndim))
    acc = referee(case, (x.astype(np.int64) - x_zp, w_shifted, bias))
    multiplier = np.asarray(x_scale * w_scale / y_scale, np.float32)
    assert ours.dtype == x_dtype
    np.testing.assert_array_equal(ours, requantize(acc, multiplier, y_zp))
    if theirs is not None:  # it scales the accumulator in float32: may round one step apart
        assert np.abs(ours.astype(np.int64) - theirs).max(initial=0) <= 1
    if reference is not None:
        np.testing.assert_array_equal(ours, reference)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"pads": [1, 1]}, r"onnx Conv: pads must hold 2 x 2 values .* got \[1, 1\]"),
        ({"kernel_shape": [3, 2]}, r"onnx Conv: kernel_shape=\[3, 2\] does not match .* \[3, 3\]"),
        ({"auto_pad": "SAME"}, r"onnx Conv: auto_pad must be one of NOTSET, VALID, .* 'SAME'"),
        ({"group": 2}, r"onnx Conv: groups=2 must divide the input channels, but x has 3"),
    ],
)
def test_conv_attribute_errors(attrs, message):
    """Every run of a node with a bad attribute raises, not only its first (the node
    keeps its attributes and options from run to run)."""
    inputs = {"X": np.ones((1, 3, 5, 5), np.float32), "W": np.ones((2, 3, 3, 3), np.float32)}
    model = make_model("Conv", inputs, np.float32, 22, **attrs)
    with pytest.raises(ValueError, match=message):
        npconv.onnx.run(model, inputs)
    session = npconv.onnx.evaluator(model)
    for _ in range(2):
        with pytest.raises(ValueError, match=message):
            session.run(None, inputs)


def test_profile_rejects_zero_repeats():
    inputs = {"X": np.ones((1, 1, 3, 3), np.float32), "W": np.ones((1, 1, 3, 3), np.float32)}
    with pytest.raises(ValueError, match=r"npconv\.onnx\.profile: repeats must be >= 1, got 0"):
        npconv.onnx.profile(make_model("Conv", inputs, np.float32, 22), inputs, repeats=0)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"pads": [1]}, r"onnx ConvTranspose: pads must hold 2 x 1 values .* got \[1\]"),
        ({"pads": [-1, 0]}, r"onnx ConvTranspose: pads=\[-1, 0\] must be >= 0 and leave an output"),
        ({"pads": [3, 3]}, r"pads=\[3, 3\] .* the unpadded output has size \[6\]"),
        ({"kernel_shape": [2]}, r"onnx ConvTranspose: kernel_shape=\[2\] does not match .* \[3\]"),
        ({"auto_pad": "FULL"}, r"onnx ConvTranspose: auto_pad must be one of .* 'FULL'"),
    ],
)
def test_conv_transpose_attribute_errors(attrs, message):
    inputs = {"X": np.ones((1, 2, 4), np.float32), "W": np.ones((2, 1, 3), np.float32)}
    model = make_model("ConvTranspose", inputs, np.float32, 22, **attrs)
    with pytest.raises(ValueError, match=message):
        npconv.onnx.run(model, inputs)


@pytest.mark.parametrize(
    ("stride", "output_padding", "out"), [(2, 0, 50), (2, 0, 11), (1, 0, 7), (3, 1, 15)]
)
def test_conv_transpose_output_shape_no_conv_has(stride, output_padding, out):
    """An output whose Conv would not have the input's length: refused, as onnxruntime does."""
    inputs = {"X": np.ones((1, 1, 4), np.float32), "W": np.ones((1, 1, 3), np.float32)}
    attrs = dict(strides=[stride], output_padding=[output_padding], output_shape=[out])
    model = make_model("ConvTranspose", inputs, np.float32, 22, **attrs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="inconsistent"):
        session.run(None, inputs)
    with pytest.raises(ValueError, match=rf"output_shape=\[{out}\] is inconsistent with the input"):
        npconv.onnx.run(model, inputs)
    attrs["output_shape"] = [stride * 4 + 2]  # the largest: zeros past the unpadded output
    model = make_model("ConvTranspose", inputs, np.float32, 22, **attrs)
    ours, theirs, _ = run_all(model, inputs, reference=False)
    assert_close(ours, theirs)


def conv_model(x_type: int, x_shape: Any) -> onnx.ModelProto:
    """Conv of a declared input x with an initializer w."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("x", x_type, x_shape)],
        [helper.make_tensor_value_info("y", x_type, None)],
        [onnx.numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = IR_VERSION
    return model


@pytest.mark.parametrize(
    ("feeds", "error", "message"),
    [
        ({"x": np.ones((1, 1, 5, 5))}, TypeError, r"input 'x' is declared float32, got .* float64"),
        (
            {"x": np.ones((1, 5, 5), np.float32)},
            ValueError,
            r"input 'x' is declared with shape \('N', 1, 5, '\?'\) \(rank 4\), got .* \(1, 5, 5\)",
        ),
        (
            {"x": np.ones((1, 1, 6, 5), np.float32)},
            ValueError,
            r"input 'x' .* got an array of shape \(1, 1, 6, 5\)",
        ),
        ({}, ValueError, r"inputs \['x'\] are missing from the feeds"),
        (
            {"x": np.ones((1, 1, 5, 5), np.float32), "z": np.ones(1)},
            ValueError,
            r"feed 'z' is not an input of the graph; its inputs are \['x'\]",
        ),
    ],
)
def test_feeds_are_checked_against_the_graph(feeds, error, message):
    """Feeds that onnxruntime refuses are refused, naming the input; others run alike."""
    model = conv_model(onnx.TensorProto.FLOAT, ["N", 1, 5, None])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises((ValueError, ort.capi.onnxruntime_pybind11_state.InvalidArgument)):
        session.run(None, feeds)
    with pytest.raises(error, match=rf"^npconv\.onnx: {message}"):
        npconv.onnx.run(model, feeds)
    good = {"x": np.ones((3, 1, 5, 7), np.float32)}  # the symbolic and unnamed sizes are free
    assert_close(npconv.onnx.run(model, good)["y"], session.run(None, good)[0])


def test_an_empty_model_file_is_refused(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(Exception, match="No graph was found"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"npconv\.onnx: '.*empty\.onnx' has no graph"):
        npconv.onnx.evaluator(path)


# ----------------------------------------------------------- run, profile, evaluator, CLI
def small_network(rng) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Conv -> Relu -> ConvTranspose with weights as initializers; input "x" (1, 3, 8, 8)."""
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 2, 2, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ConvTranspose", ["r", "w2"], ["y"], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = IR_VERSION
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    return model, {"x": x}


def test_run_from_a_path_and_the_profile_agree_with_onnxruntime(tmp_path, rng):
    model, feeds = small_network(rng)
    path = tmp_path / "small.onnx"
    onnx.save(model, path)
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )
    assert_close(npconv.onnx.run(path, feeds)["y"], expected)
    result = npconv.onnx.profile(model, feeds, repeats=2)
    assert result.counts == {"Conv+Relu": 1, "ConvTranspose": 1}  # the Relu fused
    assert_close(result.outputs["y"], expected)
    assert set(result.seconds) == set(result.counts)
    assert "| ConvTranspose | 1 |" in result.table()
    plain = npconv.onnx.profile(model, feeds, plain=True)  # onnx's own operators
    assert plain.counts == {"Conv": 1, "Relu": 1, "ConvTranspose": 1}
    assert_close(plain.outputs["y"], expected)


def conv_chain(rng) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Conv 3x3 -> Relu -> Conv 1x1 -> Conv 3x3 stride 2, weights as initializers; the
    model, its feeds, and each Conv node's npconv options by name."""
    shapes = {"a": (8, 3, 3, 3), "b": (8, 8, 1, 1), "c": (4, 8, 3, 3)}
    weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    nodes = [
        helper.make_node("Conv", ["x", "a"], ["ya"], name="a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["ya"], ["ra"]),
        helper.make_node("Conv", ["ra", "b"], ["yb"], name="b"),
        helper.make_node("Conv", ["yb", "c"], ["y"], name="c", strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    feeds = {"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)}
    options = {"a": {"padding": 1}, "b": {}, "c": {"stride": 2}}
    return model, feeds, options


def test_tune_times_each_conv_nodes_candidates_where_it_runs(rng):
    model, feeds, options = conv_chain(rng)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    sess = npconv.onnx.evaluator(model)
    measured = sess.tune(feeds, repeats=2)
    assert list(measured) == ["a", "b", "c"]
    inputs = {"a": (1, 3, 12, 12), "b": (1, 8, 12, 12), "c": (1, 8, 12, 12)}
    convs = {op.onnx_node.name: op for op in sess.rt_nodes_ if op.op_type == "Conv"}
    for name, times in measured.items():
        x, w = np.zeros(inputs[name], np.float32), sess.rt_inits_[name]
        spec = prepare(ConvOptions.create("onnx Conv", **options[name]), x, w).spec
        expected_names = candidates(spec, np.dtype(np.float32), npconv.get_threads(), 2.0, True)
        assert set(times) == set(expected_names[:4])  # the cheapest estimates, each timed
        assert list(times.values()) == sorted(times.values())
        assert convs[name].algorithm == next(iter(times)) and convs[name].timing is None
    assert_close(sess.run(None, feeds)[0], expected)  # by the measured winners
    assert_close(sess.run(None, feeds, intermediate=True)["y"], expected)  # nothing fused


def test_tune_errors_leave_the_nodes_untuned(rng, monkeypatch):
    model, feeds, _ = conv_chain(rng)
    sess = npconv.onnx.evaluator(model)
    convs = [op for op in sess.rt_nodes_ if op.op_type == "Conv"]
    with pytest.raises(ValueError, match="tune's repeats must be an int >= 1, got 0"):
        sess.tune(feeds, repeats=0)
    with pytest.raises(ValueError, match=r"inputs \['x'\] are missing"):
        sess.tune({})
    assert all(op.algorithm == "auto" and op.timing is None for op in convs)
    calls = []

    def failing(*args, **kwargs):  # the convolutions fail from the 8th call on (3rd run)
        calls.append(args)
        if len(calls) >= 8:
            raise MemoryError("no memory left")
        return convolve(*args, **kwargs)

    monkeypatch.setattr(npconv.onnx._ops, "convolve", failing)
    with pytest.raises(MemoryError):
        sess.tune(feeds)
    assert all(op.algorithm == "auto" and op.timing is None for op in convs)


def test_evaluator_keeps_a_users_operator():
    class Relu(onnx.reference.op_run.OpRun):
        def _run(self, x):
            return (np.full_like(x, 7.0),)

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    sess = npconv.onnx.evaluator(helper.make_model(graph), new_ops=[Relu])
    assert isinstance(sess, ReferenceEvaluator)
    np.testing.assert_array_equal(sess.run(None, {"x": np.zeros(2, np.float32)})[0], [7.0, 7.0])


def test_cli_runs_a_model_and_reports_node_types(tmp_path, rng, capsys):
    model, feeds = small_network(rng)
    onnx.save(model, tmp_path / "small.onnx")
    np.save(tmp_path / "x.npy", feeds["x"])
    out = tmp_path / "out.npz"
    argv = ["onnx", str(tmp_path / "small.onnx"), "--input", f"x={tmp_path / 'x.npy'}"]
    assert main([*argv, "--output", str(out), "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| Conv+Relu | 1 |" in printed
    assert_close(np.load(out)["y"], npconv.onnx.run(model, feeds)["y"])
    assert main(["onnx", str(tmp_path / "small.onnx"), "--repeats", "1"]) == 0  # random x
    assert main([*argv, "--output", str(out), "--repeats", "1", "--tune"]) == 0
    assert "(mean of 1, Conv nodes tuned)" in capsys.readouterr().out
    assert_close(np.load(out)["y"], npconv.onnx.run(model, feeds)["y"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "x.npy"], r"npconv onnx: --input must be NAME=FILE.npy, got 'x.npy'"),
        ([], r"npconv onnx: input 'x' has a symbolic shape \[None, 3\]; pass it with --input"),
    ],
)
def test_cli_input_errors(tmp_path, argv, message):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=message):
        main(["onnx", str(tmp_path / "m.onnx"), *argv])


# ---------------------------------------------------------------------------- MaxPool
@given(
    drawn=onnx_cases(),
    dtype=st.sampled_from([np.float32, np.int8]),
    opset=st.sampled_from([12, 22]),  # MaxPool-12 (dilations, int8), MaxPool-22
)
def test_max_pool_matches_onnxruntime_and_reference(drawn, dtype, opset):
    case, attrs = drawn
    attrs.pop("group", None)
    attrs["kernel_shape"] = list(case.w.shape[2:])
    x = (case.x * 40).astype(dtype)
    # the definition: the maximum over the padded windows, pads at -inf (torch's max_pool)
    pool = (torch.nn.functional.max_pool1d, torch.nn.functional.max_pool2d,
            torch.nn.functional.max_pool3d)[case.nd - 1]  # fmt: skip
    flat = [p for pair in reversed(case.pads) for p in pair]
    padded = torch.nn.functional.pad(torch.from_numpy(x.astype(np.float64)), flat,
                                     value=-np.inf)  # fmt: skip
    expected = pool(padded, case.w.shape[2:], stride=attrs.get("strides", 1),
                    dilation=attrs.get("dilations", 1)).numpy()  # fmt: skip
    assume(np.isfinite(expected).all())  # a window wholly in the pads has no maximum
    # onnxruntime refuses pads as large as the kernel, and SAME where a stride exceeds the
    # kernel (the spec's pooling pad formula goes negative there; npconv pads 0, as for
    # Conv); the reference breaks on SAME (undilated pads, 3-d shapes), on such pads, on
    # any pads in 1-d, and pads integers with NaN
    small_pads = all(max(p) < k for p, k in zip(case.pads, case.w.shape[2:]))
    same = "auto_pad" in attrs and attrs["auto_pad"] != "VALID"
    extents = [(k - 1) * d + 1 for k, d in zip(case.w.shape[2:], case.kwargs["dilation"])]
    negative_same = same and any(s > e for s, e in zip(case.kwargs["stride"], extents))
    padded_1d = case.nd == 1 and any(map(any, case.pads))
    model = make_model("MaxPool", {"X": x}, dtype, opset, **attrs)
    use_ort = onnxruntime_runs(attrs) and small_pads and not negative_same
    use_reference = small_pads and not same and not padded_1d and dtype != np.int8
    ours, theirs, reference = run_all(model, {"X": x}, use_ort, use_reference)
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, expected.astype(dtype))
    if theirs is not None:
        np.testing.assert_array_equal(ours, theirs)
    if reference is not None:
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize(
    ("shape", "attrs", "dtype"),
    [
        ((2, 3, 11, 12), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
         np.float32),
        ((1, 2, 9, 7), {"kernel_shape": [3, 2], "dilations": [2, 3], "pads": [2, 0, 1, 2]},
         np.float64),
        ((2, 4, 13), {"kernel_shape": [4], "strides": [3], "pads": [3, 1]}, np.int16),
        ((1, 2, 8, 8), {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}, np.uint8),
        ((1, 3, 10, 9), {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [0, 1, 1, 0]},
         np.int8),
    ],
)  # fmt: skip
def test_max_pool_paths_match_torch_with_nan(rng, monkeypatch, compiled, shape, attrs, dtype):
    """Both ways of computing MaxPool (the compiled kernel where numba is installed, the
    NumPy passes otherwise: "compiled" runs those too where numba is missing) against
    PyTorch's max pooling of the input padded with -inf; floats carry NaNs, which win
    their windows as in PyTorch and np.maximum."""
    from npconv.onnx import _ops

    if not compiled:
        monkeypatch.setattr(_ops, "unavailable", lambda: "numba is not installed")
    x = (rng.standard_normal(shape) * 50).astype(dtype)
    if x.dtype.kind == "f":
        x.reshape(-1)[rng.choice(x.size, 3, replace=False)] = np.nan
    before = x.copy()
    nd = len(shape) - 2
    kernel, dilation = attrs["kernel_shape"], attrs.get("dilations", [1] * nd)
    stride = attrs.get("strides", [1] * nd)
    pads = attrs.get("pads")
    if pads is None:  # SAME_UPPER: the output is ceil(in / stride), the odd pad at the end
        totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
                  for n, s, k, d in zip(shape[2:], stride, kernel, dilation)]  # fmt: skip
        pads = [t // 2 for t in totals] + [t - t // 2 for t in totals]
    flat = [p for axis in reversed(range(nd)) for p in (pads[axis], pads[axis + nd])]
    padded = torch.nn.functional.pad(torch.from_numpy(x.astype(np.float64)), flat,
                                     value=-np.inf)  # fmt: skip
    pool = (torch.nn.functional.max_pool1d, torch.nn.functional.max_pool2d)[nd - 1]
    expected = pool(padded, kernel, stride=stride, dilation=dilation).numpy()
    ours = npconv.onnx.run(make_model("MaxPool", {"X": x}, dtype, 22, **attrs), {"X": x})["y"]
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, expected.astype(dtype))
    if x.dtype.kind == "f":
        assert np.isnan(ours).any()
    np.testing.assert_array_equal(x, before)


def test_max_pool_with_indices_or_ceil_mode_is_the_references(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    for outputs, attrs in ((["y", "i"], {}), (["y"], {"ceil_mode": 1})):
        node = helper.make_node("MaxPool", ["x"], outputs, kernel_shape=[2, 2], strides=[2, 2],
                                **attrs)  # fmt: skip
        graph = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
            [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in outputs],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
        ours = npconv.onnx.evaluator(model).run(None, {"x": x})
        theirs = ReferenceEvaluator(model).run(None, {"x": x})
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


def test_subgraphs_use_npconvs_operators(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)

    def branch(name: str, pads: list[int]) -> onnx.GraphProto:
        conv = helper.make_node("Conv", ["x", "w"], [f"{name}_y"], pads=pads)
        out = helper.make_tensor_value_info(f"{name}_y", onnx.TensorProto.FLOAT, None)
        return helper.make_graph([conv], name, [], [out])

    node = helper.make_node(
        "If", ["c"], ["y"], then_branch=branch("then", [1] * 4), else_branch=branch("else", [0] * 4)
    )
    inputs = [
        helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []),
        helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape),
        helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, w.shape),
    ]
    output = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([node], "g", inputs, [output]))
    sess = npconv.onnx.evaluator(model)
    assert isinstance(sess.rt_nodes_[0].then_branch.rt_nodes_[0], npconv.onnx._ops.Conv)
    for flag, pads in ((True, [(1, 1)] * 2), (False, None)):
        (y,) = sess.run(None, {"c": np.array(flag), "x": x, "w": w})
        assert_close(y, torch_conv(x, w, pads=pads).astype(np.float32))


def test_relu_and_add_overwrite_only_values_no_one_else_reads(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    f32 = onnx.TensorProto.FLOAT
    then_out = helper.make_tensor_value_info("g", f32, None)
    then_branch = helper.make_graph([helper.make_node("Relu", ["f"], ["g"])], "t", [], [then_out])
    else_branch = helper.make_graph([helper.make_node("Neg", ["f"], ["g"])], "e", [], [then_out])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),  # read twice: kept
        helper.make_node("Relu", ["c"], ["a"]),  # a fresh array, read once
        helper.make_node("Add", ["c", "c"], ["s"]),
        helper.make_node("Conv", ["x", "w"], ["d"], pads=[1] * 4),  # a graph output: kept
        helper.make_node("Relu", ["d"], ["e"]),  # a fresh array, read once
        helper.make_node("Add", ["a", "e"], ["t"]),  # may overwrite a or e
        helper.make_node("Relu", ["t"], ["u"]),  # may overwrite t
        helper.make_node("Conv", ["x", "w"], ["f"], pads=[1] * 4),  # read in a subgraph
        helper.make_node("Relu", ["f"], ["h"]),
        helper.make_node("If", ["cond"], ["i"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Relu", ["x"], ["r"]),  # a graph input: kept
    ]
    inputs = [helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])] + [
        helper.make_tensor_value_info(n, f32, v.shape) for n, v in (("x", x), ("w", w))
    ]
    outputs = [helper.make_tensor_value_info(n, f32, None) for n in "sduhir"]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs))
    fused, unfused = npconv.onnx.evaluator(model), npconv.onnx.evaluator(model, fuse=False)
    plans = [
        {op.onnx_node.output[0]: op.overwrite for op in s._overwriting} for s in (fused, unfused)
    ]
    assert plans == [{"u": (0, 1)}, {"t": (0, 1), "u": True}]  # fused: the Add writes u
    reference = ReferenceEvaluator(model)
    for sess in (fused, unfused):
        feeds = {"cond": np.array(True), "x": x, "w": w}
        before = {name: v.copy() for name, v in feeds.items()}
        for flag in (True, False):
            feeds["cond"] = np.array(flag)
            for ours, theirs in zip(sess.run(None, feeds), reference.run(None, feeds)):
                assert_close(ours, theirs)
        for name, value in feeds.items():
            np.testing.assert_array_equal(value, before[name] if name != "cond" else False)
        ours = sess.run(None, feeds, intermediate=True)  # every value the node's own
        theirs = reference.run(None, feeds, intermediate=True)
        assert set(ours) == set(theirs)
        for name in theirs:
            if name:
                assert_close(np.asarray(ours[name]), np.asarray(theirs[name]))
    assert npconv.onnx.evaluator(model, reuse_buffers=False)._overwriting == []


def test_a_run_drops_each_value_after_its_last_reader(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    f32 = onnx.TensorProto.FLOAT
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["a"]),
        helper.make_node("Add", ["a", "c"], ["s"]),
        helper.make_node("Neg", ["x"], ["n"]),  # read by no node, not an output
        helper.make_node("Relu", ["s"], ["r"]),
    ]
    inputs = [helper.make_tensor_value_info(n, f32, v.shape) for n, v in (("x", x), ("w", w))]
    outputs = [helper.make_tensor_value_info(n, f32, None) for n in "sr"]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs))
    sess = npconv.onnx.evaluator(model)
    assert [(op.op_type, dropped) for op, _, _, dropped in sess._steps] == [
        ("Conv", ("w",)),
        ("Relu", ()),
        ("Add", ("a", "c")),
        ("Neg", ("x", "n")),
        ("Relu", ()),
    ]
    feeds = {"x": x, "w": w}
    reference = ReferenceEvaluator(model)
    for ours, theirs in zip(sess.run(None, feeds), reference.run(None, feeds)):
        assert_close(ours, theirs)
    # a value that is not a graph output is asked for: the reference's loop runs
    assert_close(sess.run(["a"], feeds)[0], reference.run(["a"], feeds)[0])
    np.testing.assert_array_equal(sess.run(["s", "n"], feeds)[1], -x)


def test_a_node_reading_what_nothing_gives_is_named():
    f32 = onnx.TensorProto.FLOAT
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", f32, None)],
        [helper.make_tensor_value_info("y", f32, None)],
    )
    sess = npconv.onnx.evaluator(helper.make_model(graph))
    with pytest.raises(ValueError, match="Add node '' reads 'b', which no input"):
        sess.run(None, {"x": np.ones(3, np.float32)})


def test_models_with_subgraphs_or_logging_run_by_the_references_loop():
    f32 = onnx.TensorProto.FLOAT
    branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["g"])],
        "b",
        [],
        [helper.make_tensor_value_info("g", f32, None)],
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", f32, None),
        ],
        [helper.make_tensor_value_info("y", f32, None)],
    )
    assert npconv.onnx.evaluator(helper.make_model(graph))._steps is None
    model = make_model("Relu", {"x": np.ones(3, np.float32)}, np.float32, 17)
    assert npconv.onnx.evaluator(model)._steps is not None
    assert npconv.onnx.evaluator(model, verbose=1)._steps is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.int32])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 40, 41), (1, 2048, 7, 7), (4, 8192)])
def test_relu_matches_the_reference(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 50).astype(dtype)
    if x.dtype.kind == "f":  # NaN stays NaN, -inf becomes 0, -0.0 stays a zero
        x.flat[:4] = [np.nan, -np.inf, np.inf, -0.0]
    nodes = [
        helper.make_node("Relu", ["x"], ["y"]),  # a graph input: never overwritten
        helper.make_node("Transpose", ["x"], ["t"], perm=list(range(len(shape)))[::-1]),
        helper.make_node("Relu", ["t"], ["z"]),  # a non-contiguous view
        helper.make_node("Add", ["x", "x"], ["s"]),
        helper.make_node("Relu", ["s"], ["r"]),  # applied by the Add, over s
    ]
    tt = tensor_type(dtype)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", tt, shape)],
        [helper.make_tensor_value_info(n, tt, None) for n in "yzr"],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    before = x.copy()
    sess = npconv.onnx.evaluator(model)
    assert [op.onnx_node.op_type for op in sess.rt_nodes_ if getattr(op, "relu", False)] == ["Add"]
    ours = sess.run(None, {"x": x})
    theirs = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(x, before)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)  # NaN where NaN


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (1, 256, 14, 14)])
@pytest.mark.parametrize("op, inputs", [("Add", "xz"), ("Sum", "xz"), ("Sum", "xzv")])
def test_add_and_relu_over_a_fresh_sum_match_the_reference(rng, dtype, shape, op, inputs):
    """An Add or Sum of Conv results (fresh arrays, read by it alone) writes the sum, and
    the Relu fused into it, over one of them (of two, one compiled pass where numba is
    installed): the reference's values, NaN where NaN, and the graph's inputs untouched."""
    feeds = {name: rng.standard_normal(shape).astype(dtype) for name in inputs}
    feeds["x"].flat[:4] = [np.nan, -np.inf, np.inf, 1]  # NaN, -inf (-> 0), and inf - inf
    feeds["z"].flat[:4] = [1, 1, -np.inf, np.nan]
    eye = np.eye(shape[1], dtype=dtype).reshape(shape[1], shape[1], 1, 1)  # y = x exactly
    nodes = [helper.make_node("Conv", [name, "w"], [f"c{name}"]) for name in inputs]
    nodes.append(helper.make_node(op, [f"c{name}" for name in inputs], ["s"]))
    nodes.append(helper.make_node("Relu", ["s"], ["r"]))
    tt = tensor_type(dtype)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, tt, shape) for n in inputs],
        [helper.make_tensor_value_info("r", tt, None)], [onnx.numpy_helper.from_array(eye, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    before = {name: value.copy() for name, value in feeds.items()}
    sess = npconv.onnx.evaluator(model)
    (summed,) = [node for node in sess.rt_nodes_ if node.onnx_node.op_type == op]
    assert summed.relu and summed.overwrite  # the fused Relu, over an input
    assert "Relu" not in [node.onnx_node.op_type for node in sess.rt_nodes_]
    (ours,) = sess.run(None, feeds)
    (theirs,) = ReferenceEvaluator(model).run(None, feeds)
    for name, value in feeds.items():
        np.testing.assert_array_equal(value, before[name])
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)  # NaN where NaN
    assert np.isnan(ours.flat[[0, 2, 3]]).all() and ours.flat[1] == 0
    assert (ours == 0).mean() > 0.2


# ------------------------------------------------------------------------ AveragePool
def torch_average_pool(case: Case, x: np.ndarray, include_pad: bool) -> np.ndarray:
    """Window sums of the zero-padded input over the window counts (PyTorch, float64)."""
    kernel = case.w.shape[2:]
    flat = [p for pair in reversed(case.pads) for p in pair]
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d,
            torch.nn.functional.conv3d)[case.nd - 1]  # fmt: skip

    def window_sums(a: np.ndarray) -> np.ndarray:
        t = torch.nn.functional.pad(torch.from_numpy(a), flat)
        ones = torch.ones((a.shape[1], 1, *kernel), dtype=t.dtype)
        kw = {"stride": case.kwargs["stride"], "dilation": case.kwargs["dilation"]}
        return conv(t, ones, groups=a.shape[1], **kw).numpy()

    inside = window_sums(np.ones((1, 1, *x.shape[2:])))
    with np.errstate(invalid="ignore"):  # a window wholly in the pads: NaN
        return window_sums(x) / (np.prod(kernel) if include_pad else inside)


@given(drawn=onnx_cases(), include_pad=st.booleans(), opset=st.sampled_from([11, 19]))
def test_average_pool_matches_torch_and_onnxruntime(drawn, include_pad, opset):
    case, attrs = drawn
    attrs.pop("group", None)
    if max(case.kwargs["dilation"]) > 1:
        opset = 19  # dilations came with AveragePool-19
    elif opset < 19:
        attrs.pop("dilations", None)
    attrs["kernel_shape"] = list(case.w.shape[2:])
    attrs["count_include_pad"] = int(include_pad)
    x = case.x
    expected = torch_average_pool(case, x.astype(np.float64), include_pad)
    assume(np.isfinite(expected).all())  # a window wholly in the pads has no elements
    model = make_model("AveragePool", {"X": x}, np.float32, opset, **attrs)
    small_pads = all(max(p) < k for p, k in zip(case.pads, case.w.shape[2:]))
    extents = [(k - 1) * d + 1 for k, d in zip(case.w.shape[2:], case.kwargs["dilation"])]
    same = "auto_pad" in attrs and attrs["auto_pad"] != "VALID"
    negative_same = same and any(s > e for s, e in zip(case.kwargs["stride"], extents))
    use_ort = onnxruntime_runs(attrs) and small_pads and not negative_same
    ours, theirs, _ = run_all(model, {"X": x}, use_ort, reference=False)
    assert ours.dtype == np.float32
    assert_close(ours, expected.astype(np.float32))
    if theirs is not None:
        assert_close(ours, theirs)


# -------------------------------------------------------------- BatchNormalization, Sum
def batch_norm_model(opset: int, c: int, **attrs: Any) -> onnx.ModelProto:
    names = ["x", "scale", "bias", "mean", "var"]
    node = helper.make_node("BatchNormalization", names, ["y"], **attrs)
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "bn", [helper.make_tensor_value_info(n, f32, None) for n in names],
        [helper.make_tensor_value_info("y", f32, None)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


@pytest.mark.parametrize("opset", [9, 14, 15])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (1, 4, 6, 7), (2, 2, 3, 4, 5)])
def test_batch_normalization_is_the_specs_inference(opset, shape, rng):
    c = shape[1]
    feeds = {
        "x": rng.standard_normal(shape).astype(np.float32),
        "scale": rng.standard_normal(c).astype(np.float32),
        "bias": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.5, 2, c).astype(np.float32),
    }
    attrs = {"epsilon": 1e-3} if opset < 14 else {"epsilon": 1e-3, "training_mode": 0}
    model = batch_norm_model(opset, c, **attrs)
    per_channel = (-1, *(1,) * (len(shape) - 2))
    f64 = {k: v.astype(np.float64) for k, v in feeds.items()}
    expected = (f64["x"] - f64["mean"].reshape(per_channel)) / np.sqrt(
        f64["var"].reshape(per_channel) + 1e-3
    ) * f64["scale"].reshape(per_channel) + f64["bias"].reshape(per_channel)
    # onnx's reference normalizes with the batch's statistics when BatchNormalization-9
    # has a momentum (its schema default): the spec and onnxruntime use the running ones
    ours, theirs, reference = run_all(model, feeds, reference=opset >= 14)
    assert ours.dtype == np.float32
    assert_close(ours, expected.astype(np.float32))
    assert_close(ours, theirs)
    if reference is not None:
        assert_close(ours, reference)


def test_batch_normalization_in_training_mode_is_the_references(rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    feeds = {"x": x, "scale": np.ones(3, np.float32), "bias": np.zeros(3, np.float32),
             "mean": np.zeros(3, np.float32), "var": np.ones(3, np.float32)}  # fmt: skip
    model = batch_norm_model(15, 3, training_mode=1)
    ours = npconv.onnx.run(model, feeds)["y"]
    np.testing.assert_array_equal(ours, ReferenceEvaluator(model).run(None, feeds)[0])
    assert_close(ours.mean(axis=(0, 2)), np.zeros(3, np.float32))  # the batch's statistics


def test_sum_and_batch_norm_overwrite_only_private_values(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    stats = [rng.uniform(0.5, 2, 2).astype(np.float32) for _ in range(4)]
    inits = [onnx.numpy_helper.from_array(v, n) for v, n in zip(stats, ["s", "b", "m", "v"])]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),  # over c
        helper.make_node("Conv", ["x", "w"], ["d"], pads=[1] * 4),
        helper.make_node("Sum", ["n", "d", "x"], ["t"]),  # over n or d, x broadcast in
        helper.make_node("Sum", ["t", "t"], ["u"]),  # t read twice: a fresh array
        helper.make_node("Relu", ["u"], ["y"]),  # over u, or fused into the Sum
    ]
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, f32, None) for n in "xw"],
        [helper.make_tensor_value_info("y", f32, None)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = IR_VERSION
    unfused = npconv.onnx.evaluator(model, fuse=False)
    planned = {op.onnx_node.output[0]: op.overwrite for op in unfused._overwriting}
    assert planned == {"n": True, "t": (0, 1), "y": True}
    sess = npconv.onnx.evaluator(model)  # the Relu applied by the Sum, to its fresh sum
    planned = {op.onnx_node.output[0]: op.overwrite for op in sess._overwriting}
    assert planned == {"n": True, "t": (0, 1)}
    (last,) = [op for op in sess.rt_nodes_ if op.onnx_node.output[0] == "y"]
    assert last.onnx_node.op_type == "Sum" and last.relu
    assert_close(unfused.run(None, {"x": x, "w": w})[0], sess.run(None, {"x": x, "w": w})[0])
    ours, theirs, reference = run_all(model, {"x": x, "w": w})
    assert_close(ours, theirs)
    assert_close(ours, reference)


@pytest.mark.parametrize("opset", [9, 15])
@pytest.mark.parametrize(("groups", "with_bias"), [(1, True), (2, False)])
def test_batch_norm_folds_into_the_conv_before_it(opset, groups, with_bias, rng):
    c, o = 4, 6
    x = rng.standard_normal((2, c, 7, 7)).astype(np.float32)
    arrays = {
        "w": rng.standard_normal((o, c // groups, 3, 3)),
        "b": rng.standard_normal(o),
        "s": rng.standard_normal(o),
        "beta": rng.standard_normal(o),
        "m": rng.standard_normal(o),
        "v": rng.uniform(0.5, 2, o),
    }
    inits = [onnx.numpy_helper.from_array(v.astype(np.float32), n) for n, v in arrays.items()]
    stats = ["s", "beta", "m", "v"]
    conv = dict(pads=[1] * 4, group=groups)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"] if with_bias else ["x", "w"], ["c"], **conv),
        helper.make_node("BatchNormalization", ["c", *stats], ["n"], epsilon=1e-3),  # folded
        helper.make_node("Relu", ["n"], ["y"]),
        helper.make_node("Conv", ["x", "w"], ["d"], **conv),
        helper.make_node("BatchNormalization", ["d", *stats], ["e"]),  # d is read twice
        helper.make_node("Add", ["d", "e"], ["z"]),
    ]
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", f32, None)],
        [helper.make_tensor_value_info(n, f32, None) for n in "yz"], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    theirs = ort.InferenceSession(model.SerializeToString(), options).run(None, {"x": x})
    for fuse, norms in ((False, 2), (True, 1)):
        sess = npconv.onnx.evaluator(model, fuse=fuse)
        assert [op.op_type for op in sess.rt_nodes_].count("BatchNormalization") == norms
        assert [op.op_type for op in sess.rt_nodes_].count("Relu") == (0 if fuse else 1)  # fused
        for ours, expected in zip(sess.run(None, {"x": x}), theirs):
            assert_close(ours, expected)
    values = sess.run(None, {"x": x}, intermediate=True)  # the nodes as the model has them
    assert_close(values["c"], ReferenceEvaluator(model).run(["c"], {"x": x})[0])
    assert [op.op_type for op in sess.rt_nodes_].count("BatchNormalization") == 1


# ------------------------------------------------------------------- constant folding
def test_constant_inputs_are_folded_once(rng):
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    shape = onnx.numpy_helper.from_array(np.array([4, 3, 3, 3]), "shape")
    fill = helper.make_tensor("fill", onnx.TensorProto.FLOAT, [1], [0.25])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["w"], value=fill),  # folded
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("RandomUniformLike", ["w"], ["r"], seed=1.0),  # never folded
        helper.make_node("ReduceSum", ["r"], ["s"], keepdims=0),
    ]
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", f32, None)],
        [helper.make_tensor_value_info(n, f32, None) for n in ("c", "w", "s")], [shape],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = npconv.onnx.evaluator(model)
    assert [op.op_type for op in sess.rt_nodes_] == ["Conv", "RandomUniformLike", "ReduceSum"]
    c, w, _ = sess.run(None, {"x": x})
    np.testing.assert_array_equal(w, np.full((4, 3, 3, 3), 0.25, np.float32))
    assert not w.flags.writeable  # shared by every run
    assert_close(c, ReferenceEvaluator(model).run(["c"], {"x": x})[0])
    kept = npconv.onnx.evaluator(model, fold_constants=False)
    assert kept.rt_nodes_[0].op_type == "ConstantOfShape"


# ------------------------------------------------------------------ Softmax, LogSoftmax
SOFTMAX_CASES = [((1, 10, 1, 1), None), ((2, 3, 4), None), ((2, 3, 4), 0), ((2, 3, 4), -2),
                 ((5,), -1)]  # fmt: skip


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [9, 11, 13])
@pytest.mark.parametrize(("shape", "axis"), SOFTMAX_CASES)
def test_softmax_axis_follows_the_opset(op_type, opset, shape, axis, rng):
    x = rng.standard_normal(shape).astype(np.float32) * 3
    attrs = {} if axis is None else {"axis": axis}
    model = make_model(op_type, {"X": x}, np.float32, opset, **attrs)
    # opsets 1-12 normalize the rows of the input flattened into 2-d at axis (default 1),
    # 13+ along axis (default -1); onnx's reference applies the latter to every opset
    ours, theirs, _ = run_all(model, {"X": x}, reference=False)
    assert_close(ours, theirs)
    x64, ax = x.astype(np.float64), (1 if opset < 13 else -1) if axis is None else axis
    rows = x64.reshape(int(np.prod(shape[: ax % x.ndim])), -1) if opset < 13 else x64
    keep = 1 if opset < 13 else ax
    log = rows - rows.max(axis=keep, keepdims=True)
    log -= np.log(np.exp(log).sum(axis=keep, keepdims=True))
    expected = (log if op_type == "LogSoftmax" else np.exp(log)).reshape(shape)
    assert_close(ours, expected.astype(np.float32))


def test_softmax_axis_out_of_range():
    x = np.ones(5, np.float32)  # a 1-d input has no axis 1, the default before opset 13
    with pytest.raises(ValueError, match=r"onnx Softmax: axis 1 is out of range for a 1-d"):
        npconv.onnx.run(make_model("Softmax", {"X": x}, np.float32, 11), {"X": x})


LIGHT_MODELS = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(LIGHT_MODELS) if f.endswith(".onnx")))
def test_onnx_backend_test_models_match_onnxruntime(name, rng):
    # the CNNs onnx ships for its backend tests (AlexNet, DenseNet, Inception, ResNet-50,
    # ShuffleNet, SqueezeNet, VGG, ZFNet), with constant weights: they check that every
    # operator of real exports runs, with the spec's semantics
    model = onnx.load(os.path.join(LIGHT_MODELS, name))
    constants = {t.name for t in model.graph.initializer}
    (x_info,) = [i for i in model.graph.input if i.name not in constants]
    shape = [d.dim_value for d in x_info.type.tensor_type.shape.dim]
    feeds = {x_info.name: rng.standard_normal(shape).astype(np.float32)}
    outputs = [model.graph.output[0].name]
    last = next(n for n in model.graph.node if outputs[0] in n.output)
    if last.op_type == "Softmax":  # the constant weights make logits of ~1e9 that differ
        outputs.append(last.input[0])  # by rounding, which a softmax turns into 0 or 1
        model.graph.output.append(
            helper.make_tensor_value_info(last.input[0], onnx.TensorProto.FLOAT, None)
        )
    if any(n.op_type == "LRN" for n in model.graph.node):
        # onnx's reference LRN (which npconv's evaluator keeps) parts from onnxruntime's
        # by about 1% on these activations: the plain reference is the referee here
        theirs = ReferenceEvaluator(model).run(outputs, feeds)
    else:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only (some keep unused initializers)
        sess = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        theirs = sess.run(outputs, feeds)
    ours = list(npconv.onnx.run(model, feeds, outputs).values())
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert_close(ours[-1], theirs[-1])  # the output, or the logits before a last softmax
