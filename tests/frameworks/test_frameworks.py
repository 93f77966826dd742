"""npconv.compat against TensorFlow/Keras and JAX themselves.

These frameworks are large installs (the ``frameworks`` extra), so these tests run in
their own environment: ``scripts/test-frameworks``.  tests/test_compat.py checks the same
translations against the frameworks' documented definitions, computed with PyTorch.
"""

from __future__ import annotations

import jax
import numpy as np
import tensorflow as tf

import npconv
from npconv.compat import (
    from_jax,
    from_jax_transpose,
    from_keras,
    from_tensorflow,
    from_tensorflow_transpose,
)

from conftest import assert_close


def test_tensorflow_itself(rng):
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    hwio = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    for padding in ("SAME", "VALID"):
        expected = tf.nn.conv2d(x, hwio, strides=2, padding=padding, dilations=1).numpy()
        w, kwargs = from_tensorflow(hwio, strides=2, padding=padding)
        assert_close(npconv.conv(x, w, **kwargs), expected)
        out_shape = (2, 17, 16, 3) if padding == "SAME" else (2, 19, 17, 3)
        y = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)  # a conv of out_shape gives 9x8
        hwoi = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
        expected_t = tf.nn.conv2d_transpose(y, hwoi, out_shape, strides=2, padding=padding)
        w, kwargs = from_tensorflow_transpose(hwoi, input_shape=y.shape, output_shape=out_shape,
                                              strides=2, padding=padding)  # fmt: skip
        assert_close(npconv.conv_transpose(y, w, **kwargs), expected_t.numpy())
    layer = tf.keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2, use_bias=False)
    seq = rng.standard_normal((2, 9, 3)).astype(np.float32)
    expected = layer(seq).numpy()
    w, kwargs = from_keras(layer.get_weights()[0], padding="causal", dilation_rate=2)
    assert_close(npconv.conv(seq, w, **kwargs), expected)


def test_jax_itself(rng):
    jax.config.update("jax_enable_x64", True)
    lax = jax.lax
    x = rng.standard_normal((2, 9, 8, 4))
    hwio = rng.standard_normal((3, 2, 2, 6))  # 2 groups
    dn = ("NHWC", "HWIO", "NHWC")
    for padding in ("SAME", "SAME_LOWER", "VALID", ((1, 2), (0, 1))):
        expected = lax.conv_general_dilated(
            x, hwio, (2, 1), padding, rhs_dilation=(1, 2), dimension_numbers=dn,
            feature_group_count=2,
        )  # fmt: skip
        w, kwargs = from_jax(hwio, window_strides=(2, 1), padding=padding, rhs_dilation=(1, 2),
                             dimension_numbers=dn, feature_group_count=2)  # fmt: skip
        assert_close(npconv.conv(x, w, **kwargs), np.asarray(expected))
    dn_t = ("NHWC", "HWIO", "NHWC")
    rhs = rng.standard_normal((3, 2, 4, 5))
    xt = rng.standard_normal((1, 5, 4, 4))
    pairs = ((2, 1), (0, 3))
    expected = lax.conv_general_dilated(xt, rhs, (1, 1), pairs, lhs_dilation=(2, 3),
                                        dimension_numbers=dn_t)  # fmt: skip
    w, kwargs = from_jax_transpose(rhs, input_shape=xt.shape, strides=(2, 3), padding=pairs)
    assert_close(npconv.conv_transpose(xt, w, **kwargs), np.asarray(expected))
    for padding in ("SAME", "VALID"):
        for transpose_kernel in (False, True):
            rhs = rng.standard_normal((3, 2, 4, 5))  # HWIO; x has I channels, or O if transposed
            xt = rng.standard_normal((1, 5, 4, 5 if transpose_kernel else 4))
            expected = lax.conv_transpose(xt, rhs, (2, 3), padding, rhs_dilation=(2, 1),
                                          transpose_kernel=transpose_kernel)  # fmt: skip
            w, kwargs = from_jax_transpose(rhs, input_shape=xt.shape, strides=(2, 3),
                                           padding=padding, rhs_dilation=(2, 1),
                                           transpose_kernel=transpose_kernel)  # fmt: skip
            assert_close(npconv.conv_transpose(xt, w, **kwargs), np.asarray(expected))
