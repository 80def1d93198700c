"""`cnnspec train`: train what a spec leaves trainable, with PyTorch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import (
    EXIT_ERRORS,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    check_measured_training,
    check_train_memory,
    check_weight_memory,
    check_weights_option,
    checked_network,
    distinct_outputs,
    files_read,
    output_target,
    print_error,
    readable_file,
    safe_text,
    say,
    write_model_file,
)
from .options import export_options, finite_number, positive_count

MAX_WORKERS = 64  # processes reading images; more only exhausts the machine


def cmd_train(args) -> int:
    """Train; under torchrun (WORLD_SIZE above 1) as one of several data-parallel
    processes, of which only the first prints and writes."""
    try:
        import torch
    except ImportError:
        raise UsageError("`cnnspec train` needs PyTorch: pip install 'cnnspec[train]'") from None
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return _train(args)
    if args.on_bad_image == "skip":
        raise UsageError(
            "--on-bad-image skip would give the processes different numbers of steps; clean the data"
        )
    import contextlib
    import io

    import torch.distributed as dist

    device = _torch_device(args.device)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    try:
        if dist.get_rank() == 0:
            return _train(args, processes=world)
        quiet = io.StringIO()  # the first process speaks for all
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return _train(args, processes=world)
    finally:
        # All processes reach the end before any tears the group down: one that left while
        # another's gloo threads still talked to it aborted now and then ("terminate called").
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()


def _train(args, processes: int = 1) -> int:
    from ..base.diagnostics import CnnspecError

    writer = int(os.environ.get("RANK", "0") or 0) == 0
    device = _check_training_options(args)
    network, result = checked_network(args.file, args.network, args)
    if network is None:
        return EXIT_ERRORS
    read = files_read(result, args) + ((Path(args.resume),) if args.resume else ())
    checkpoint = _check_outputs(args, read, writer)
    try:
        outcome = _run_training(args, network, result, read, checkpoint, device, processes, writer)
    except CnnspecError as exc:
        print_error(exc)
        usage = any(d.code == "bad-checkpoint" for d in exc.diagnostics)  # the --resume file, not the spec
        return EXIT_USAGE if usage else EXIT_ERRORS
    if writer:
        checkpoint.unlink(missing_ok=True)  # the run finished: nothing left to resume
    if processes > 1 and not outcome.ranks_agree:
        say("error", f"the {processes} processes ended with different weights (a bug: please report it)")
        return EXIT_INTERNAL
    _print_outcome(args, outcome, processes)
    return EXIT_OK


def _check_training_options(args) -> str:
    """Every option, before the spec is read; the device to train on."""
    device = _torch_device(args.device)
    if args.amp and device != "cuda":
        raise UsageError(
            "--amp (mixed precision) runs on CUDA: it needs --device cuda (or auto on a GPU machine)"
        )
    for name, value in (("--patience", args.patience), ("--step-size", args.step_size)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1")
    if args.weight_decay < 0 or not 0 <= args.momentum < 1 or not 0 < args.gamma <= 1:
        raise UsageError("--weight-decay must be 0 or more, --momentum in [0, 1), --gamma in (0, 1]")
    for name, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1")
    if not 0 <= args.val_split < 1:
        raise UsageError("--val-split must be at least 0 and below 1")
    if args.lr <= 0:
        raise UsageError("--lr must be above 0")
    check_weights_option(args)
    if not Path(args.data).exists():
        raise UsageError(f"{args.data}: no such file or folder")
    return device


def _check_outputs(args, read: tuple, writer: bool) -> Path:
    """Every file training writes, before it starts (a bad -o must not cost the run); the
    checkpoint's path."""
    output_target(args.output, read)
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.output).with_suffix(".ckpt")
    if args.resume:
        readable_file(args.resume, "checkpoint")
    elif checkpoint.exists() and writer:  # an interrupted run's: never overwritten unasked
        raise UsageError(
            f"{checkpoint} exists (an interrupted run?): continue it with --resume {checkpoint}, or remove it"
        )
    if not args.resume or Path(args.resume).resolve() != checkpoint.resolve():
        output_target(str(checkpoint), read)
    for extra in (args.history, args.plot):
        if extra:
            output_target(extra, read)
    distinct_outputs(
        {"-o": args.output, "--checkpoint": checkpoint, "--history": args.history, "--plot": args.plot}
    )
    return checkpoint


def _run_training(args, network, result, read, checkpoint: Path, device: str, processes: int, writer: bool):
    """The plan printed, the training run, the model (and plot) written."""
    from ..deploy.weights import build_weights, load_file
    from ..training.train import Dataset, Recipe, load_dataset, measure_steps, train

    recipe = Recipe(
        args.optimizer, args.momentum, args.weight_decay, args.schedule, args.step_size or 10, args.gamma,
        args.patience, device, args.amp,
    )  # fmt: skip
    preprocess = _preprocess(args, network)
    check_weight_memory(network)
    provided = load_file(args.weights) if args.weights else None
    weights = build_weights(network, args.seed, provided)
    data = load_dataset(args.data, network.input_shape, network.output_shape[0], stream=True)
    if device == "cpu":  # a GPU's own memory is not what this process's estimate measures
        held = data.x.size * 4 if isinstance(data, Dataset) else 0  # a folder is read a batch at a time
        batch = min(args.batch_size, len(data.y))
        probes = check_train_memory(network, batch, args, held, processes)
        if probes is not None:
            check_measured_training(
                network, batch, args, held, measure_steps(network, weights, recipe, probes)
            )
    print(
        f"training {network.name} on {device}{f' x {processes} processes' if processes > 1 else ''}: "
        f"{network.trainable_params:,} trainable and "
        f"{network.total_params - network.trainable_params:,} non-trainable params; "
        f"{len(data.y):,} examples, {args.val_split:.0%} held out for validation; "
        f"{args.optimizer}, lr {args.lr:g}, {args.schedule} schedule",
        file=sys.stderr,
    )
    print(weights.table(), file=sys.stderr)  # the plan, before anything runs

    def after_epoch(stats, outcome) -> None:
        if args.history and writer:
            from ..views.history import write_jsonl

            write_jsonl(Path(args.history), outcome.history)

    outcome = train(
        network, weights, data, args.epochs, args.lr, args.batch_size, args.val_split, args.seed,
        recipe=recipe, checkpoint=checkpoint, resume=Path(args.resume) if args.resume else None,
        on_epoch=after_epoch, preprocess=preprocess, workers=args.workers, on_bad_image=args.on_bad_image,
    )  # fmt: skip
    trained = build_weights(network, args.seed, outcome.arrays)
    metadata = preprocess.metadata()
    if data.classes != [str(i) for i in range(len(data.classes))]:  # a folder's class names
        metadata["classes"] = "\n".join(data.classes)
    if writer:
        write_model_file(network, trained, args, result.sources.get(args.file), read, metadata)
    if args.plot and writer:
        from ..views.history import plot

        plot(Path(args.plot), outcome.history, f"{network.name}: {args.output}")
    return outcome


def _print_outcome(args, outcome, processes: int) -> None:
    if processes > 1:
        print(
            f"{processes} processes (torchrun, {args.batch_size} examples a step each): all hold the same weights"
        )
    if outcome.stopped_early:
        print(
            f"stopped early after epoch {outcome.history[-1].epoch}: no better validation accuracy for {args.patience} epochs"
        )
    best = outcome.best
    if best.val_accuracy is not None:
        print(
            f"best epoch {best.epoch}: val_acc {best.val_accuracy:.4f} val_loss {best.val_loss:.4f} "
            f"(train acc {best.accuracy:.4f})"
        )
    else:
        print(
            f"last epoch {best.epoch}: train acc {best.accuracy:.4f} loss {best.loss:.4f} (no validation split)"
        )
    print(f"wrote {safe_text(args.output)}")


def _preprocess(args, network):
    """--preset / --mean / --std and the augmentation options, checked against the input."""
    from ..training.data import PRESETS, Preprocess

    mean, std = args.mean, args.std
    if args.preset:
        if mean or std:
            raise UsageError("--preset sets --mean and --std: give one or the other")
        mean, std = PRESETS[args.preset]
    channels = network.input_shape[0]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise UsageError(f"{name} has {len(values)} values; the input has {channels} channels")
    if std is not None and min(std) <= 0:
        raise UsageError("--std values must be above 0")
    if (args.crop_pad or args.flip) and len(network.input_shape) != 3:
        raise UsageError("--crop-pad and --flip augment images: the network's input is a flat vector")
    if args.crop_pad is not None and not 0 <= args.crop_pad <= max(network.input_shape[1:], default=0):
        raise UsageError(
            f"--crop-pad must be between 0 and the input's size ({'x'.join(map(str, network.input_shape))})"
        )
    if not 0 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 0 and {MAX_WORKERS}")
    as_tuple = lambda v: tuple(float(x) for x in v) if v is not None else None  # noqa: E731
    return Preprocess(as_tuple(mean), as_tuple(std), args.crop_pad or 0, args.flip)


def _torch_device(choice: str) -> str:
    import torch

    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise UsageError("--device cuda: PyTorch sees no CUDA device here (available: cpu)")
    return "cuda" if choice == "cuda" or (choice == "auto" and has_cuda) else "cpu"


def add_parser(sub) -> None:
    train = sub.add_parser(
        "train",
        help="train with PyTorch (the cnnspec[train] extra), write ONNX",
        description="Train a network on an .npz (x: NxCxHxW, y: N labels) or a folder with one "
        "subfolder of images per class. Frozen layers stay fixed; the epoch with the best "
        "validation accuracy is kept and written as ONNX.",
    )
    train.add_argument("file", metavar="SPEC.cnn")
    train.add_argument(
        "--data", required=True, metavar="DATA", help=".npz with x and y, or a folder of class folders"
    )
    train.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    train.add_argument("--epochs", type=positive_count, default=10)
    train.add_argument("--lr", type=finite_number, default=1e-3, help="Adam learning rate (default 1e-3)")
    train.add_argument("--batch-size", type=positive_count, default=32)
    train.add_argument(
        "--val-split", type=finite_number, default=0.2, help="share held out for validation (default 0.2)"
    )
    train.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    train.add_argument("--momentum", type=finite_number, default=0.9, help="SGD's momentum (default 0.9)")
    train.add_argument(
        "--weight-decay", type=finite_number, default=0.0, help="L2 penalty (AdamW: decoupled)"
    )
    train.add_argument("--schedule", choices=("constant", "cosine", "step"), default="constant")
    train.add_argument(
        "--step-size", type=positive_count, help="epochs between steps of --schedule step (default 10)"
    )
    train.add_argument("--gamma", type=finite_number, default=0.1, help="factor of each step (default 0.1)")
    train.add_argument(
        "--patience", type=positive_count, help="stop after N epochs without a better validation accuracy"
    )
    train.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    train.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16, else fp16)")
    train.add_argument("--checkpoint", metavar="FILE", help="written after every epoch (default OUT.ckpt)")
    train.add_argument("--resume", metavar="FILE", help="continue an interrupted run from its checkpoint")
    train.add_argument("--history", metavar="FILE.jsonl", help="per-epoch figures, one JSON object a line")
    train.add_argument("--plot", metavar="FILE.png", help="loss and accuracy curves")
    train.add_argument("--preset", choices=("imagenet",), help="--mean and --std of a known preprocessing")
    train.add_argument("--mean", type=finite_number, nargs="+", help="per-channel mean (kept in the model)")
    train.add_argument("--std", type=finite_number, nargs="+", help="per-channel std (kept in the model)")
    train.add_argument("--crop-pad", type=positive_count, help="augment: pad by P zeros, then crop at random")
    train.add_argument("--flip", action="store_true", help="augment: flip images left-right at random")
    train.add_argument(
        "--workers", type=positive_count, default=0, help="processes reading images (default 0)"
    )
    train.add_argument(
        "--on-bad-image",
        choices=("fail", "skip"),
        default="fail",
        help="an unreadable image stops training, or is skipped",
    )
    export_options(train)
    train.set_defaults(func=cmd_train)
