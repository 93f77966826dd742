"""npconv.compat: every framework's convention against that framework (or its definition).

PyTorch and ONNX (onnxruntime) are referees everywhere.  TensorFlow/Keras and JAX are
large optional installs: their direct tests live in tests/frameworks (run by
scripts/test-frameworks), and here the same translations are checked against their
documented definitions computed with PyTorch (TensorFlow's
conv_transpose is the gradient of its forward convolution; JAX's is a convolution of the
stride-dilated input).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

import npconv
from npconv.compat import (
    convert_weight,
    from_jax,
    from_jax_transpose,
    from_keras,
    from_onnx,
    from_onnx_transpose,
    from_tensorflow,
    from_tensorflow_transpose,
    from_torch,
    from_torch_transpose,
)

from conftest import assert_close, torch_conv
from strategies import cases, reference_pads

TORCH_CONV = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
TORCH_TRANSPOSE = (
    torch.nn.functional.conv_transpose1d,
    torch.nn.functional.conv_transpose2d,
    torch.nn.functional.conv_transpose3d,
)
LETTERS = {1: "W", 2: "HW", 3: "DHW"}


def channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def test_convert_weight_round_trip_and_flip(rng):
    w = rng.standard_normal((4, 3, 2, 5))  # OIHW
    hwio = convert_weight(w, "OIHW", "HWIO")
    assert hwio.shape == (2, 5, 3, 4)
    np.testing.assert_array_equal(convert_weight(hwio, "HWIO", "OIHW"), w)
    np.testing.assert_array_equal(convert_weight(w, "OIHW", "OIHW", flip=True), w[:, :, ::-1, ::-1])
    with pytest.raises(ValueError, match=r"convert_weight: src='OIHW' and dst='HWIO' must name"):
        convert_weight(w[0], "OIHW", "HWIO")


# -------------------------------------------------------------------------------- PyTorch
@given(case=cases(modes=("zeros", "reflect", "replicate", "circular")))
def test_torch_module_semantics(case):
    kw = dict(case.kwargs)
    if kw["padding"] == "same_lower":  # PyTorch has "same" only, at stride 1
        kw["padding"] = "same"
    elif isinstance(kw["padding"], tuple) and isinstance(kw["padding"][0], tuple):
        kw["padding"] = tuple(lo for lo, _ in kw["padding"])  # symmetric pads only
    if kw["padding"] == "same":
        kw["stride"] = 1
    nd, (o, cg, *kernel) = case.nd, case.w.shape
    module = TORCH_CONV[nd - 1](
        cg * kw["groups"], o, kernel, bias=case.bias is not None, dtype=torch.float64, **kw
    )
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(case.w))
        if case.bias is not None:
            module.bias.copy_(torch.from_numpy(case.bias))
        expected = module(torch.from_numpy(case.x)).numpy()
    w, kwargs = from_torch(case.w, **kw)
    assert_close(npconv.conv(case.x, w, case.bias, **kwargs), expected)


def test_torch_same_needs_stride_one():
    with pytest.raises(ValueError, match=r"from_torch: padding='same' is not supported .*stride=2"):
        from_torch(np.ones((1, 1, 3, 3)), padding="same", stride=2)


@given(
    nd=st.sampled_from([1, 2, 3]),
    groups=st.integers(1, 2),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.integers(0, 2),
    data=st.data(),
)
def test_torch_transpose(nd, groups, stride, dilation, padding, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    extra = data.draw(st.integers(0, max(stride, dilation) - 1))
    k = data.draw(st.integers(padding // dilation + 1, 3))  # keeps the output non-empty
    x = rng.standard_normal((1, 2 * groups, *[3] * nd))
    w = rng.standard_normal((2 * groups, 2, *[k] * nd))  # (I, O/G, *kernel)
    kw = dict(stride=stride, padding=padding, output_padding=extra, groups=groups,
              dilation=dilation)  # fmt: skip
    expected = TORCH_TRANSPOSE[nd - 1](torch.from_numpy(x), torch.from_numpy(w), **kw).numpy()
    w2, kwargs = from_torch_transpose(w, **kw)
    assert_close(npconv.conv_transpose(x, w2, **kwargs), expected)


# --------------------------------------------------------------------- TensorFlow / Keras
@given(
    case=cases(modes=("zeros",), nds=(1, 2)),
    channels_first=st.booleans(),
    full_strides=st.booleans(),
)
def test_tensorflow_conventions_against_their_definition(case, channels_first, full_strides):
    """SAME pads (ceil(in / stride) - 1) * stride + extent - in, the odd one at the end."""
    kw = case.kwargs
    hwio = convert_weight(case.w, "OI" + LETTERS[case.nd], LETTERS[case.nd] + "IO")
    w_groups = case.x.shape[1] // case.w.shape[1]  # TensorFlow infers the groups
    padding: Any = kw["padding"]
    if padding in ("same", "valid"):
        tf_padding = padding.upper()
    else:  # explicit, one pair per axis of x
        pairs = [list(p) for p in case.pads]
        tf_padding = [[0, 0], [0, 0], *pairs] if channels_first else [[0, 0], *pairs, [0, 0]]
    stride, dilation = kw["stride"], kw["dilation"]
    if full_strides:
        stride = [1, 1, *stride] if channels_first else [1, *stride, 1]
    x = case.x if channels_first else channels_last(case.x)
    w, kwargs = from_tensorflow(
        hwio, strides=stride, padding=tf_padding, dilations=dilation,
        data_format="NC" + LETTERS[case.nd] if channels_first else "N" + LETTERS[case.nd] + "C",
    )  # fmt: skip
    y = npconv.conv(x, w, groups=w_groups, **kwargs)
    y = y if channels_first else np.moveaxis(y, -1, 1)
    pads = reference_pads(padding if isinstance(padding, str) else case.pads, case.x.shape[2:],
                          case.w.shape[2:], kw["stride"], kw["dilation"])  # fmt: skip
    expected = torch_conv(case.x, case.w, stride=kw["stride"], pads=pads,
                          dilation=kw["dilation"], groups=w_groups)  # fmt: skip
    assert_close(y, expected)


@pytest.mark.parametrize("dilation", [1, 2])
def test_keras_causal_pads_the_past_only(dilation, rng):
    x = rng.standard_normal((2, 9, 3))  # (N, L, C)
    kernel = rng.standard_normal((3, 3, 4))  # (K, C, O)
    w, kwargs = from_keras(kernel, padding="causal", dilation_rate=dilation)
    expected = torch_conv(np.moveaxis(x, 1, -1), kernel.transpose(2, 1, 0),
                          pads=[(2 * dilation, 0)], dilation=dilation)  # fmt: skip
    assert_close(np.moveaxis(npconv.conv(x, w, **kwargs), -1, 1), expected)
    w, kwargs = from_keras(kernel, padding="causal", dilation_rate=dilation,
                           data_format="channels_first")  # fmt: skip
    assert_close(npconv.conv(np.moveaxis(x, 1, -1), w, **kwargs), expected)


def tf_transpose_definition(x, hwoi, out_size, stride, dilation, padding) -> np.ndarray:
    """TensorFlow's conv_transpose: the gradient of its forward conv on an out_size input."""
    nd = hwoi.ndim - 2
    # forward weight (out = this input's channels, in = this output's, *kernel)
    oihw = torch.from_numpy(convert_weight(hwoi, LETTERS[nd] + "OI", "IO" + LETTERS[nd]).copy())
    kernel = hwoi.shape[:nd]
    pads = reference_pads(padding.lower(), out_size, kernel, [stride] * nd, [dilation] * nd)
    z = torch.zeros((x.shape[0], oihw.shape[1], *out_size), dtype=torch.float64,
                    requires_grad=True)  # fmt: skip
    flat = [p for pair in reversed(pads) for p in pair]
    forward = (torch.nn.functional.conv1d, torch.nn.functional.conv2d)[nd - 1]
    y = forward(torch.nn.functional.pad(z, flat), oihw, stride=stride, dilation=dilation)
    (grad,) = torch.autograd.grad(y, z, torch.from_numpy(x))
    return grad.numpy()


@given(
    nd=st.sampled_from([1, 2]),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    k=st.integers(1, 3),
    padding=st.sampled_from(["SAME", "VALID"]),
    data=st.data(),
)
def test_tensorflow_transpose_is_the_gradient_of_its_conv(nd, stride, dilation, k, padding, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    extent = dilation * (k - 1) + 1
    out_size = [data.draw(st.integers(extent, extent + 6)) for _ in range(nd)]
    if padding == "SAME":
        in_size = [-(-m // stride) for m in out_size]
    else:
        in_size = [(m - extent) // stride + 1 for m in out_size]
    x = rng.standard_normal((1, 3, *in_size))  # NCHW
    hwoi = rng.standard_normal((*[k] * nd, 2, 3))
    expected = tf_transpose_definition(x, hwoi, out_size, stride, dilation, padding)
    w, kwargs = from_tensorflow_transpose(
        hwoi, input_shape=channels_last(x).shape, output_shape=(1, *out_size, 2),
        strides=stride, padding=padding, dilations=dilation,
    )  # fmt: skip
    y = npconv.conv_transpose(channels_last(x), w, **kwargs)
    assert_close(np.moveaxis(y, -1, 1), expected)
    w, kwargs = from_tensorflow_transpose(
        hwoi, input_shape=x.shape, output_shape=(1, 2, *out_size), strides=stride,
        padding=padding, dilations=dilation, data_format="NC" + LETTERS[nd],
    )  # fmt: skip
    assert_close(npconv.conv_transpose(x, w, **kwargs), expected)


def test_tensorflow_errors():
    with pytest.raises(ValueError, match=r"from_tensorflow: data_format must be channels-last"):
        from_tensorflow(np.ones((3, 3, 1, 1)), data_format="HWNC")
    with pytest.raises(ValueError, match=r"from_tensorflow: padding must be SAME, VALID or"):
        from_tensorflow(np.ones((3, 3, 1, 1)), padding="FULL")
    with pytest.raises(ValueError, match=r"from_keras: padding='causal' is for 1-d .* got 2-d"):
        from_keras(np.ones((3, 3, 1, 1)), padding="causal")
    with pytest.raises(ValueError, match=r"output_shape \(1, 9, 1\) does not match input_shape"):
        from_tensorflow_transpose(np.ones((3, 1, 1)), input_shape=(1, 4, 1),
                                  output_shape=(1, 9, 1), strides=2)  # fmt: skip


# ----------------------------------------------------------------------------------- ONNX
def onnxruntime_node(op: str, x: np.ndarray, w: np.ndarray, **attrs: Any) -> np.ndarray:
    node = helper.make_node(op, ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape)
            for n, v in (("x", x), ("w", w))
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "w": w})[0]


@given(case=cases(dtypes=(np.float32,), modes=("zeros",), max_batch=1),
       lower=st.booleans())  # fmt: skip
def test_onnx_conv_against_onnxruntime(case, lower):
    kw = case.kwargs
    attrs: dict[str, Any] = {"strides": list(kw["stride"]), "group": kw["groups"]}
    if isinstance(kw["padding"], str) and max(kw["dilation"]) == 1:  # onnxruntime: no dilated SAME
        attrs["auto_pad"] = {"same": "SAME_UPPER", "same_lower": "SAME_LOWER", "valid": "VALID"}[
            kw["padding"]]  # fmt: skip
    else:
        attrs["pads"] = [lo for lo, _ in case.pads] + [hi for _, hi in case.pads]
        attrs["dilations"] = list(kw["dilation"])
    expected = onnxruntime_node("Conv", case.x, case.w, **attrs)
    w, kwargs = from_onnx(case.w, attrs)
    assert_close(npconv.conv(case.x, w, **kwargs), expected)


@given(
    nd=st.sampled_from([1, 2]),
    stride=st.integers(1, 3),
    k=st.integers(1, 3),
    mode=st.sampled_from(["pads", "NOTSET", "SAME_UPPER", "SAME_LOWER"]),
    data=st.data(),
)
def test_onnx_conv_transpose_against_onnxruntime(nd, stride, k, mode, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    size = [data.draw(st.integers(1, 4)) for _ in range(nd)]
    x = rng.standard_normal((1, 2, *size)).astype(np.float32)
    w = rng.standard_normal((2, 3, *[k] * nd)).astype(np.float32)
    natural = [stride * (n - 1) + k for n in size]
    attrs: dict[str, Any] = {"strides": [stride] * nd}
    if mode == "pads":
        attrs["pads"] = [data.draw(st.integers(0, (m - 1) // 2)) for m in natural * 2]
    else:  # an output_shape that output_padding < stride can reach
        attrs["output_shape"] = [data.draw(st.integers(max(1, m - 3), m)) for m in natural]
        if mode != "NOTSET":
            attrs["auto_pad"] = mode
    expected = onnxruntime_node("ConvTranspose", x, w, **attrs)
    w2, kwargs = from_onnx_transpose(w, attrs, x.shape)
    assert_close(npconv.conv_transpose(x, w2, **kwargs), expected)


def test_onnx_errors():
    w = np.ones((1, 1, 3))
    with pytest.raises(ValueError, match=r"from_onnx: pads must hold 2 x 1 values"):
        from_onnx(w, {"pads": [1, 1, 1]})
    with pytest.raises(ValueError, match=r"from_onnx_transpose: .* needs output_padding 3, but"):
        from_onnx_transpose(w, {"strides": [2], "output_shape": [12]}, (1, 1, 4))


# ------------------------------------------------------------------------------------ JAX
def jax_transpose_definition(x, rhs, strides, padding, dilation, transpose_kernel):
    """lax.conv_transpose for NHWC / HWIO written out: correlate the stride-dilated, padded
    input with the kernel (flipped, I and O swapped when transpose_kernel), in PyTorch."""
    nd = rhs.ndim - 2
    kernel = rhs.shape[:nd]
    extents = [dilation * (k - 1) + 1 for k in kernel]
    if padding == "SAME":  # jax's _conv_transpose_padding
        pads = [(e - 1 if s > e - 1 else -(-(e + s - 2) // 2), e + s - 2) for e, s in
                zip(extents, strides)]  # fmt: skip
    else:
        pads = [(e - 1, e + s - 2 + max(e - s, 0)) for e, s in zip(extents, strides)]
    pads = [(a, total - a) for a, total in pads]
    spread = np.zeros((x.shape[0], *[(n - 1) * s + 1 for n, s in zip(x.shape[1:-1], strides)],
                       x.shape[-1]))  # fmt: skip
    spread[(slice(None), *(slice(None, None, s) for s in strides))] = x
    k = rhs[(slice(None, None, -1),) * nd].swapaxes(-1, -2) if transpose_kernel else rhs
    oihw = np.moveaxis(k, (-1, -2), (0, 1)).copy()  # (O, I, *kernel)
    return np.moveaxis(torch_conv(np.moveaxis(spread, -1, 1), oihw, pads=pads,
                                  dilation=dilation), 1, -1)  # fmt: skip


@given(
    nd=st.sampled_from([1, 2]),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    k=st.integers(1, 4),
    padding=st.sampled_from(["SAME", "VALID"]),
    transpose_kernel=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_jax_transpose_against_its_definition(nd, stride, dilation, k, padding, transpose_kernel,
                                              seed):  # fmt: skip
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, *[3] * nd, 2))
    rhs = rng.standard_normal((*[k] * nd, 2, 4) if not transpose_kernel else (*[k] * nd, 4, 2))
    expected = jax_transpose_definition(x, rhs, [stride] * nd, padding, dilation,
                                        transpose_kernel)  # fmt: skip
    w, kwargs = from_jax_transpose(rhs, input_shape=x.shape, strides=[stride] * nd,
                                   padding=padding, rhs_dilation=[dilation] * nd,
                                   transpose_kernel=transpose_kernel)  # fmt: skip
    assert_close(npconv.conv_transpose(x, w, **kwargs), expected)


@given(case=cases(modes=("zeros",)), channels_last_=st.booleans())
def test_jax_conv_against_pytorch(case, channels_last_):
    kw = case.kwargs
    s = LETTERS[case.nd]
    padding = kw["padding"].upper() if isinstance(kw["padding"], str) else case.pads
    x, rhs, dn = case.x, case.w, ("NC" + s, "OI" + s, "NC" + s)
    if channels_last_:
        x, rhs, dn = (
            channels_last(x),
            convert_weight(rhs, "OI" + s, s + "IO"),
            ("N" + s + "C", s + "IO", "N" + s + "C"),
        )
    w, kwargs = from_jax(rhs, window_strides=kw["stride"], padding=padding,
                         rhs_dilation=kw["dilation"], dimension_numbers=dn,
                         feature_group_count=kw["groups"])  # fmt: skip
    y = npconv.conv(x, w, **kwargs)
    expected = torch_conv(case.x, case.w, stride=kw["stride"], pads=case.pads,
                          dilation=kw["dilation"], groups=kw["groups"])  # fmt: skip
    assert_close(np.moveaxis(y, -1, 1) if channels_last_ else y, expected)


def test_jax_errors():
    with pytest.raises(ValueError, match=r"from_jax: npconv keeps the input's layout"):
        from_jax(np.ones((1, 1, 3, 3)), window_strides=(1, 1), padding="SAME",
                 dimension_numbers=("NCHW", "OIHW", "NHWC"))  # fmt: skip
    with pytest.raises(ValueError, match=r"from_jax: padding must be SAME, SAME_LOWER, VALID"):
        from_jax(np.ones((1, 1, 3)), window_strides=(1,), padding="FULL")
    with pytest.raises(ValueError, match=r"from_jax: lhs_dilation=\(2,\) makes a transposed conv"):
        from_jax(np.ones((1, 1, 3)), window_strides=(1,), padding=((2, 2),), lhs_dilation=(2,))
    with pytest.raises(ValueError, match=r"from_jax_transpose: the output starts 2 elements"):
        from_jax_transpose(np.ones((3, 1, 1)), input_shape=(1, 4, 1), strides=(1,),
                           padding=((4, 0),))  # fmt: skip
