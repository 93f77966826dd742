"""quantize / dequantize / quantized_conv against ONNX Runtime and exact integer math."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

from npconv import quant

from conftest import torch_conv


def onnx_model(op: str, inputs: dict[str, np.ndarray], out, **attributes) -> onnx.ModelProto:
    """A one-node model with output type ``out``; inputs after the first two are constants."""
    names = list(inputs)
    initializers = [
        onnx.numpy_helper.from_array(np.asarray(v), name) for name, v in list(inputs.items())[2:]
    ]
    feeds = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(inputs[n].dtype), None)
        for n in names[:2]
    ]
    out = helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(np.dtype(out)), None)
    node = helper.make_node(op, names, ["y"], **attributes)
    graph = helper.make_graph([node], op, feeds, [out], initializer=initializers)
    opset = [helper.make_opsetid("", 21)]
    return helper.make_model(graph, opset_imports=opset, ir_version=10)


def run_ort(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: inputs[n] for n in names})[0]


def run_reference(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> np.ndarray:
    names = [i.name for i in model.graph.input]
    return ReferenceEvaluator(model).run(None, {n: inputs[n] for n in names})[0]


# ------------------------------------------------------------------ quantize / dequantize


@given(
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.sampled_from(quant._quantize.SCHEMES),
    st.sampled_from([None, 0, 1]),
)
def test_quantize_matches_onnx_quantize_linear(seed, signed, scheme, axis) -> None:
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((3, 4, 5)) * rng.uniform(0.1, 10)).astype(np.float32)
    q, scale, zero = quant.quantize(a, 8, signed=signed, scheme=scheme, per_channel_axis=axis)
    assert q.dtype == (np.int8 if signed else np.uint8)
    inputs = {"a": a, "scale": scale, "zero": zero}
    extra = {} if axis is None else {"axis": axis}
    expected = run_ort(onnx_model("QuantizeLinear", inputs, q.dtype, **extra), inputs)
    np.testing.assert_array_equal(q, expected)
    back = quant.dequantize(q, scale, zero, axis=axis)
    inputs = {"q": q, "scale": scale, "zero": zero}
    np.testing.assert_array_equal(
        back, run_ort(onnx_model("DequantizeLinear", inputs, np.float32, **extra), inputs)
    )


@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 12),
    st.booleans(),
    st.sampled_from(["symmetric", "affine"]),
)
def test_quantize_round_trip_error_is_half_a_step(seed, bits, signed, scheme) -> None:
    a = np.random.default_rng(seed).standard_normal(50)
    q, scale, zero = quant.quantize(a, bits, signed=signed, scheme=scheme)
    lo, hi = quant.integer_range(bits, signed)
    assert lo <= q.min() and q.max() <= hi
    err = np.abs(quant.dequantize(q, scale, zero) - a)
    assert err.max() <= scale / 2 * (1 + 1e-12)
    if scheme == "symmetric" and signed:
        np.testing.assert_array_equal(quant.quantize(-a, bits)[0], -q)


def test_quantize_zeros_and_float64() -> None:
    q, scale, zero = quant.quantize(np.zeros((2, 3)), 4, per_channel_axis=-1)
    np.testing.assert_array_equal(q, 0)
    np.testing.assert_array_equal(scale, [1.0, 1.0, 1.0])
    assert scale.dtype == np.float64 and zero.dtype == np.int8


# ------------------------------------------------------------------ quantized_conv


@st.composite
def quantized_layers(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups, cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))  # ONNX: h0, w0, h1, w1
    stride, dilation = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w_size = (
        draw(st.integers((kh - 1) * dilation + 1, 7)),
        draw(st.integers((kw - 1) * dilation + 1, 7)),
    )
    x = rng.integers(0, 256, size=(draw(st.integers(1, 2)), groups * cg, h, w_size), dtype=np.uint8)
    w_signed = draw(st.booleans())
    w = rng.integers(
        -128 if w_signed else 0, 128 if w_signed else 256, size=(groups * og, cg, kh, kw)
    )
    w = w.astype(np.int8 if w_signed else np.uint8)
    per_channel = draw(st.booleans())
    zw = rng.integers(-5 if w_signed else 0, 6, size=groups * og if per_channel else ()).astype(
        w.dtype
    )
    zx = np.uint8(rng.integers(0, 256))
    options = dict(
        stride=stride,
        padding=[(pads[0], pads[2]), (pads[1], pads[3])],
        dilation=dilation,
        groups=groups,
    )
    onnx_attributes = dict(strides=[stride] * 2, pads=pads, dilations=[dilation] * 2, group=groups)
    return x, w, zx, zw, options, onnx_attributes


@given(quantized_layers())
def test_quantized_conv_is_conv_integer(layer) -> None:
    x, w, zx, zw, options, attributes = layer
    y = quant.quantized_conv(x, w, x_zero_point=zx, w_zero_point=zw, **options)
    shift = zw.reshape(-1, 1, 1, 1) if zw.ndim else zw
    exact = torch_conv(
        x.astype(np.int64) - int(zx),
        w.astype(np.int64) - shift.astype(np.int64),
        stride=options["stride"],
        pads=options["padding"],
        dilation=options["dilation"],
        groups=options["groups"],
    )  # float64, exact for these magnitudes
    np.testing.assert_array_equal(y, exact.astype(np.int64))
    inputs = {"x": x, "w": w, "zx": np.asarray(zx), "zw": np.asarray(zw)}
    expected = run_reference(onnx_model("ConvInteger", inputs, np.int32, **attributes), inputs)
    np.testing.assert_array_equal(y, expected)
    if w.dtype == np.uint8 and zw.ndim == 0:  # the combination ONNX Runtime implements
        np.testing.assert_array_equal(
            y, run_ort(onnx_model("ConvInteger", inputs, np.int32, **attributes), inputs)
        )


@given(quantized_layers(), st.integers(0, 2**32 - 1))
def test_quantized_conv_is_qlinear_conv(layer, seed) -> None:
    x, w, zx, zw, options, attributes = layer
    rng = np.random.default_rng(seed)
    # 7-bit weights: ONNX Runtime's x86 u8s8 kernels add pairs of products in saturating
    # int16, which is exact only while 2 * 255 * |w| < 2**15.
    w = (w.astype(np.int16) // (2 if w.dtype == np.int8 else 4)).astype(np.int8)
    zw = np.zeros(zw.shape, dtype=np.int8)  # ONNX Runtime wants symmetric int8 weights
    sx = np.float32(rng.uniform(0.001, 0.1))
    sw = rng.uniform(0.001, 0.1, size=zw.shape).astype(np.float32)
    sy = np.float32(rng.uniform(0.5, 5))
    zy = np.uint8(rng.integers(0, 256))
    bias = rng.integers(-1000, 1000, size=w.shape[0]).astype(np.int32)
    y = quant.quantized_conv(
        x,
        w,
        bias,
        x_zero_point=zx,
        w_zero_point=zw,
        x_scale=sx,
        w_scale=sw,
        y_scale=sy,
        y_zero_point=zy,
        **options,
    )
    assert y.dtype == np.uint8
    inputs = {
        "x": x,
        "sx": np.asarray(sx),
        "zx": np.asarray(zx),
        "w": w,
        "sw": np.asarray(sw),
        "zw": np.asarray(zw),
        "sy": np.asarray(sy),
        "zy": np.asarray(zy),
        "b": bias,
    }
    names = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"]
    model = onnx_model("QLinearConv", {n: inputs[n] for n in names}, np.uint8, **attributes)
    np.testing.assert_array_equal(y, run_reference(model, inputs))
    np.testing.assert_array_equal(y, run_ort(model, inputs))


def test_quantized_conv_nhwc_per_channel_scales() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(1, 5, 5, 2), dtype=np.uint8)
    w = rng.integers(-60, 60, size=(3, 3, 2, 4)).astype(np.int8)  # HWIO
    zw = np.array([1, -2, 0, 3], dtype=np.int8)
    scales = dict(x_scale=np.float32(0.02), w_scale=np.float32([0.01, 0.02, 0.03, 0.04]))
    nchw = quant.quantized_conv(
        np.moveaxis(x, -1, 1),
        np.moveaxis(w, (-1, -2), (0, 1)),
        x_zero_point=7,
        w_zero_point=zw,
        y_scale=np.float32(0.5),
        y_zero_point=np.int8(-3),
        padding=1,
        **scales,
    )
    nhwc = quant.quantized_conv(
        x,
        w,
        x_zero_point=7,
        w_zero_point=zw,
        y_scale=np.float32(0.5),
        y_zero_point=np.int8(-3),
        padding=1,
        layout="NHWC",
        **scales,
    )
    assert nhwc.dtype == np.int8
    np.testing.assert_array_equal(np.moveaxis(nhwc, -1, 1), nchw)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: quant.quantize(np.ones(3), 1),
            ValueError,
            "quantize: bits must be between 2 and 32, got 1",
        ),
        (
            lambda: quant.quantize(np.ones(3), 4, scheme="log"),
            ValueError,
            "quantize: scheme must be one of",
        ),
        (
            lambda: quant.quantize(np.ones(3), 4, per_channel_axis=1),
            ValueError,
            r"per_channel_axis=1 is out of range for a of shape \(3,\)",
        ),
        (
            lambda: quant.quantize(np.array([1.0, np.nan]), 4),
            ValueError,
            "quantize: a must be finite",
        ),
        (
            lambda: quant.quantize(np.ones(3, dtype=complex), 4),
            TypeError,
            "quantize: a must be real",
        ),
        (lambda: quant.dequantize(np.ones(3), 1.0), TypeError, "dequantize: q must hold integers"),
        (
            lambda: quant.dequantize(np.ones((2, 3), dtype=int), np.ones(3)),
            ValueError,
            r"dequantize: scale of shape \(3,\) needs axis=",
        ),
        (
            lambda: quant.quantized_conv(np.ones((1, 1, 3)), np.ones((1, 1, 3), dtype=int)),
            TypeError,
            "quantized_conv: x must hold integers",
        ),
        (
            lambda: quant.quantized_conv(
                np.ones((1, 1, 3), dtype=int), np.ones((2, 1, 3), dtype=int), w_zero_point=[1, 2, 3]
            ),
            ValueError,
            r"w_zero_point must be a scalar or have one value per output channel \(2,\), got "
            r"shape \(3,\)",
        ),
        (
            lambda: quant.quantized_conv(
                np.ones((1, 1, 3), dtype=int), np.ones((1, 1, 3), dtype=int), x_scale=1.0
            ),
            ValueError,
            "give all of x_scale, w_scale and y_scale",
        ),
        (
            lambda: quant.quantized_conv(
                np.ones((1, 2, 3), dtype=int), np.ones((1, 1, 3), dtype=int)
            ),
            ValueError,
            "quantized_conv: x has 2 channels but w expects 1",
        ),
    ],
)
def test_error_messages(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
