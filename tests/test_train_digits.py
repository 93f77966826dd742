"""The digits example: it learns, and its network computes what the same torch network does."""

from __future__ import annotations

import importlib.util
import pathlib
import shlex

import numpy as np
import pytest
import torch

from conftest import assert_close

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_digits.py"
_spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
train_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_digits)


class TorchLeNet(torch.nn.Module):
    """The example's network in torch, with the same parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def test_same_weights_give_torch_logits_and_gradients():
    x_train, _, y_train, _ = train_digits.load_data(seed=0)
    x, y = x_train[:64].astype(np.float64), y_train[:64]
    model = train_digits.LeNet(seed=3, dtype=np.float64)
    reference = TorchLeNet().double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    logits = model.forward(x)
    ref_logits = reference(torch.from_numpy(x))
    assert np.abs(logits - ref_logits.detach().numpy()).max() <= 1e-8 * np.abs(logits).max()

    loss, grad = train_digits.softmax_cross_entropy(logits, y)
    ref_loss = torch.nn.functional.cross_entropy(ref_logits, torch.from_numpy(y))
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-12)
    model.backward(grad)
    for name, param in reference.named_parameters():
        assert_close(model.grads()[name], param.grad.numpy())


def test_short_training_learns_and_saves_figures(tmp_path):
    result = train_digits.train(epochs=6, subset=800, out=tmp_path, progress=False)
    assert result["accuracy"] > 0.8  # chance is 0.1
    last_epoch = result["losses"][-25:]  # 800 images in batches of 32
    assert np.mean(last_epoch) < result["losses"][0] / 4
    for path in result["figures"]:
        assert path.parent == tmp_path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_command_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    command = next(
        line for line in readme.splitlines() if "python examples/train_digits.py" in line
    )
    args = shlex.split(command.split("python examples/train_digits.py", 1)[1])
    monkeypatch.chdir(tmp_path)  # the README's --out is relative
    train_digits.main([*args, "--epochs", "1"])  # one epoch of the README's run
    printed = capsys.readouterr().out
    assert "epoch   1" in printed and "test accuracy" in printed
    figures = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert sorted(p.name for p in figures.iterdir()) == ["filters.png", "loss.png"]
