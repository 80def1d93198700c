"""Transfer learning, end to end, on scikit-learn's bundled 8x8 digits (no downloads).

Task A: digits 0-4, all ~900 images. Task B: digits 5-9, from only K labelled images
per class; every other task-B image is the test set. Three recipes from digits.cnn:
from scratch, transfer with a frozen backbone and a new head, and full fine-tuning,
each over several random draws of the K examples. Everything runs through the cnnspec
command line (`cnnspec train`, then onnxruntime on the exported models):

    pip install torch==2.13.0 && pip install -e '.[train,examples]'
    python examples/transfer/run.py            # K=2 per class, 5 draws
    python examples/transfer/run.py --shots 10 --draws 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
from pathlib import Path

import numpy as np

from cnnspec.cli import main as cnnspec
from cnnspec.deploy.runtime import make_session

HERE = Path(__file__).resolve().parent
SPEC = str(HERE / "digits.cnn")


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target.astype(np.int64)


def accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    scores = make_session(model, "cpu").run(None, {"input": x})[0]
    return float((scores.argmax(1) == y).mean())


def quietly(*args: str) -> None:
    """Run a cnnspec command, keeping its per-epoch lines out of the report."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        code = cnnspec(list(args))
    if code != 0:
        raise SystemExit(f"cnnspec {' '.join(args)} failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=2, help="labelled task-B images per class")
    parser.add_argument("--draws", type=int, default=5, help="random draws of those images")
    parser.add_argument("--epochs-a", type=int, default=15)
    parser.add_argument("--epochs-b", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate from scratch")
    args = parser.parse_args()

    x, y = digits()
    task_a = y < 5
    xa, ya = x[task_a], y[task_a]
    xb, yb = x[~task_a], y[~task_a] - 5  # digits 5-9 become classes 0-4
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        np.savez(work / "a.npz", x=xa, y=ya)
        print(f"task A: {len(ya)} images of digits 0-4 -> cnnspec train digits.cnn --network digits_a")
        quietly(
            "train",
            SPEC,
            "--network",
            "digits_a",
            "--data",
            str(work / "a.npz"),
            "-o",
            str(work / "a.onnx"),
            "--epochs",
            str(args.epochs_a),
            "--val-split",
            "0.2",
            "--seed",
            "0",
        )
        print(f"  digits_a: accuracy on task A (training data) {accuracy(work / 'a.onnx', xa, ya):.3f}")

        # (label, network in digits.cnn, start from task A's weights, learning rate): with
        # the backbone frozen, the few trainable weights can take larger steps.
        recipes = [
            ("from scratch", "scratch", False, args.lr),
            ("frozen backbone + new head", "frozen", True, args.lr * 10),
            ("fine-tuning everything", "finetune", True, args.lr),
        ]
        scores: dict[str, list[float]] = {name: [] for _, name, _, _ in recipes}
        for draw in range(args.draws):
            rng = np.random.default_rng(100 + draw)
            chosen = np.concatenate(
                [rng.choice(np.flatnonzero(yb == c), args.shots, replace=False) for c in range(5)]
            )
            test = np.setdiff1d(np.arange(len(yb)), chosen)
            np.savez(work / "b.npz", x=xb[chosen], y=yb[chosen])
            for _, name, transfer, lr in recipes:
                command = [
                    "train",
                    SPEC,
                    "--network",
                    name,
                    "--data",
                    str(work / "b.npz"),
                    "-o",
                    str(work / f"{name}.onnx"),
                    "--epochs",
                    str(args.epochs_b),
                    "--val-split",
                    "0",
                    "--batch-size",
                    "8",
                    "--seed",
                    str(draw),
                    "--lr",
                    str(lr),
                ]
                if transfer:
                    command += ["--weights", str(work / "a.onnx")]
                quietly(*command)
                scores[name].append(accuracy(work / f"{name}.onnx", xb[test], yb[test]))

    print(
        f"\ntask B: digits 5-9 from {args.shots} labelled images per class ({5 * args.shots} in all); "
        f"test accuracy on the other {len(yb) - 5 * args.shots} images, mean ± sd over {args.draws} draws"
    )
    for label, name, _, lr in recipes:
        values = scores[name]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"  {label:<28} (lr {lr:<6g}) {statistics.mean(values):.3f} ± {spread:.3f}   "
            + " ".join(f"{v:.3f}" for v in values)
        )


if __name__ == "__main__":
    main()
