"""What several commands share: exit codes, messages, reading specs and weights, output paths, memory checks."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # annotations only: `check` must not import the runtime's modules
    from ..deploy.footprint import Footprint

EXIT_OK = 0


EXIT_ERRORS = 1


EXIT_USAGE = 2


EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in cnnspec, never a problem with the input


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit 2."""


def say(prefix: str, message: str) -> None:
    from ..base.diagnostics import one_line

    print(f"cnnspec: {prefix}: {one_line(message)}", file=sys.stderr)


def safe_text(text: str) -> str:
    """A path or a label from the user or a model file, safe to print on one line (control
    characters and line breaks escaped)."""
    from ..base.diagnostics import one_line

    return one_line(text)


def use_color(stream, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


STDIN = "-"  # as a spec path: standard input (`./-` names a file called -)


STDIN_NAME = "<stdin>"  # how diagnostics name it


def read_spec(path: str) -> str:
    from ..base.files import UnreadableFile, read_source, read_source_stream

    try:
        if path != STDIN:
            return read_source(path)
        if sys.stdin is None:  # started with standard input closed
            raise UnreadableFile("standard input is closed")
        return read_source_stream(sys.stdin.buffer)
    except UnreadableFile as exc:
        raise UsageError(f"{STDIN_NAME if path == STDIN else path}: {exc}") from None


def stdin_at_most_once(paths: list[str]) -> None:
    if paths.count(STDIN) > 1:
        raise UsageError("- (standard input) can be named only once")


def check_files(paths: list[str], network: str | None):
    """Check every file; one merged result (networks and diagnostics of them all)."""
    from ..infer import CheckResult, check_text

    stdin_at_most_once(paths)
    merged = CheckResult([], [], {})
    seen: set[str] = set()
    for path in paths:
        key = path if path == STDIN else os.path.realpath(path)
        if key in seen:  # the same file named twice is checked once
            continue
        seen.add(key)
        text = read_spec(path)
        # Standard input has no folder: its `use` paths are relative to the current one.
        name, real = (STDIN_NAME, None) if path == STDIN else (path, Path(path))
        result = check_text(text, name, real, network)
        merged.networks += result.networks
        merged.diagnostics += result.diagnostics
        merged.sources.update(result.sources)
        merged.hidden += result.hidden
        merged.files += result.files
    return merged


def reject_unknown_network(result) -> None:
    """`--network NAME` naming no network is a usage error, not a spec error."""
    for d in result.diagnostics:
        if d.code == "unknown-network" and d.span is None:
            raise UsageError(d.message + (f"; {d.help}" if d.help else ""))


def print_diagnostics(result, args) -> None:
    from ..views.report import render_diagnostics

    text = render_diagnostics(result, use_color(sys.stderr, getattr(args, "color", "auto")))
    if text:
        print(text, file=sys.stderr)


def print_error(error) -> None:
    """A CnnspecError from export/run/train: one line per problem, no source position."""
    from ..base.diagnostics import one_line

    for d in error.diagnostics:
        print(f"cnnspec: {d.severity}: {one_line(d.message)} [{d.code}]", file=sys.stderr)
        if d.help:
            print(f"  help: {one_line(d.help)}", file=sys.stderr)


def checked_network(path: str, network: str | None, args):
    """Check one spec file and pick one network; diagnostics printed, None on errors."""
    result = check_files([path], network)
    reject_unknown_network(result)
    print_diagnostics(result, args)
    if not result.ok:
        return None, result
    if not result.networks:
        raise UsageError(f"{path} defines no network")
    if network is None and len(result.networks) > 1:
        names = ", ".join(n.name for n in result.networks)
        raise UsageError(f"{path} defines several networks ({names}); pick one with --network NAME")
    return result.networks[0], result


def load_weights(args, path: str, outputs: tuple[str | None, ...] = ()):
    """A .cnn spec -> (checked network, weights, spec text, files read) with the options of
    `args`; None after printing its diagnostics when the spec has errors. Every output in
    `outputs` is checked against every file read before the weights are built."""
    from ..deploy.weights import build_weights, load_file

    network, result = checked_network(path, args.network, args)
    if network is None:
        return None
    read = files_read(result, args)
    for out in outputs:
        if out:
            output_target(out, read)
    check_weight_memory(network)
    provided = load_file(args.weights) if args.weights else None
    return network, build_weights(network, args.seed, provided), result.sources.get(path), read


def files_read(result, args) -> tuple[Path, ...]:
    """Every file this command reads: specs (with their `use`s), weights, inputs, data."""
    named = [getattr(args, "weights", None), getattr(args, "labels", None), getattr(args, "data", None)]
    named += list(getattr(args, "input", None) or [])
    return tuple(result.files) + tuple(Path(p) for p in named if p)


def output_target(out: str, read: tuple[Path, ...]) -> Path:
    """OUT checked before any work: not an input, a regular file, in a writable folder."""
    from ..base.files import BadOutput, target

    try:
        return target(out, read)
    except BadOutput as exc:
        raise UsageError(f"{out}: {exc}") from None


def distinct_outputs(outputs: dict[str, str | Path | None]) -> None:
    """Every file a command writes is its own: two options naming one file (or two links to
    it) would have one output replace, or delete, the other. Keys are the option names."""
    from ..base.files import same_file

    named = [(option, out) for option, out in outputs.items() if out]
    for i, (option, out) in enumerate(named):
        for other, other_out in named[:i]:
            if same_file(out, other_out):
                raise UsageError(f"{other} and {option} name the same file ({out}): give each its own")


def model_classes(session, count: int) -> list[str] | None:
    """The class names a model trained on a class folder records."""
    names = session.get_modelmeta().custom_metadata_map.get("classes", "").split("\n")
    return names if len(names) == count and all(names) else None


def random_weights_warning(args, weights) -> None:
    """A spec run or evaluated with freshly drawn weights (no --weights, none written in
    the spec): say so, so that nobody reads meaning into its outputs or scores."""
    fresh = [plan.name for plan in weights.plan if plan.source == "new"]
    if fresh:
        say(
            "warning",
            f"{len(fresh):,} of the {len(weights.plan):,} tensors of {args.model} are fresh random weights "
            f"(seed {args.seed}; no --weights): its outputs and scores mean nothing until it is trained",
        )


def check_weight_memory(network) -> None:
    """Refuse, before allocating, weights that do not fit in this machine's memory."""
    from ..base.diagnostics import CnnspecError, Diagnostic
    from ..base.resources import shortfall

    needed = network.param_bytes * 2  # the arrays and the serialised model
    problem = shortfall(needed)
    if problem:
        raise CnnspecError(
            [
                Diagnostic(
                    "error",
                    "too-large",
                    f"'{network.name}' has {network.total_params:,} parameters: its weights {problem}",
                )
            ]
        )


def readable_path(name: str, what: str) -> None:
    """A file or a folder that must exist."""
    if not Path(name).is_dir():
        readable_file(name, what)


def readable_file(name: str, what: str) -> None:
    """A missing, unreadable or non-file input is a usage error (exit 2), said plainly."""
    path = Path(name)
    try:
        if path.is_dir():
            raise UsageError(f"{name}: is a directory, not a file")
        if not path.exists():
            raise UsageError(f"{name}: no such {what}")
        if not path.is_file():
            raise UsageError(f"{name}: not a regular file")
    except OSError as exc:  # a symlink loop, a name too long
        raise UsageError(f"{name}: {exc.strerror or type(exc).__name__}") from None
    if not os.access(path, os.R_OK):
        raise UsageError(f"{name}: permission denied")


def check_weights_option(args) -> None:
    if args.weights:
        readable_file(args.weights, "weights file")


def write_model_file(
    network, weights, args, spec_text, protect: tuple[Path, ...], metadata=None
) -> list[Path]:
    """Build, check and write args.output atomically; a bad output path or a failed write
    (a full disk, a permission) is a usage error, and leaves nothing behind."""
    from ..base.files import BadOutput
    from ..deploy.export import write_model

    try:
        return write_model(
            network,
            weights,
            args.output,
            args.opset,
            getattr(args, "fold_bn", False),
            spec_text,
            protect,
            metadata,
        )
    except BadOutput as exc:
        raise UsageError(f"{args.output}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write: {exc.strerror or exc}") from None


def model_source(network, weights, args, spec_text, scratch: Path) -> tuple[bytes | Path, Footprint | None]:
    """The model for `run` (bytes in memory, or a file in `scratch` above 2 GB) and the
    Footprint of running it (None where its graph leaves a size open)."""
    from ..deploy.export import needs_external_data, to_onnx, write_model
    from ..deploy.footprint import file_memory, graph_memory

    held = 1  # the run keeps its numpy weights while onnxruntime holds its own
    if needs_external_data(weights):
        path = scratch / f"{network.name}.onnx"
        write_model(network, weights, path, args.opset, spec_text=spec_text)
        return path, file_memory(path, held)
    model = to_onnx(network, weights, args.opset, spec_text=spec_text)
    return model.SerializeToString(), graph_memory(model, held)


def rate_text(images_per_second: float) -> str:
    """Three significant figures for slow models (1.19 images/s, not 1), whole numbers above."""
    digits = 2 if round(images_per_second, 2) < 10 else 1 if round(images_per_second, 1) < 100 else 0
    return f"{images_per_second:,.{digits}f}"


def model_preprocessing(session):
    """The mean and std a model trained by cnnspec records (read from the session that
    already loaded it), said when used."""
    from ..training.data import model_preprocess

    mean, std = model_preprocess(session.get_modelmeta().custom_metadata_map)
    if mean is not None or std is not None:
        shown = ", ".join(
            f"{k} {','.join(f'{v:g}' for v in vals)}" for k, vals in (("mean", mean), ("std", std)) if vals
        )
        print(f"preprocessing from the model: {shown}", file=sys.stderr)
    return mean, std


def check_input_memory(shape: tuple[int, ...], batch: int) -> None:
    from ..base.resources import shortfall

    problem = shortfall(batch * math.prod(shape) * 4 * 2)  # the batch and at least its copy
    if problem:
        raise UsageError(f"a random batch of {batch:,} inputs {problem}; use a smaller --batch")


def refuse_run(
    what: str,
    footprint: Footprint | None,
    batch: int,
    memory_pattern: bool | None = None,
    option: str = "--batch",
    measurable: bool = False,
) -> bool:
    """`run --batch 1000000`: a UsageError before onnxruntime tries to allocate it, when
    the `footprint` (None: not known) of `batch` images does not fit in free memory.
    `option` is what sets the batch: an option, or "inputs" (one image per input file).
    The graph's estimate is an upper bound (1.0x-2.2x what onnxruntime then holds): where
    it refuses a `measurable` batch (the CPU provider), the session fits and two smaller
    batches do, True says to measure the batch instead (measured_batch) on a session
    without onnxruntime's arena, with exact allocation already set up."""
    from ..base.resources import HEADROOM, available_memory, exact_allocation, shortfall
    from ..deploy.footprint import probe_batches

    if footprint is None:
        return False
    problem = shortfall(footprint.peak(batch, memory_pattern))
    if not problem:
        return False
    budget = (available_memory() or 0) * HEADROOM
    if (
        measurable
        and footprint.load <= budget
        and batch * footprint.ends <= budget  # the batch's input and output at least: else no need to measure
        and probe_batches(footprint, batch, budget - footprint.resident) is not None  # (before loading)
        and exact_allocation()
    ):
        return True
    largest = footprint.largest_batch(budget, memory_pattern)
    too_large(
        what,
        _estimated(footprint.per_image(batch, memory_pattern), footprint.resident),
        problem,
        option,
        largest,
    )


def measured_batch(
    session, example: tuple[int, ...], count: int, what: str, footprint: Footprint, option: str, read: bool
):
    """footprint.Measured: the memory of running `count` examples of shape `example`
    (float32) through `session` (built as refuse_run's True asks), measured on two smaller
    batches; refused (check_measured) when it does not fit with the batch's input (unless
    `read` already), naming the largest batch that does."""
    from ..base.resources import HEADROOM, available_memory
    from ..deploy.footprint import probe_batches
    from ..deploy.runtime import fixed_batch, measure

    budget = (available_memory() or 0) * HEADROOM
    probes = probe_batches(footprint, count, budget)  # (the session loaded: the room is the batch's)
    if fixed_batch(session) is not None or probes is None:  # no smaller batch to measure by
        refuse_run(what, footprint, count, memory_pattern=False, option=option)
        return None
    line = measure(session, example, "float32", probes)
    check_measured(line, count, what, option, footprint, input_bytes=0 if read else 4 * math.prod(example))
    return line


def check_measured(
    line, count: int, what: str, option: str, footprint: Footprint, input_bytes: int = 0
) -> None:
    """A UsageError when `count` examples do not fit by the measured `line` with
    `input_bytes` an example still to be read; else a note on stderr that they run measured."""
    from ..base.resources import HEADROOM, available_memory, gib, shortfall
    from ..deploy.footprint import Measured
    from ..views.report import nbytes

    total = Measured(line.fixed, line.per_image + input_bytes, line.probes)
    sizes = f"measured on batches of {line.probes[0]:,} and {line.probes[1]:,}"
    problem = shortfall(total.peak(count))
    if problem:
        largest = total.largest_batch((available_memory() or 0) * HEADROOM)
        too_large(what, f"{nbytes(total.per_image)} of memory per image, {sizes}", problem, option, largest)
    say(
        "note",
        f"{what}: the graph's estimate ({gib(footprint.peak(count, False))}) is above what is free; "
        f"{sizes} it takes {nbytes(total.per_image)} per image, {nbytes(total.peak(count))} in all; it runs with "
        "onnxruntime's arena off, which keeps to that (and is slower)",
    )


def _estimated(per_image: int, resident: int) -> str:
    from ..views.report import nbytes

    return f"{nbytes(per_image)} of memory per image, {nbytes(resident)} for the weights and the runtime"


def check_graph_memory(
    path: Path, batch: int, memory_pattern: bool | None = None, option: str = "--batch"
) -> Footprint | None:
    """refuse_run for an ONNX file, from its graph, before onnxruntime loads it; its
    Footprint, None when its shapes cannot all be inferred (then check_input_memory, once
    the session says the input's shape)."""
    from ..deploy.footprint import file_memory

    footprint = file_memory(path)
    refuse_run(f"a batch of {batch:,} through {path}", footprint, batch, memory_pattern, option)
    return footprint


def check_train_memory(network, batch: int, args, data_bytes: int, processes: int) -> tuple[int, int] | None:
    """Training on the CPU: refuse a batch that does not fit before the first step (each
    of `processes` holds its own copy of everything). The estimate from the network is an
    upper bound (1.1x-1.6x): where it refuses a batch of one process that two smaller
    batches fit, this returns their sizes, to measure the batch by instead
    (check_measured_training), with exact allocation already set up; else None."""
    from ..base.resources import HEADROOM, available_memory, exact_allocation, shortfall
    from ..deploy.footprint import probe_sizes, train_memory

    fixed, per_example = train_memory(network, batch, _optimizer_state(args), args.amp, data_bytes)
    problem = shortfall(processes * (fixed + batch * per_example))
    if not problem:
        return None
    room = (available_memory() or 0) * HEADROOM / processes - fixed
    if processes == 1:  # (several: each process would measure its own)
        probes = probe_sizes(per_example, batch, room, least=4)  # batch norm takes 2 examples and up
        if probes is not None and exact_allocation():
            return probes
    each = f" in each of {processes} processes" if processes > 1 else ""
    too_large(
        f"training '{network.name}' on batches of {batch:,}{each}",
        _estimated(processes * per_example, processes * fixed),
        problem,
        "--batch-size",
        max(int(room // per_example), 0),
    )


def check_measured_training(network, batch: int, args, data_bytes: int, line) -> int:
    """A UsageError when training on batches of `batch` does not fit by the measured
    `line` of one step (footprint.Measured) and the batch's input as fed, naming the
    largest batch that does; else a note on stderr that it trains measured, and the bytes
    it is expected to take above what the process holds now. Between the
    steps (a checkpoint, the model written) the weights' copies can peak higher than a
    step: that part keeps the estimate from the network, which was measured for it."""
    from ..base.resources import HEADROOM, available_memory, shortfall
    from ..deploy.footprint import TRAIN_FED_COPIES, TRAIN_SESSION_BYTES, Measured, train_memory
    from ..views.report import nbytes

    inputs = TRAIN_FED_COPIES * 4 * math.prod(network.input_shape)  # (the step's own is in the line)
    steps = Measured(line.fixed, line.per_image + inputs, line.probes)
    fixed, _ = train_memory(network, batch, _optimizer_state(args), args.amp, data_bytes)
    between = fixed - TRAIN_SESSION_BYTES - data_bytes  # PyTorch and the data set are in memory by now
    what = f"training '{network.name}' on batches of {batch:,}"
    sizes = f"measured on steps of {line.probes[0]:,} and {line.probes[1]:,}"
    needed = max(between, steps.peak(batch))
    problem = shortfall(needed)
    if problem:
        budget = (available_memory() or 0) * HEADROOM
        largest = steps.largest_batch(budget) if between <= budget else 0
        detail = f"{nbytes(steps.per_image)} of memory per example, {sizes}"
        too_large(what, detail, problem, "--batch-size", largest)
    say(
        "note",
        f"{what}: the estimate from the network is above what is free; {sizes} it takes "
        f"{nbytes(steps.per_image)} per example, {nbytes(needed)} in all; it trains with "
        "malloc handing freed memory back at once, which keeps to that (and is slower)",
    )
    return needed


def _optimizer_state(args) -> str:
    """The optimizer as cost.memory names it (its state differs: SGD with momentum keeps one)."""
    return "momentum" if args.optimizer == "sgd" and args.momentum else args.optimizer


def fitting_batch(footprint: Footprint | None, largest: int, model: str) -> int:
    """The largest batch up to `largest` whose `footprint` (None: not known) fits in free
    memory, for a command that picks its own batch (evaluate); a UsageError when not even
    one image fits."""
    from ..base.resources import HEADROOM, available_memory, shortfall
    from ..views.report import nbytes

    free = available_memory()
    if footprint is None or free is None:
        return largest
    batch = min(largest, footprint.largest_batch(free * HEADROOM))
    if batch < 1:
        problem = shortfall(footprint.peak(1)) or "does not fit in free memory"
        raise UsageError(
            f"{model}: one image ({nbytes(footprint.per_image(1))} of memory, {nbytes(footprint.resident)} "
            f"for the weights and the runtime) {problem}"
        )
    return batch


def too_large(what: str, detail: str, problem: str, option: str, largest: int) -> NoReturn:
    """The UsageError for a batch that does not fit (`detail`: what it takes), naming the
    largest that does."""
    if largest < 1:
        advice = "not even one image fits"
    elif option.startswith("--"):
        advice = f"use {option} {largest:,} or smaller"
    else:
        advice = f"give {largest:,} {option} or fewer at a time"
    raise UsageError(f"{what} ({detail}) {problem}; {advice}")
