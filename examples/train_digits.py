"""Train a small LeNet-style CNN on scikit-learn's 8x8 digits with npconv, forward and backward.

The convolutions (and their gradients) are npconv's; ReLU, 2x2 max-pooling, the dense
head, softmax cross-entropy and Adam are written below in plain NumPy.  The digits ship
with scikit-learn (no download).  Run from the repository root::

    pip install -e ".[examples]"
    python examples/train_digits.py --out figures/

It prints a progress bar per epoch and the test accuracy (about 98-99% on the held-out
20%), and saves ``filters.png`` (the learned first-layer filters) and ``loss.png`` (the
loss curve) into ``--out`` (default: the current directory).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import pathlib
import time
from collections.abc import Callable, Iterator

import numpy as np

import npconv
from npconv.nn import Conv2d


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


class MaxPool2x2:
    """2x2 max-pooling with stride 2 (even sizes); backward routes to the first maximum."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        blocks = blocks.reshape(n, c, h // 2, w // 2, 4)  # (N, C, H/2, W/2, 2*2)
        self.shape, self.argmax = x.shape, blocks.argmax(axis=-1)
        return np.take_along_axis(blocks, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, grad: np.ndarray) -> np.ndarray:
        n, c, h, w = self.shape
        blocks = np.zeros((n, c, h // 2, w // 2, 4), dtype=grad.dtype)
        np.put_along_axis(blocks, self.argmax[..., None], grad[..., None], axis=-1)
        blocks = blocks.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
        return blocks.reshape(n, c, h, w)  # (N, C, H, W)


class Linear:
    """Dense layer ``x @ weight.T + bias`` with torch.nn.Linear's shapes and initialisation."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, dtype: type) -> None:
        bound = 1 / math.sqrt(n_in)
        self.weight = rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype)
        self.bias = rng.uniform(-bound, bound, n_out).astype(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad: np.ndarray) -> np.ndarray:
        self.weight_grad, self.bias_grad = grad.T @ self.x, grad.sum(axis=0)
        return grad @ self.weight

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def grads(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight_grad, "bias": self.bias_grad}


class LeNet:
    """conv(1->16, 3x3, same) - ReLU - pool - conv(16->32) - ReLU - pool - dense(128->10).

    On 8x8 images: (N, 1, 8, 8) -> (N, 16, 4, 4) -> (N, 32, 2, 2) -> (N, 10) logits.
    """

    def __init__(self, seed: int = 0, dtype: type = np.float32) -> None:
        rng = np.random.default_rng(seed)
        self.conv1 = Conv2d(1, 16, 3, padding=1, dtype=dtype, rng=rng)
        self.conv2 = Conv2d(16, 32, 3, padding=1, dtype=dtype, rng=rng)
        self.fc = Linear(32 * 2 * 2, 10, rng, dtype)
        self.pool1, self.pool2 = MaxPool2x2(), MaxPool2x2()

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.h1 = relu(self.conv1(x))  # (N, 16, 8, 8)
        self.h2 = relu(self.conv2(self.pool1.forward(self.h1)))  # (N, 32, 4, 4)
        flat = self.pool2.forward(self.h2).reshape(len(x), -1)  # (N, 128)
        return self.fc.forward(flat)

    def backward(self, grad_logits: np.ndarray) -> None:
        grad = self.fc.backward(grad_logits).reshape(-1, 32, 2, 2)
        grad = self.conv2.backward(self.pool2.backward(grad) * (self.h2 > 0))
        self.conv1.backward(self.pool1.backward(grad) * (self.h1 > 0), input_grad=False)

    def layers(self) -> dict[str, Conv2d | Linear]:
        return {"conv1": self.conv1, "conv2": self.conv2, "fc": self.fc}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters under torch's keys ("conv1.weight", ...): the live arrays."""
        return {
            f"{name}.{key}": value
            for name, layer in self.layers().items()
            for key, value in layer.state_dict().items()
        }

    def grads(self) -> dict[str, np.ndarray]:
        return {
            f"{name}.{key}": value
            for name, layer in self.layers().items()
            for key, value in layer.grads().items()
        }


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    grad = np.exp(log_p)
    grad[rows, labels] -= 1
    return float(-log_p[rows, labels].mean()), grad / len(labels)


class Adam:
    """Adam (Kingma & Ba) over a dict of live parameter arrays, updated in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float = 3e-3) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, np.ndarray], b1: float = 0.9, b2: float = 0.999) -> None:
        self.t += 1
        for key, g in grads.items():
            self.m[key] = b1 * self.m[key] + (1 - b1) * g
            self.v[key] = b2 * self.v[key] + (1 - b2) * g * g
            m_hat = self.m[key] / (1 - b1**self.t)
            v_hat = self.v[key] / (1 - b2**self.t)
            self.params[key] -= (self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(g.dtype)


def load_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1] as (N, 1, 8, 8) float32; a stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=seed
    )
    return x_train, x_test, y_train, y_test


def _progress(show: bool) -> Callable[[int, int], contextlib.AbstractContextManager]:
    """A per-epoch progress bar: rich's, else tqdm's, else one printed line per epoch.

    ``with bar(epoch, steps) as report:`` then ``report(text)`` once per step.
    """

    @contextlib.contextmanager
    def plain(epoch: int, steps: int) -> Iterator[Callable[[str], None]]:
        last = [""]

        def report(text: str) -> None:
            last[0] = text

        yield report
        if show:
            print(f"epoch {epoch:3d}: {last[0]}", flush=True)

    @contextlib.contextmanager
    def rich_bar(epoch: int, steps: int) -> Iterator[Callable[[str], None]]:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task(f"epoch {epoch:3d}", total=steps)
            yield lambda text: bar.update(task, advance=1, description=f"epoch {epoch:3d} {text}")

    @contextlib.contextmanager
    def tqdm_bar(epoch: int, steps: int) -> Iterator[Callable[[str], None]]:
        from tqdm import tqdm

        with tqdm(total=steps, desc=f"epoch {epoch:3d}") as bar:

            def report(text: str) -> None:
                bar.set_postfix_str(text, refresh=False)
                bar.update()

            yield report

    if show:
        for module, factory in (("rich", rich_bar), ("tqdm", tqdm_bar)):
            if importlib.util.find_spec(module) is not None:
                return factory
    return plain


def train(
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    subset: int | None = None,
    out: str | pathlib.Path | None = ".",
    progress: bool = True,
    threads: int = 1,
) -> dict[str, object]:
    """Train the CNN; return the model, per-step losses, test accuracy and saved figures.

    ``subset`` keeps only that many training images (for a quick run); ``out=None``
    saves no figures.  ``threads`` is npconv's (and BLAS's) thread count while training:
    the matrices of this small network are too small to share between cores.
    """
    old_threads = npconv.set_threads(threads)
    try:
        return _train(epochs, batch_size, lr, seed, subset, out, progress)
    finally:
        npconv.set_threads(old_threads)


def _train(
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    subset: int | None,
    out: str | pathlib.Path | None,
    progress: bool,
) -> dict[str, object]:
    x_train, x_test, y_train, y_test = load_data(seed)
    if subset is not None:
        x_train, y_train = x_train[:subset], y_train[:subset]
    model = LeNet(seed)
    optimiser = Adam(model.state_dict(), lr)
    rng = np.random.default_rng(seed)
    bar = _progress(progress)
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        with bar(epoch, len(batches)) as report:
            for rows in batches:
                loss, grad = softmax_cross_entropy(model.forward(x_train[rows]), y_train[rows])
                model.backward(grad)
                optimiser.step(model.grads())
                losses.append(loss)
                report(f"loss {np.mean(losses[-len(batches) :]):.4f}")
    accuracy = float((model.forward(x_test).argmax(axis=1) == y_test).mean())
    seconds = time.perf_counter() - start
    if progress:
        print(f"test accuracy {accuracy:.2%} on {len(y_test)} held-out digits ({seconds:.1f} s)")
    figures = [] if out is None else save_figures(model, losses, pathlib.Path(out))
    return {"model": model, "losses": losses, "accuracy": accuracy, "figures": figures}


def save_figures(model: LeNet, losses: list[float], out: pathlib.Path) -> list[pathlib.Path]:
    """``filters.png`` (first-layer filters) and ``loss.png`` (loss per step) in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    filters = model.conv1.weight[:, 0]  # (16, 3, 3)
    limit = float(np.abs(filters).max())
    fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
    for ax, f in zip(axes.flat, filters):
        ax.imshow(f, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_axis_off()
    fig.suptitle("first-layer filters (3x3; red > 0 > blue)")
    fig.savefig(out / "filters.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, linewidth=0.6)
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="training loss")
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
    return [out / "filters.png", out / "loss.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="npconv and BLAS threads")
    parser.add_argument("--out", default=".", help="folder for filters.png and loss.png")
    args = parser.parse_args(argv)
    result = train(
        args.epochs, args.batch_size, args.lr, args.seed, out=args.out, threads=args.threads
    )
    for path in result["figures"]:  # type: ignore[attr-defined]
        print(f"saved {path}")


if __name__ == "__main__":
    main()
