"""A training recipe end to end, from image files, through the command line:

1. Write a class-folder data set: scikit-learn's 8x8 digits as 16x16 PNG files,
   digits 0-4 for a base network and 5-9 for the new task, each split into train/ and test/.
2. `cnnspec train` the base on digits 0-4 (streamed from the folders, with a random-crop
   augmentation, normalisation kept in the model, a cosine schedule and a checkpoint
   after every epoch).
3. Derive a network that freezes the trained backbone and adds a new head, and train
   it on digits 5-9 with early stopping; `--history` and `--plot` record the run.
4. `cnnspec evaluate` it on the held-out folder: accuracy, per class, confusion matrix.
5. `cnnspec run` it on one image: the normalisation comes from the model.

    pip install torch==2.13.0 && pip install -e '.[train,examples]'
    python examples/folder_recipe/run.py [--workdir DIR] [--epochs 12]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cnnspec.cli import main as cnnspec

SPEC = """network digits_base {
  input 1x16x16
  conv 16 3x3 pad=1; batchnorm; relu
  pool max 2
  conv 32 3x3 pad=1; batchnorm; relu
  pool max 2
  flatten
  dense 64 relu as features
  dense 5 softmax as head
}

network digits_new from digits_base {
  drop from head
  freeze through features      # the backbone keeps what it learnt on digits 0-4
  dense 5 softmax as new_head  # digits 5-9
}
"""


def write_folders(root: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        task = "a" if label < 5 else "b"
        part = "test" if rng.random() < 0.25 else "train"
        folder = root / f"{task}_{part}" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image / 16.0 * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((16, 16), Image.Resampling.BILINEAR).save(folder / f"{index:04d}.png")


def run(*args: str) -> None:
    print("$ cnnspec " + " ".join(args), flush=True)
    code = cnnspec(list(args))
    if code != 0:
        raise SystemExit(f"cnnspec failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cnnspec-recipe-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_folders(work / "data")
    spec = work / "digits.cnn"
    spec.write_text(SPEC)
    epochs = str(args.epochs)
    common = ["--mean", "0.3", "--std", "0.4", "--crop-pad", "1", "--workers", "2", "--batch-size", "32"]
    run(
        "train", str(spec), "--network", "digits_base", "--data", str(work / "data/a_train"), "--epochs", epochs,
        "--lr", "3e-3", "--schedule", "cosine", *common, "-o", str(work / "base.onnx"),
    )  # fmt: skip
    run(
        "train", str(spec), "--network", "digits_new", "--data", str(work / "data/b_train"), "--weights",
        str(work / "base.onnx"), "--epochs", epochs, "--lr", "1e-2", "--patience", "4", *common,
        "--history", str(work / "history.jsonl"), "--plot", str(work / "curves.png"), "-o", str(work / "new.onnx"),
    )  # fmt: skip
    run("evaluate", str(work / "new.onnx"), "--data", str(work / "data/b_test"))
    one = sorted((work / "data/b_test/7").iterdir())[0]
    run("run", str(work / "new.onnx"), "--input", str(one), "--top", "3", "--repeat", "1")
    print(f"files in {work}")


if __name__ == "__main__":
    main()
