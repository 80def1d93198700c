"""Train a checked network with PyTorch (the `cnnspec[train]` extra).

The model comes from `modules.py` (same layer and tensor names as the ONNX export),
starts from a `WeightSet` (fresh, spec-written or carried over from a base network),
and goes back out through the one ONNX exporter. Frozen layers get no gradient and
their batch norms stay in inference mode, so their tensors come out bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..base.diagnostics import CnnspecError, fail
from ..base.files import npz_fits
from ..deploy.footprint import Measured, measured_line
from ..deploy.weights import WeightSet
from ..infer import CheckedNetwork
from ..inputs import IMAGE_SUFFIXES, load_image
from ..kinds import format_shape
from .data import FolderData, Preprocess, collate, list_folder, npz_array


@dataclass
class Dataset:
    x: np.ndarray  # (N, *input_shape) float32
    y: np.ndarray  # (N,) int64
    classes: list[str]


def load_dataset(
    path: str | Path, input_shape: tuple[int, ...], num_classes: int, stream: bool = False
) -> Dataset | FolderData:
    """An `.npz` with `x` (N, C, H, W) and `y` (N,), or a folder with one subfolder of
    images per class (sorted names are the class indices). With `stream`, a folder is
    listed and its images read when needed (see data.py)."""
    path = Path(path)
    if path.is_dir():
        data = list_folder(path, input_shape) if stream else _load_folder(path, input_shape)
        _check_labels(path, data.y, num_classes)
    elif path.is_file():
        data = _load_npz(path, input_shape, num_classes)
    else:
        raise fail("bad-input", f"{path}: no such file or folder")
    return data


def _check_labels(path: Path, y: np.ndarray, num_classes: int) -> None:
    """Labels are whole numbers in 0..num_classes-1; checked before anything is built
    from them (a label of 2^62 must not become a list of 2^62 class names)."""
    if len(y) == 0:
        raise fail("bad-input", f"{path}: holds no examples")
    if y.dtype.kind not in "biuf":
        raise fail(
            "bad-input",
            f"{path}: y holds {y.dtype} values, not class numbers",
            "y holds one whole number per example",
        )
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise fail("bad-input", f"{path}: y holds NaN or infinite values, not class numbers")
    low, high = y.min(), y.max()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        shown = f"{bad:g}" if y.dtype.kind == "f" else str(bad)
        raise fail(
            "bad-input",
            f"{path}: label {shown} is out of range: the network has {num_classes} outputs (labels "
            f"0..{num_classes - 1})",
            "change the last dense layer's units, or the labels",
        )
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise fail("bad-input", f"{path}: y holds {y.dtype} values that are not whole class numbers")


def _load_npz(path: Path, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files") or not {"x", "y"} <= set(archive.files):
                keys = ", ".join(getattr(archive, "files", [])) or "none"
                raise fail(
                    "bad-input",
                    f"{path}: needs arrays 'x' and 'y' (it has: {keys})",
                    "numpy.savez(path, x=images_NCHW, y=labels)",
                )
        problem = npz_fits(path, ("x", "y"), copies=2)  # as read, and as float32: before inflating
        if problem:
            raise fail("bad-input", f"{path}: {problem}")
        x, y = npz_array(path, "x"), npz_array(path, "y")  # x memory-mapped when stored uncompressed
    except CnnspecError:
        raise
    except Exception as exc:  # zip, pickle and format errors all mean an unreadable file
        raise fail("bad-input", f"{path}: not a readable .npz ({type(exc).__name__})") from None
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise fail(
            "bad-input",
            f"{path}: x is {format_shape(x.shape)}, the network takes Nx{format_shape(input_shape)}",
            "x holds one example per row, channels first",
        )
    if y.ndim != 1 or len(y) != len(x):
        shown = format_shape(y.shape) or "a single value"
        raise fail("bad-input", f"{path}: y is {shown}, expected {len(x)} labels (one per example)")
    if x.dtype.kind not in "biuf":
        raise fail(
            "bad-input",
            f"{path}: x holds {x.dtype} values, not numbers",
            "x holds images as numbers, NxCxHxW",
        )
    _check_labels(path, y, num_classes)
    if x.dtype.kind == "f":  # in chunks: a memory-mapped x is never read whole
        for start in range(0, len(x), 4096):
            if not np.all(np.isfinite(x[start : start + 4096])):
                raise fail(
                    "bad-input",
                    f"{path}: x holds NaN or infinite values",
                    "clean or drop those examples first",
                )
    if not isinstance(x, np.memmap):
        x = x.astype(np.float32)
    classes = [str(i) for i in range(num_classes)]
    return Dataset(x, y.astype(np.int64), classes)


def _load_folder(path: Path, input_shape: tuple[int, ...]) -> Dataset:
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise fail("bad-input", f"{path}: no class subfolders", "put the images of class NAME in PATH/NAME/")
    xs, ys = [], []
    for index, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise fail(
                "bad-input",
                f"{folder}: class '{folder.name}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
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
    lr: float = 0.0


@dataclass
class TrainResult:
    arrays: dict[str, np.ndarray]  # the kept (best) weights, by cnnspec name
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False  # by --patience
    ranks_agree: bool | None = None  # several processes: whether all ended with the same weights

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


def split(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_split))
    if val_split > 0 and n_val == 0 and n > 1:
        n_val = 1
    return order[n_val:], order[:n_val]


@dataclass
class Recipe:
    """How to train, beyond the data: what `cnnspec train`'s options set."""

    optimizer: str = "adam"  # adam | adamw | sgd (with momentum)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | step
    step_size: int = 10  # epochs between steps of the `step` schedule
    gamma: float = 0.1  # its factor
    patience: int | None = None  # stop after this many epochs without a better validation accuracy
    device: str = "cpu"  # cpu | cuda
    amp: bool = False  # mixed precision (CUDA only): bf16 where supported, else fp16 with loss scaling


CHECKPOINT_VERSION = 2  # 2: the run's settings are stored and compared on --resume


def train(
    network: CheckedNetwork,
    weights: WeightSet,
    data: Dataset | FolderData,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 0,
    progress: bool = True,
    recipe: Recipe | None = None,
    checkpoint: Path | None = None,
    resume: Path | None = None,
    stop_after: int | None = None,
    on_epoch=None,
    preprocess: Preprocess | None = None,
    workers: int = 0,
    on_bad_image: str = "fail",
) -> TrainResult:
    """Train the trainable tensors with cross-entropy on the class scores; keep the epoch
    with the best validation accuracy (the last one without a validation split).

    `checkpoint`: written atomically after every epoch; `resume` continues from one, so
    that a run stopped after epoch k and resumed ends as an uninterrupted run with the
    same seed would. `stop_after`: the number of epochs to run in this call (a job in
    time slices). `on_epoch(stats, result)` is called after each epoch. `preprocess`:
    normalisation and augmentation (data.py); `workers`: processes reading a folder's
    images; `on_bad_image`: `fail` or `skip` an image that cannot be read."""
    import torch

    recipe = recipe or Recipe()
    _check_trainable(network)
    run, train_idx, val_idx = _start_run(
        network, weights, data, epochs, lr, batch_size, val_split, seed, recipe,
        _FeedOptions(preprocess or Preprocess(), workers, on_bad_image),
    )  # fmt: skip
    module, group, result = run.module, run.group, run.result
    run.settings = _settings(network, data, epochs, lr, batch_size, val_split, seed, recipe)
    first_epoch = 1 if resume is None else run.resume(resume)
    run.amp, run.scaler = _mixed_precision(torch, recipe)
    last = epochs if stop_after is None else min(epochs, first_epoch - 1 + stop_after)
    run.bar = _Progress(
        epochs, math.ceil(len(train_idx) / group.size / batch_size), progress and group.rank == 0
    )
    for epoch in range(first_epoch, last + 1):
        if recipe.patience is not None and run.waited >= recipe.patience:
            break
        stats = run.epoch(epoch, train_idx, val_idx, checkpoint)
        if on_epoch is not None and group.rank == 0:
            on_epoch(stats, run.result)
    run.bar.close()
    result.ranks_agree = group.agree(module)
    result.stopped_early = (
        recipe.patience is not None and run.waited >= recipe.patience and len(result.history) < epochs
    )
    return result


def measure_steps(network: CheckedNetwork, weights: WeightSet, recipe: Recipe, probes: tuple[int, int]):
    """footprint.Measured: the peak memory of one training step (forward, backward,
    optimizer step) on batches of each of `probes` sizes of zeros (footprint.measured_line),
    through a module of its own (the run's weights and random numbers untouched), on the
    CPU. Of what the first step left resident, what the module, its gradients and the
    optimizer's state held (freed with them: the run will hold its own) is in the line's
    fixed bytes; PyTorch's own (its first step's thread pools and caches) stays in the
    process, outside."""
    import torch

    from ..base.resources import release_free_memory, resident_memory

    _check_trainable(network)  # as the run would, before a step of a network it cannot train
    random_state = torch.get_rng_state()
    before = resident_memory()
    try:
        step = _probe_step(torch, network, weights, recipe)
        built = max(resident_memory() - before, 0)
        line, lasting = measured_line(step, probes)
    finally:
        torch.set_rng_state(random_state)
    del step  # and with it the module: what stays after is PyTorch's
    release_free_memory()
    held = max(built + lasting - max(resident_memory() - before, 0), 0)
    return Measured(line.fixed + held, line.per_image, line.probes)


def _probe_step(torch, network, weights, recipe):
    """A training step on `size` zeros through a module of its own (freed with the step)."""
    from .modules import build_module

    module = build_module(network, weights.arrays)
    model = _logits(torch, module)
    model.train()
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(torch, trainable, 1e-3, recipe) if trainable else None
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(size: int) -> None:
        inputs = torch.zeros((size, *network.input_shape))
        loss = loss_fn(model(inputs).float(), torch.zeros(size, dtype=torch.long))
        if optimizer is not None:  # (every layer frozen: the run refuses it, later)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return step


class _FeedOptions(NamedTuple):
    preprocess: Preprocess
    workers: int  # processes reading a folder's images
    on_bad_image: str  # fail or skip


def _start_run(network, weights, data, epochs, lr, batch_size, val_split, seed, recipe, options) -> tuple:
    """The module, optimizer, schedule, split and feed of a run, in the order that draws
    the same random numbers on every run with this seed."""
    import torch

    from .modules import build_module

    torch.manual_seed(seed)
    device = torch.device(recipe.device)
    module = build_module(network, weights.arrays).to(device)
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise fail("bad-input", f"every layer of '{network.name}' is frozen: nothing to train")
    optimizer = _optimizer(torch, trainable, lr, recipe)
    scheduler = _scheduler(torch, optimizer, epochs, recipe)
    train_idx, val_idx = split(len(data.y), val_split, seed)
    if len(train_idx) == 0:
        raise fail("bad-input", f"no examples left to train on after a validation split of {val_split}")
    if recipe.patience is not None and len(val_idx) == 0:
        raise fail("bad-input", "--patience watches the validation accuracy: it needs --val-split above 0")
    feed = _Feed(data, options.preprocess, seed, batch_size, options.workers, options.on_bad_image, device)
    generator = torch.Generator().manual_seed(seed)
    group = _Group(torch)  # several processes (torchrun): each trains on its share of every batch
    step_model = group.wrap(module)
    torch.manual_seed(seed + group.rank)  # dropout draws differ between processes
    result = TrainResult(arrays=module.cnnspec_tensors())
    run = _Run(
        torch,
        network,
        module,
        step_model,
        optimizer,
        scheduler,
        feed,
        generator,
        group,
        lr,
        batch_size,
        result,
    )
    return run, train_idx, val_idx


def _check_trainable(network: CheckedNetwork) -> None:
    """Training fits class scores: one output, a vector."""
    if len(network.outputs) > 1:
        raise fail(
            "bad-input",
            f"training needs one output; '{network.name}' has {len(network.outputs)} "
            f"({', '.join(network.outputs)})",
            "derive a network for training that keeps one: `output NAME`",
        )
    if len(network.output_shape) != 1:
        raise fail(
            "bad-input",
            f"training needs class scores out of the network; '{network.name}' gives "
            f"{format_shape(network.output_shape)}",
            "end the network with flatten and a dense layer",
        )


@dataclass
class _Run:
    """One training run's moving parts; `train` drives it an epoch at a time."""

    torch: Any
    network: CheckedNetwork
    module: Any
    step_model: Any  # the module, wrapped for several processes
    optimizer: Any
    scheduler: Any
    feed: _Feed
    generator: Any
    group: _Group
    lr: float
    batch_size: int
    result: TrainResult
    best_key: tuple = (-1.0, math.inf)
    waited: int = 0  # epochs without a better validation accuracy
    amp: Any = None
    scaler: Any = None
    bar: Any = None
    settings: dict = field(default_factory=dict)  # what makes this run this run (see _settings)

    def __post_init__(self) -> None:
        self.loss_fn = self.torch.nn.CrossEntropyLoss()

    def resume(self, path: Path) -> int:
        """Restore a checkpoint of this very run; the epoch to continue from."""
        torch = self.torch
        state = _load_checkpoint(
            torch, path, self.network, self.module, self.optimizer, self.scheduler, self.generator, self.group,
            self.settings,
        )  # fmt: skip
        try:  # a crafted or damaged checkpoint: its fields checked, not trusted
            self.result.history = [EpochStats(**h) for h in state["history"]]
            self.result.best_epoch = int(state["best_epoch"])
            self.result.arrays = {str(k): v.numpy() for k, v in state["best_arrays"].items()}
            self.best_key, self.waited = tuple(float(k) for k in state["best_key"]), int(state["waited"])
            epoch = int(state["epoch"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise fail(
                "bad-checkpoint", f"{path}: not a usable cnnspec checkpoint ({type(exc).__name__}: {exc})"
            ) from None
        if len(self.best_key) != 2 or not 0 <= self.result.best_epoch <= epoch == len(self.result.history):
            raise fail(
                "bad-checkpoint", f"{path}: not a usable cnnspec checkpoint (its epochs do not add up)"
            )
        return epoch + 1

    def epoch(self, epoch: int, train_idx, val_idx, checkpoint: Path | None) -> EpochStats:
        """Train, validate, keep the best, write the checkpoint."""
        total_loss, correct, seen = self.train_epoch(train_idx, epoch)
        val_loss, val_acc = (
            _evaluate(self.module, self.feed, val_idx, self.loss_fn, epoch, self.group)
            if len(val_idx)
            else (None, None)
        )
        lr = self.optimizer.param_groups[0]["lr"]
        stats = EpochStats(epoch, total_loss / seen, correct / seen, val_loss, val_acc, lr)
        self.end_epoch(stats, checkpoint)
        return stats

    def train_epoch(self, train_idx, epoch: int) -> tuple[float, int, int]:
        """One pass over this process's share of the training examples: loss, correct, seen
        (summed over every process)."""
        torch = self.torch
        self.module.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=self.generator)].numpy()
        total_loss, correct, seen = 0.0, 0, 0
        batches = self.feed.batches(self.group.share(order), epoch, training=True)
        for step, (inputs, labels) in enumerate(batches):
            loss, logits = self.step(inputs, labels, epoch, step)
            total_loss += loss * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            self.bar.step(epoch, total_loss / seen, correct / seen)
        total_loss, correct, seen = self.group.sum(total_loss, correct, seen)
        self.group.share_buffers(self.module)  # batch-norm statistics: the first process's, everywhere
        if seen == 0:
            self.bar.close()
            raise fail("bad-input", "no readable examples to train on", "check the images, or the data set")
        return total_loss, correct, seen

    def step(self, inputs, labels, epoch: int, step: int) -> tuple[float, Any]:
        """One optimizer step; stops the run when the loss is not finite."""
        torch = self.torch
        with self.amp():
            logits = self.step_model(inputs)
            loss = self.loss_fn(logits.float(), labels)
        if not torch.isfinite(loss):
            self.bar.close()
            raise fail(
                "bad-input",
                f"the training loss became {float(loss)} at epoch {epoch}, step {step + 1}: "
                "training diverged and was stopped",
                f"lower the learning rate (--lr {self.lr:g} now) or check the data",
            )
        self.optimizer.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.item(), logits

    def end_epoch(self, stats: EpochStats, checkpoint: Path | None) -> None:
        """The schedule stepped, the best epoch kept, the checkpoint written."""
        if self.scheduler is not None:
            self.scheduler.step()
        self.result.history.append(stats)
        self.bar.end_epoch(stats)
        val_acc, val_loss = stats.val_accuracy, stats.val_loss
        key = (val_acc, -val_loss) if val_acc is not None and val_loss is not None else (stats.epoch, 0.0)
        if key > self.best_key:
            self.best_key, self.result.best_epoch, self.waited = key, stats.epoch, 0
            self.result.arrays = self.module.cnnspec_tensors()
        else:
            self.waited += 1
        rng_states = self.group.gather_rng()  # every process's dropout stream, for a resume
        if checkpoint is not None and self.group.rank == 0:
            _save_checkpoint(
                self.torch,
                checkpoint,
                self.network,
                stats.epoch,
                self.module,
                self.optimizer,
                self.scheduler,
                self.generator,
                self.result,
                self.best_key,
                self.waited,
                rng_states,
                self.settings,
            )


def _optimizer(torch, parameters, lr: float, recipe: Recipe):
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(parameters, lr=lr, weight_decay=recipe.weight_decay)


def _scheduler(torch, optimizer, epochs: int, recipe: Recipe):
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    return None


def _mixed_precision(torch, recipe: Recipe):
    """(a context for the forward pass, a gradient scaler or None)."""
    import contextlib

    if not recipe.amp:
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


# The options a resumed run must share with the interrupted one, as `cnnspec train` names them.
SETTING_OPTIONS = {
    "spec": "the network (its layers)",
    "data": "--data",
    "seed": "--seed",
    "val_split": "--val-split",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "epochs": "--epochs",
    "optimizer": "--optimizer",
    "momentum": "--momentum",
    "weight_decay": "--weight-decay",
    "schedule": "--schedule",
    "step_size": "--step-size",
    "gamma": "--gamma",
    "patience": "--patience",
}


def _settings(network, data, epochs, lr, batch_size, val_split, seed, recipe: Recipe) -> dict:
    """What makes a run this run: resuming with any of it changed would be another run
    (another split, schedule, or data), so --resume refuses it. The device is left out."""
    import hashlib

    layers = "\n".join(f"{c.name} {c.layer.spec_text()} {c.output_shape}" for c in network.layers)
    fingerprint = hashlib.sha256(np.ascontiguousarray(data.y).tobytes())
    fingerprint.update("\n".join(data.classes).encode())
    if isinstance(data, FolderData):
        fingerprint.update("\n".join(p.name for p in data.paths).encode())
    else:
        fingerprint.update(repr(tuple(data.x.shape)).encode())
    recipe_fields = {k: getattr(recipe, k) for k in ("optimizer", "momentum", "weight_decay", "schedule")}
    recipe_fields |= {k: getattr(recipe, k) for k in ("step_size", "gamma", "patience")}
    return {
        "spec": hashlib.sha256(layers.encode()).hexdigest()[:16],
        "data": fingerprint.hexdigest()[:16],
        "seed": seed,
        "val_split": val_split,
        "batch_size": batch_size,
        "lr": lr,
        "epochs": epochs,
        **recipe_fields,
    }


def _same_settings(path: Path, stored, current: dict) -> None:
    if not isinstance(stored, dict):
        raise fail("bad-checkpoint", f"{path}: not a usable cnnspec checkpoint (no settings)")
    changed = [
        f"{SETTING_OPTIONS.get(key, key)} (the checkpoint's run: {stored.get(key)!r}, now: {value!r})"
        for key, value in current.items()
        if stored.get(key) != value
    ]
    if changed:
        raise fail(
            "bad-checkpoint",
            f"{path}: --resume continues the interrupted run, but these changed: {'; '.join(changed)}",
            "resume with the same spec, data and options, or start a new run without --resume",
        )


def _save_checkpoint(
    torch,
    path: Path,
    network,
    epoch,
    module,
    optimizer,
    scheduler,
    generator,
    result,
    best_key,
    waited,
    rng_states,
    settings,
):
    """Everything a resumed run needs to continue exactly, written atomically."""
    import dataclasses

    from ..base.files import write_atomically

    state = {
        "version": CHECKPOINT_VERSION,
        "network": network.name,
        "epoch": epoch,
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "torch_rng": rng_states,  # one per process
        "shuffle_rng": generator.get_state(),
        "history": [dataclasses.asdict(h) for h in result.history],
        "best_epoch": result.best_epoch,
        "best_key": list(best_key),
        "best_arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in result.arrays.items()},
        "waited": waited,
        "settings": settings,
    }
    write_atomically(path, lambda temp: torch.save(state, temp))


def _load_checkpoint(
    torch, path: Path, network, module, optimizer, scheduler, generator, group, settings: dict
) -> dict:
    """Restore a checkpoint into the fresh objects; tensors only (weights_only: never
    unpickles code from the file). Its run's settings are compared first: a changed
    option is named as such, not as weights that do not fit."""
    import warnings

    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle: the error below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise fail("bad-checkpoint", f"{path}: not a cnnspec checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise fail("bad-checkpoint", f"{path}: not a cnnspec checkpoint (or one of another version)")
    if state.get("network") != network.name:
        raise fail(
            "bad-checkpoint", f"{path}: a checkpoint of '{state.get('network')}', not of '{network.name}'"
        )
    _same_settings(path, state.get("settings"), settings)
    try:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"]:
            scheduler.load_state_dict(state["scheduler"])
        states = state["torch_rng"]
        if len(states) != group.size:
            raise ValueError(f"it was written by {len(states)} processes, this run has {group.size}")
        torch.set_rng_state(states[group.rank])
        generator.set_state(state["shuffle_rng"])
    except (
        RuntimeError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:  # crafted fields
        raise fail(
            "bad-checkpoint",
            f"{path}: does not fit this network and recipe ({str(exc).splitlines()[0][:200]})",
            "resume with the spec, --weights and options of the interrupted run",
        ) from None
    return state


def _evaluate(module, feed, idx, loss_fn, epoch: int, group) -> tuple[float, float]:
    import torch

    module.eval()
    total, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for inputs, labels in feed.batches(group.share(idx, pad=False), epoch, training=False):
            logits = module.forward_logits(inputs).float()
            total += float(loss_fn(logits, labels)) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    total, correct, seen = group.sum(total, correct, seen)
    return (total / seen, correct / seen) if seen else (math.nan, 0.0)


class _Group:
    """The processes of a data-parallel run started by torchrun (one alone otherwise):
    DDP averages the gradients, so every process holds the same weights after each step."""

    def __init__(self, torch):
        self.torch = torch
        self.dist = torch.distributed
        self.active = self.dist.is_available() and self.dist.is_initialized()
        self.rank = self.dist.get_rank() if self.active else 0
        self.size = self.dist.get_world_size() if self.active else 1

    def wrap(self, module):
        """The model a training step calls: the logits, through DDP when distributed."""
        logits = _logits(self.torch, module)
        if not self.active:
            return logits
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(logits)

    def share(self, order: np.ndarray, pad: bool = True) -> np.ndarray:
        """This process's part of an epoch's order; padded (by wrapping round) so that every
        process takes the same number of steps, which DDP's collective calls need."""
        if self.size == 1:
            return order
        if pad and len(order) % self.size:
            order = np.concatenate([order, order[: self.size - len(order) % self.size]])
        return order[self.rank :: self.size]

    def sum(self, *values: float) -> tuple:
        if not self.active:
            return values
        tensor = self.torch.tensor(values, dtype=self.torch.float64)
        self.dist.all_reduce(tensor)
        return tuple(tensor.tolist())

    def share_buffers(self, module) -> None:
        """DDP copies the first process's buffers at each forward; after the epoch's last
        step each process has updated its own once more."""
        if self.active:
            for buffer in module.buffers():
                self.dist.broadcast(buffer, 0)

    def gather_rng(self) -> list:
        state = self.torch.get_rng_state()
        if not self.active:
            return [state]
        states = [self.torch.empty_like(state) for _ in range(self.size)]
        self.dist.all_gather(states, state)
        return states

    def agree(self, module) -> bool | None:
        if not self.active:
            return None
        flat = self.torch.cat([p.detach().reshape(-1).double().cpu() for p in module.state_dict().values()])
        first = flat.clone()
        self.dist.broadcast(first, 0)
        same = self.torch.tensor([int(self.torch.equal(flat, first))])
        self.dist.all_reduce(same, op=self.dist.ReduceOp.MIN)
        return bool(same.item())


def _logits(torch, module):
    """`module.forward_logits` as a module's forward, so that DDP can wrap it (defined
    here: torch is imported only when training)."""

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_logits(x)

    return Logits(module)


class _Feed:
    """Batches in a given order: sliced from arrays (memory-mapped or not), or read from a
    folder by a DataLoader; normalised, and augmented when training."""

    def __init__(
        self, data, preprocess: Preprocess, seed: int, batch_size: int, workers: int, on_bad: str, device
    ):
        self.data, self.preprocess, self.seed = data, preprocess, seed
        self.batch_size, self.workers, self.on_bad, self.device = batch_size, workers, on_bad, device
        self.skipped: set[str] = set()

    def batches(self, order: np.ndarray, epoch: int, training: bool):
        import torch

        if isinstance(self.data, FolderData):
            yield from self._folder(order, epoch, training)
            return
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            x = self.preprocess.normalise(np.asarray(self.data.x[index], np.float32))
            if training and self.preprocess.augments:
                x = np.stack(
                    [self.preprocess.augment(x[i], self.seed, epoch, int(j)) for i, j in enumerate(index)]
                )
            yield torch.from_numpy(x).to(self.device), torch.from_numpy(self.data.y[index]).to(self.device)

    def _folder(self, order: np.ndarray, epoch: int, training: bool):
        from torch.utils.data import DataLoader

        from .data import ImageFolderDataset

        dataset = ImageFolderDataset(self.data, order, self.preprocess, self.seed, training)
        dataset.epoch = epoch
        loader: Any = DataLoader(
            dataset,  # type: ignore[arg-type]  # the Dataset protocol, without importing torch at import time
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=collate,
        )
        for inputs, labels, broken in loader:
            for problem in broken:
                if self.on_bad == "fail":
                    raise fail("bad-input", problem, "skip unreadable images with --on-bad-image skip")
                if problem not in self.skipped:
                    self.skipped.add(problem)
                    import sys

                    print(f"cnnspec: warning: skipped {problem}", file=sys.stderr)
            if inputs is not None:
                yield inputs.to(self.device), labels.to(self.device)


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
