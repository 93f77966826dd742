"""npconv.nn layers against torch.nn: initialisation, state_dict, forward and backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import npconv
from npconv.nn import Conv1d, Conv2d, Conv3d, ConvTranspose2d

from conftest import assert_close

LAYERS = [
    (Conv1d, torch.nn.Conv1d, 1),
    (Conv2d, torch.nn.Conv2d, 2),
    (Conv3d, torch.nn.Conv3d, 3),
    (ConvTranspose2d, torch.nn.ConvTranspose2d, 2),
]


def torch_state(layer: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in layer.state_dict().items()}


@pytest.mark.parametrize(("ours", "theirs", "nd"), LAYERS)
def test_parameters_have_torch_shapes_and_init_range(ours, theirs, nd):
    layer = ours(6, 4, 3, groups=2, rng=0)
    reference = theirs(6, 4, 3, groups=2)
    for key, value in torch_state(reference).items():
        assert layer.state_dict()[key].shape == value.shape
        assert layer.state_dict()[key].dtype == np.float32
    bound = 1 / math.sqrt(layer.weight.shape[1] * 3**nd)  # kaiming_uniform(a=sqrt(5))
    for values in (layer.weight, layer.bias):
        assert np.abs(values).max() <= bound
    # uniform on [-bound, bound]: the extremes come close to the bound
    assert np.abs(layer.weight).max() > 0.8 * bound
    assert np.abs(layer.weight.mean()) < 0.2 * bound
    assert "bias" not in ours(6, 4, 3, bias=False).state_dict()


def test_rng_makes_initialisation_reproducible():
    a, b = Conv2d(3, 5, 3, rng=7), Conv2d(3, 5, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, Conv2d(3, 5, 3, rng=8).weight)


CONFIGS = [
    dict(stride=2, padding=1),
    dict(padding="same", dilation=2, padding_mode="reflect"),
    dict(stride=(1, 2), padding=(2, 1), groups=3, padding_mode="circular", bias=False),
    dict(padding="valid", padding_mode="replicate", dilation=(2, 1)),
]


@pytest.mark.parametrize(("ours", "theirs", "nd"), LAYERS[:3])
@pytest.mark.parametrize("config", CONFIGS)
def test_forward_and_backward_match_torch(ours, theirs, nd, config, rng):
    config = {k: (v * 3)[:nd] if isinstance(v, tuple) else v for k, v in config.items()}
    reference = theirs(6, 9, 3, **config).double()
    layer = ours(6, 9, 3, dtype=np.float64, **config)
    layer.load_state_dict(torch_state(reference))
    x = rng.standard_normal((2, 6, *[7] * nd))
    xt = torch.from_numpy(x).requires_grad_()
    ref = reference(xt)
    y = layer(x)
    assert_close(y, ref.detach().numpy())
    gy = rng.standard_normal(y.shape)
    ref.backward(torch.from_numpy(gy))
    assert_close(layer.backward(gy), xt.grad.numpy())
    assert_close(layer.weight_grad, reference.weight.grad.numpy())
    if reference.bias is None:
        assert layer.bias_grad is None and layer.grads() == {"weight": layer.weight_grad}
    else:
        assert_close(layer.bias_grad, reference.bias.grad.numpy())
    assert layer.backward(gy, input_grad=False) is None  # a first layer: no input gradient
    assert_close(layer.weight_grad, reference.weight.grad.numpy())


@pytest.mark.parametrize(("n", "c", "o"), [(0, 4, 3), (2, 0, 3), (2, 4, 0)])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_zero_sizes(n, c, o):
    """No samples, no input or no output channels: PyTorch's parameters, empty sums."""
    reference = torch.nn.Conv2d(c, o, 3, padding=1).double()
    layer = Conv2d(c, o, 3, padding=1, dtype=np.float64)
    assert layer.weight.shape == tuple(reference.weight.shape)
    layer.load_state_dict(torch_state(reference))
    x = np.ones((n, c, 5, 5))
    y = layer(x)
    bias = reference.bias.detach().numpy()
    np.testing.assert_array_equal(y, np.zeros((n, o, 5, 5)) + bias.reshape(-1, 1, 1))
    np.testing.assert_array_equal(layer.backward(np.ones(y.shape)), np.zeros_like(x))
    np.testing.assert_array_equal(layer.weight_grad, np.zeros_like(layer.weight))
    np.testing.assert_array_equal(layer.bias_grad, np.full(o, n * 25.0))
    if n == 0:  # PyTorch refuses O = 0 and gives a wrong shape for C = 0
        assert_close(y, reference(torch.from_numpy(x)).detach().numpy())


@pytest.mark.parametrize("output_size", [None, (10, 12)])
def test_conv_transpose2d_matches_torch(output_size, rng):
    reference = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    layer = ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64)
    layer.load_state_dict(torch_state(reference))
    x = rng.standard_normal((2, 4, 5, 6))
    xt = torch.from_numpy(x).requires_grad_()
    ref = reference(xt, output_size=output_size)
    y = layer(x, output_size=output_size)
    assert_close(y, ref.detach().numpy())
    gy = rng.standard_normal(y.shape)
    ref.backward(torch.from_numpy(gy))
    assert_close(layer.backward(gy), xt.grad.numpy())
    assert_close(layer.weight_grad, reference.weight.grad.numpy())
    assert_close(layer.bias_grad, reference.bias.grad.numpy())


def test_conv_transpose2d_output_padding(rng):
    reference = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1, dilation=2).double()
    layer = ConvTranspose2d(3, 2, 3, stride=2, dilation=2, output_padding=1, dtype=np.float64)
    layer.load_state_dict(torch_state(reference))
    x = rng.standard_normal((1, 3, 4, 4))
    assert_close(layer(x), reference(torch.from_numpy(x)).detach().numpy())


def test_state_dict_is_live_and_load_casts():
    layer = Conv1d(2, 3, 2, rng=0)
    state = layer.state_dict()
    state["weight"][...] = 1.0  # the live arrays, as torch's state_dict tensors
    np.testing.assert_array_equal(layer.weight, np.ones((3, 2, 2), np.float32))
    layer.load_state_dict({"weight": np.full((3, 2, 2), 0.5), "bias": [1.0, 2.0, 3.0]})
    assert layer.weight.dtype == np.float32 and layer.weight[0, 0, 0] == 0.5
    np.testing.assert_array_equal(layer.bias, [1.0, 2.0, 3.0])


def test_unbatched_input(rng):
    layer = Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 5, 5))
    y = layer(x)
    assert_close(y, npconv.conv2d(x, layer.weight, layer.bias, padding=1))
    assert layer.backward(np.ones_like(y)).shape == x.shape


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Conv2d(-1, 3, 3), ValueError, r"Conv2d: in_channels must be >= 0, got -1"),
        (lambda: Conv2d(2, 2, 3, groups=0), ValueError, r"Conv2d: groups must be >= 1, got 0"),
        (lambda: Conv2d(2, 3.0, 3), TypeError, r"Conv2d: out_channels must be an int"),
        (lambda: Conv2d(4, 6, 3, groups=4), ValueError, r"Conv2d: groups=4 must divide"),
        (lambda: Conv1d(2, 2, (3, 3)), ValueError, r"Conv1d: kernel_size must be an int or 1"),
        (lambda: Conv2d(2, 2, 3, padding_mode="same"), ValueError, r"Conv2d: padding_mode"),
        (lambda: Conv2d(2, 2, 3, padding="full"), ValueError, r"Conv2d: padding must be 'same'"),
        (lambda: Conv2d(2, 2, 3, 2, "same"), ValueError, r"Conv2d: padding='same' is not"),
        (lambda: Conv3d(2, 2, 3, dtype=np.int32), TypeError, r"Conv3d: dtype must be a float"),
        (
            lambda: ConvTranspose2d(2, 2, 3, padding_mode="reflect"),
            ValueError,
            r"ConvTranspose2d: only padding_mode='zeros' is supported",
        ),
        (
            lambda: ConvTranspose2d(2, 2, 3, padding="same"),
            ValueError,
            r"ConvTranspose2d: padding must be ints or pairs",
        ),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_usage_errors():
    layer = Conv2d(2, 3, 3)
    with pytest.raises(RuntimeError, match=r"Conv2d.backward: call forward first"):
        layer.backward(np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"Conv2d.load_state_dict: expected keys \['bias', "):
        layer.load_state_dict({"weight": layer.weight})
    with pytest.raises(ValueError, match=r"'weight' must have shape \(3, 2, 3, 3\), got \(3, 2\)"):
        layer.load_state_dict({"weight": np.ones((3, 2)), "bias": layer.bias})
    assert "Conv2d(2, 3, kernel_size=(3, 3)" in repr(layer)


@pytest.mark.parametrize("layer_type", ["conv", "transpose"])
def test_changing_the_input_after_forward_leaves_the_gradients_alone(layer_type, rng):
    """The weight gradient is that of the input the forward saw (torch autograd on it)."""
    if layer_type == "conv":
        reference, layer = torch.nn.Conv2d(3, 4, 3).double(), Conv2d(3, 4, 3, dtype=np.float64)
    else:
        reference = torch.nn.ConvTranspose2d(3, 4, 3, stride=2).double()
        layer = ConvTranspose2d(3, 4, 3, stride=2, dtype=np.float64)
    layer.load_state_dict(torch_state(reference))
    x = rng.standard_normal((2, 3, 6, 6))
    xt = torch.from_numpy(x.copy()).requires_grad_()
    ref = reference(xt)
    y = layer(x)
    x *= -3.0  # in place, between forward and backward
    gy = rng.standard_normal(y.shape)
    ref.backward(torch.from_numpy(gy))
    assert_close(layer.backward(gy), xt.grad.numpy())
    assert_close(layer.weight_grad, reference.weight.grad.numpy())
