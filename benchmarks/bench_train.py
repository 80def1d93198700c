"""Training speed: `cnnspec train` (the library call behind it) next to a hand-written
PyTorch loop on the same network and data, in images per second.

- CBAPD CIFAR net (specs/cifar.cnn) on 3x32x32, and ResNet-18 (specs/zoo/resnet.cnn)
  at 3x64x64; random data, Adam, batch 32, no validation split.
- The hand-written loop trains the plain PyTorch model (nn.Sequential, and the ResNet of
  tests/torch_models.py), the loop a tutorial writes: forward, cross-entropy, backward,
  step. Best epoch of `--epochs` after one warm-up epoch, each side.

    python benchmarks/bench_train.py [--epochs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def plain_cbapd():
    from torch import nn

    def block(cin, cout, rate):
        return [
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(rate),
        ]  # fmt: skip

    return nn.Sequential(
        *block(3, 32, 0.25), *block(32, 64, 0.25), *block(64, 128, 0.4),
        nn.Flatten(), nn.Linear(128 * 16, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10),
    )  # fmt: skip


def hand_loop(model, x, y, epochs: int, batch: int) -> float:
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    best = 0.0
    for epoch in range(epochs + 1):
        model.train()
        order = torch.randperm(len(xt))
        start = time.perf_counter()
        for i in range(0, len(order), batch):
            index = order[i : i + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[index]), yt[index])
            loss.backward()
            optimizer.step()
        if epoch:  # the first epoch warms up
            best = max(best, len(xt) / (time.perf_counter() - start))
    return best


def cnnspec_loop(network, x, y, epochs: int, batch: int) -> float:
    from cnnspec.deploy.weights import build_weights
    from cnnspec.training.train import Dataset, train

    rates = []
    started = [time.perf_counter()]

    def tick(stats, result) -> None:
        now = time.perf_counter()
        if stats.epoch > 1:
            rates.append(len(x) / (now - started[0]))
        started[0] = now

    data = Dataset(x, y, [str(i) for i in range(int(y.max()) + 1)])
    train(
        network, build_weights(network), data, epochs + 1, 1e-3, batch, 0.0, 0, progress=False, on_epoch=tick
    )
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    import torch

    import cnnspec
    from tests import torch_models as tm

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; images/s, best epoch of {args.epochs}"
    )
    print(f"   {'network':<26} {'cnnspec train':>14} {'hand-written loop':>18} {'ratio':>7}")
    rng = np.random.default_rng(0)
    cases = [
        (
            "CBAPD CIFAR, 3x32x32",
            cnnspec.check(ROOT / "specs/cifar.cnn").network(),
            plain_cbapd,
            (3, 32, 32),
            1024,
            10,
        ),
        (
            "ResNet-18, 3x64x64",
            _resnet18_64(),
            lambda: tm.resnet18(),
            (3, 64, 64),
            256,
            1000,
        ),
    ]
    for label, network, factory, shape, n, classes in cases:
        x = rng.random((n, *shape), dtype=np.float32)
        y = rng.integers(0, classes, n).astype(np.int64)
        torch.manual_seed(0)
        ours = cnnspec_loop(network, x, y, args.epochs, 32)
        torch.manual_seed(0)
        theirs = hand_loop(factory(), x, y, args.epochs, 32)
        print(f"   {label:<26} {ours:>14,.0f} {theirs:>18,.0f} {ours / theirs:>6.2f}x")


def _resnet18_64():
    import cnnspec

    text = (ROOT / "specs/zoo/resnet.cnn").read_text().replace("input 3x224x224", "input 3x64x64")
    return cnnspec.check_source(text, str(ROOT / "specs/zoo/resnet.cnn"), "resnet18").network("resnet18")


if __name__ == "__main__":
    main()
