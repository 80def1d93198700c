"""Train a checked network with PyTorch (the `cnnspec[train]` extra).

The model comes from `torch_backend` (same layer and tensor names as the ONNX export),
starts from a `WeightSet` (fresh, spec-written or carried over from a base network),
and goes back out through the one ONNX exporter. Frozen layers get no gradient and
their batch norms stay in inference mode, so their tensors come out bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .diagnostics import CnnspecError, Diagnostic
from .infer import CheckedNetwork
from .layers import format_shape
from .runtime import IMAGE_SUFFIXES, load_image
from .weights import WeightSet


def _fail(message: str, help: str | None = None) -> CnnspecError:
    return CnnspecError([Diagnostic("error", "bad-input", message, None, help)])


@dataclass
class Dataset:
    x: np.ndarray  # (N, *input_shape) float32
    y: np.ndarray  # (N,) int64
    classes: list[str]


def load_dataset(path: str | Path, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    """An `.npz` with `x` (N, C, H, W) and `y` (N,), or a folder with one subfolder of
    images per class (sorted names are the class indices)."""
    path = Path(path)
    if path.is_dir():
        data = _load_folder(path, input_shape)
        _check_labels(path, data.y, num_classes)
    elif path.is_file():
        data = _load_npz(path, input_shape, num_classes)
    else:
        raise _fail(f"{path}: no such file or folder")
    return data


def _check_labels(path: Path, y: np.ndarray, num_classes: int) -> None:
    """Labels are whole numbers in 0..num_classes-1; checked before anything is built
    from them (a label of 2^62 must not become a list of 2^62 class names)."""
    if len(y) == 0:
        raise _fail(f"{path}: holds no examples")
    if y.dtype.kind not in "biuf":
        raise _fail(
            f"{path}: y holds {y.dtype} values, not class numbers", "y holds one whole number per example"
        )
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise _fail(f"{path}: y holds NaN or infinite values, not class numbers")
    low, high = y.min(), y.max()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        shown = f"{bad:g}" if y.dtype.kind == "f" else str(bad)
        raise _fail(
            f"{path}: label {shown} is out of range: the network has {num_classes} outputs (labels "
            f"0..{num_classes - 1})",
            "change the last dense layer's units, or the labels",
        )
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise _fail(f"{path}: y holds {y.dtype} values that are not whole class numbers")


def _load_npz(path: Path, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files") or not {"x", "y"} <= set(archive.files):
                keys = ", ".join(getattr(archive, "files", [])) or "none"
                raise _fail(
                    f"{path}: needs arrays 'x' and 'y' (it has: {keys})",
                    "numpy.savez(path, x=images_NCHW, y=labels)",
                )
            x, y = np.asarray(archive["x"]), np.asarray(archive["y"])
    except CnnspecError:
        raise
    except Exception as exc:  # zip, pickle and format errors all mean an unreadable file
        raise _fail(f"{path}: not a readable .npz ({type(exc).__name__})") from None
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise _fail(
            f"{path}: x is {format_shape(x.shape)}, the network takes Nx{format_shape(input_shape)}",
            "x holds one example per row, channels first",
        )
    if y.ndim != 1 or len(y) != len(x):
        shown = format_shape(y.shape) or "a single value"
        raise _fail(f"{path}: y is {shown}, expected {len(x)} labels (one per example)")
    if x.dtype.kind not in "biuf":
        raise _fail(f"{path}: x holds {x.dtype} values, not numbers", "x holds images as numbers, NxCxHxW")
    _check_labels(path, y, num_classes)
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise _fail(f"{path}: x holds NaN or infinite values", "clean or drop those examples first")
    classes = [str(i) for i in range(num_classes)]
    return Dataset(x, y.astype(np.int64), classes)


def _load_folder(path: Path, input_shape: tuple[int, ...]) -> Dataset:
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise _fail(f"{path}: no class subfolders", "put the images of class NAME in PATH/NAME/")
    xs, ys = [], []
    for index, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise _fail(
                f"{folder}: class '{folder.name}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for image in images:
            xs.append(load_image(image, input_shape, None, None))
            ys.append(index)
    return Dataset(np.stack(xs), np.asarray(ys, np.int64), [f.name for f in folders])


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None


@dataclass
class TrainResult:
    arrays: dict[str, np.ndarray]  # the kept (best) weights, by cnnspec name
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


def split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_split))
    if val_split > 0 and n_val == 0 and n > 1:
        n_val = 1
    return order[n_val:], order[:n_val]


def train(
    network: CheckedNetwork,
    weights: WeightSet,
    data: Dataset,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Adam on the trainable tensors, cross-entropy on the class scores; keeps the epoch
    with the best validation accuracy (the last one without a validation split)."""
    import torch

    from .torch_backend import build_module

    if len(network.outputs) > 1:
        raise _fail(
            f"training needs one output; '{network.name}' has {len(network.outputs)} "
            f"({', '.join(network.outputs)})",
            "derive a network for training that keeps one: `output NAME`",
        )
    if len(network.output_shape) != 1:
        raise _fail(
            f"training needs class scores out of the network; '{network.name}' gives "
            f"{format_shape(network.output_shape)}",
            "end the network with flatten and a dense layer",
        )
    torch.manual_seed(seed)
    module = build_module(network, weights.arrays)
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise _fail(f"every layer of '{network.name}' is frozen: nothing to train")
    optimizer = torch.optim.Adam(trainable, lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_idx, val_idx = split(len(data.y), val_split, seed)
    if len(train_idx) == 0:
        raise _fail(f"no examples left to train on after a validation split of {val_split}")
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(arrays=module.cnnspec_tensors())
    best_key = (-1.0, math.inf)
    bar = _Progress(epochs, math.ceil(len(train_idx) / batch_size), progress)
    for epoch in range(1, epochs + 1):
        module.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = module.forward_logits(x[batch])
            loss = loss_fn(logits, y[batch])
            if not torch.isfinite(loss):
                bar.close()
                raise _fail(
                    f"the training loss became {float(loss)} at epoch {epoch}, step {start // batch_size + 1}: "
                    "training diverged and was stopped",
                    f"lower the learning rate (--lr {lr:g} now) or check the data",
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += int((logits.argmax(1) == y[batch]).sum())
            bar.step(
                epoch,
                total_loss / min(start + len(batch), len(order)),
                correct / min(start + len(batch), len(order)),
            )
        val_loss, val_acc = _evaluate(module, x, y, val_idx, loss_fn) if len(val_idx) else (None, None)
        stats = EpochStats(epoch, total_loss / len(order), correct / len(order), val_loss, val_acc)
        result.history.append(stats)
        bar.end_epoch(stats)
        key = (val_acc, -val_loss) if val_acc is not None and val_loss is not None else (epoch, 0.0)
        if key > best_key:
            best_key, result.best_epoch = key, epoch
            result.arrays = module.cnnspec_tensors()
    bar.close()
    return result


def _evaluate(module, x, y, idx, loss_fn) -> tuple[float, float]:
    import torch

    module.eval()
    with torch.no_grad():
        index = torch.from_numpy(idx)
        logits = module.forward_logits(x[index])
        return float(loss_fn(logits, y[index])), float((logits.argmax(1) == y[index]).float().mean())


class _Progress:
    """A rich progress bar per epoch on a terminal; one plain line per epoch otherwise."""

    def __init__(self, epochs: int, steps: int, enabled: bool):
        import sys

        self.epochs, self.steps, self.enabled = epochs, steps, enabled
        self.bar: Any = None  # rich.progress.Progress, imported only on a terminal
        self.task: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self.bar.start()

    def step(self, epoch: int, loss: float, accuracy: float) -> None:
        if self.bar is None:
            return
        if self.task is None or self.bar.tasks[self.task].fields["epoch"] != epoch:
            self.task = self.bar.add_task("", total=self.steps, epoch=epoch, epochs=self.epochs, metrics="")
        self.bar.update(self.task, advance=1, metrics=f"loss {loss:.4f} acc {accuracy:.3f}")

    def end_epoch(self, stats: EpochStats) -> None:
        if not self.enabled:
            return
        text = f"loss {stats.loss:.4f} acc {stats.accuracy:.3f}"
        if stats.val_accuracy is not None:
            text += f"  val_loss {stats.val_loss:.4f} val_acc {stats.val_accuracy:.3f}"
        if self.bar is not None:
            self.bar.update(self.task, metrics=text)
        else:
            import sys

            print(f"epoch {stats.epoch}/{self.epochs}  {text}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
