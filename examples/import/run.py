"""Transfer learning from a model trained elsewhere: PyTorch -> ONNX -> cnnspec.

1. Train a small CNN in plain PyTorch on scikit-learn's bundled 8x8 digits 0-4.
2. Export it with torch.onnx.export, keeping batch norm (do_constant_folding=False).
3. `cnnspec import base.onnx -o imported.cnn`: a readable spec and imported.npz.
4. A derived network in a spec of its own: drop the old head, freeze the backbone, add a
   5-way head for digits 5-9, and `cnnspec train` it on 20 labelled images per class.
5. Score the exported model with onnxruntime on every other digit 5-9.

    pip install torch==2.13.0 && pip install -e '.[train,examples]'
    python examples/import/run.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnspec.cli import main as cnnspec
from cnnspec.deploy.runtime import make_session

DERIVED = """use "imported.cnn"

network digits_b from imported {
  drop from fc2              # the old 5-way output for digits 0-4
  freeze through fc1         # the convolutions and the first dense layer keep their weights
  dense 5 softmax as head    # digits 5-9
}
"""


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target.astype(np.int64)


def run(*args: str) -> None:
    print("$ cnnspec " + " ".join(args))
    code = cnnspec(list(args))
    if code != 0:
        raise SystemExit(f"cnnspec failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-a", type=int, default=10, help="PyTorch epochs on digits 0-4")
    parser.add_argument("--epochs-b", type=int, default=40, help="cnnspec train epochs on digits 5-9")
    parser.add_argument("--shots", type=int, default=20, help="labelled images per class for digits 5-9")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cnnspec-import-"))
    work.mkdir(parents=True, exist_ok=True)
    x, y = digits()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    # 1. the model "someone else" trained
    a = y < 5
    model = SmallNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    xa, ya = torch.from_numpy(x[a]), torch.from_numpy(y[a])
    for _ in range(args.epochs_a):
        for batch in torch.randperm(len(xa)).split(32):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(xa[batch]), ya[batch]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        print(f"PyTorch model on digits 0-4: train accuracy {(model(xa).argmax(1) == ya).float().mean():.3f}")

    # 2. its ONNX export, batch norm kept so that it can be fine-tuned
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, xa[:1], work / "base.onnx", dynamo=False, do_constant_folding=False,
            input_names=["x"], dynamic_axes={"x": {0: "N"}},
        )  # fmt: skip

    # 3. import
    run(
        "import",
        str(work / "base.onnx"),
        "-o",
        str(work / "imported.cnn"),
        "--weights-out",
        str(work / "imported.npz"),
    )
    print((work / "imported.cnn").read_text())

    # 4. derive and train on a few labelled digits 5-9
    (work / "digits_b.cnn").write_text(DERIVED)
    b = np.flatnonzero(y >= 5)
    labelled = np.concatenate([rng.choice(b[y[b] == d], args.shots, replace=False) for d in range(5, 10)])
    test = np.setdiff1d(b, labelled)
    np.savez(work / "b.npz", x=x[labelled], y=y[labelled] - 5)
    spec = str(work / "digits_b.cnn")
    run("check", spec, "--network", "digits_b")
    run(
        "train", spec, "--network", "digits_b", "--data", str(work / "b.npz"), "--weights", str(work / "imported.npz"),
        "--epochs", str(args.epochs_b), "--lr", "1e-2", "--val-split", "0", "-o", str(work / "digits_b.onnx"),
    )  # fmt: skip

    # 5. score it with onnxruntime
    scores = make_session(work / "digits_b.onnx", "cpu").run(None, {"input": x[test]})[0]
    accuracy = float((scores.argmax(1) == y[test] - 5).mean())
    print(
        f"digits 5-9 from {args.shots} labelled images per class: test accuracy {accuracy:.3f} on {len(test)} images"
    )
    print(f"files in {work}")


if __name__ == "__main__":
    main()
