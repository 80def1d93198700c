"""`cnnspec run`: a model on images or arrays with onnxruntime."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    check_input_memory,
    check_measured,
    check_weights_option,
    load_weights,
    measured_batch,
    model_classes,
    model_preprocessing,
    model_source,
    output_target,
    print_error,
    random_weights_warning,
    rate_text,
    readable_file,
    refuse_run,
    safe_text,
)
from .options import export_options, finite_number, positive_count, thread_count


@dataclass
class _Ran:
    """What one `run` computed and where it came from, for printing."""

    described: str
    read: tuple  # files read: an output never replaces them
    batch: Any  # the input batch (numpy)
    result: Any  # runtime.RunResult
    labels: list[str] | None
    pictures: list = field(default_factory=list)  # feature-map pictures written


def cmd_run(args) -> int:
    import tempfile  # here, not at the top: `cnnspec check` never needs it

    from ..base.diagnostics import CnnspecError
    from ..deploy.runtime import ProviderUnavailable

    path = Path(args.model)
    is_spec = path.suffix == ".cnn"
    _check_options(args, path, is_spec)
    scratch_dir = tempfile.TemporaryDirectory(prefix="cnnspec-run-")  # for models above 2 GB
    try:
        ran = _run(args, path, is_spec, Path(scratch_dir.name))
    except ProviderUnavailable as exc:
        raise UsageError(str(exc)) from None
    except CnnspecError as exc:
        print_error(exc)
        return EXIT_ERRORS
    finally:
        scratch_dir.cleanup()
    if ran is None:
        return EXIT_ERRORS
    _print_run(args, ran)
    return EXIT_OK


def _check_options(args, path: Path, is_spec: bool) -> None:
    """Every option and named file, before anything runs (UsageError: exit 2)."""
    readable_file(args.model, "file")
    for name, value in (("--batch", args.batch), ("--top", args.top), ("--repeat", args.repeat)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1")
    if args.std and min(args.std) <= 0:
        raise UsageError("--std values must be above 0")
    if (args.mean or args.std) and not args.input:
        raise UsageError("--mean and --std apply to --input files (random input is used as it is)")
    for name in args.input:
        if not Path(name).is_dir():  # a folder is a 3-D network's frames, checked when read
            readable_file(name, "file")
    if args.labels:
        readable_file(args.labels, "labels file")
    if args.activations:
        _check_activations_folder(args.activations, is_spec)
    if is_spec:
        check_weights_option(args)
        return
    for option, value in (("--weights", args.weights), ("--network", args.network)):
        if value:
            raise UsageError(f"{option} applies to a .cnn spec; an ONNX model carries its own weights")
    if args.output:
        output_target(args.output, (path, *map(Path, args.input), *_maybe(args.labels)))


def _run(args, path: Path, is_spec: bool, scratch: Path) -> _Ran | None:
    """The model (a spec exported for this run, or an ONNX file) on the inputs."""
    from ..deploy.runtime import input_shape, run
    from ..inputs import load_inputs

    batch_size = args.batch if not args.input else len(args.input)
    model = _model(args, path, is_spec, scratch)
    if model is None:
        return None
    source, described, name, read, footprint, exported = model
    session, measured = _session(args, source, name, footprint, batch_size, _option(args))
    shape = input_shape(session)
    if args.output and len(session.get_outputs()) > 1 and not args.output.endswith(".npz"):
        raise UsageError(
            f"the model has {len(session.get_outputs())} outputs: save them with -o OUT.npz (one array each)"
        )
    option, line = _option(args), None
    if measured:  # before the inputs are read: they count
        line = measured_batch(session, shape, batch_size, _what(name, batch_size), footprint, option, False)
    if not args.input and (footprint is None or measured):  # the input batch and its copy at least
        check_input_memory(shape, args.batch)
    mean, std = args.mean, args.std
    if not is_spec and args.input and mean is None and std is None:
        mean, std = model_preprocessing(session)
    batch = load_inputs(
        args.input, shape, args.batch, args.seed, mean, std, args.resample, not args.no_resize
    )
    if len(batch) != batch_size:  # .npy files of N examples: the batch is known only now
        option, what = "examples", _what(name, len(batch))
        if line is not None:
            check_measured(line, len(batch), what, option, footprint)
        elif refuse_run(
            what, footprint, len(batch), _pattern(args, footprint, len(batch)), option, _measurable(args)
        ):
            del session  # a session without the arena, to measure by
            session, _ = _session(args, source, name, footprint, len(batch), option)
            line = measured_batch(session, shape, len(batch), what, footprint, option, True)
    result = run(session, batch, repeat=args.repeat)
    ran = _Ran(described, read, batch, result, _labels(args, session, result.output, is_spec))
    if args.activations and exported is not None:
        network, weights, spec_text = exported
        ran.pictures = _save_activations(args, network, weights, spec_text, batch[:1])
    return ran


def _session(args, source, name: str, footprint, batch: int, option: str):
    """(the onnxruntime session for `batch` images, whether their memory is to be measured
    first: measured_batch); refused when the graph's estimate does not let them through and
    they cannot be measured. onnxruntime's memory pattern goes off for a large batch on the
    CPU provider, as measured there (a GPU, or auto, keeps it), and its arena for a
    measured run."""
    from ..deploy.runtime import make_session

    pattern = _pattern(args, footprint, batch)
    measured = refuse_run(_what(name, batch), footprint, batch, pattern, option, _measurable(args))
    session = make_session(source, args.provider, args.threads, pattern and not measured, arena=not measured)
    return session, measured


def _pattern(args, footprint, batch: int) -> bool:
    """onnxruntime's memory pattern: off for a large batch on the CPU provider."""
    return footprint.memory_pattern(batch) if footprint and args.provider == "cpu" else True


def _measurable(args) -> bool:
    """Whether a batch can be measured on smaller ones: host memory, on the CPU provider."""
    return args.provider == "cpu"


def _what(name: str, batch: int) -> str:
    return f"a batch of {batch:,} through {name}"


def _option(args) -> str:
    return "inputs" if args.input else "--batch"


def _labels(args, session, output, is_spec: bool) -> list[str] | None:
    """Class names for a classifier's output: from --labels, else those a model records."""
    from ..deploy.runtime import read_labels

    if output.ndim != 2:
        return None
    if args.labels:
        return read_labels(args.labels, output.shape[1])
    return None if is_spec else model_classes(session, output.shape[1])


def _model(args, path: Path, is_spec: bool, scratch: Path):
    """(model source, how to describe it, its name in messages, files read, Footprint (None:
    not known), (network, weights, spec text) for a spec); None after a spec's diagnostics."""
    from ..deploy.footprint import file_memory

    if not is_spec:
        read = (path, *map(Path, args.input), *_maybe(args.labels))
        return path, str(path), str(path), read, file_memory(path), None
    loaded = load_weights(args, args.model, (args.output,))
    if loaded is None:
        return None
    network, weights, spec_text, read = loaded
    random_weights_warning(args, weights)
    source, footprint = model_source(network, weights, args, spec_text, scratch)
    described = f"{network.name} ({args.model}, exported for this run, seed {args.seed})"
    return source, described, f"'{network.name}'", read, footprint, (network, weights, spec_text)


def _print_run(args, ran: _Ran) -> None:
    result, batch = ran.result, ran.batch
    origin = "random" if not args.input else ", ".join(args.input)
    print(f"model: {safe_text(ran.described)}")
    print(f"provider: {result.providers[0]}")
    several = len(result.outputs) > 1
    shapes = "   ".join(
        f"{safe_text(n) + ': ' if several else ''}{'x'.join(map(str, o.shape))}" for n, o in result.outputs
    )
    print(f"input: {'x'.join(map(str, batch.shape))} ({safe_text(origin)})   output: {shapes}")
    for name, output in result.outputs:  # every output of the network, in order
        if several:
            print(f"{safe_text(name)}:")
        _print_output(output, ran.labels if output is result.output else None, args.top)
    print(
        f"latency: {result.latency_ms:.3f} ms per batch of {batch.shape[0]} (median of {result.runs}) · "
        f"{rate_text(result.images_per_second)} images/s"
    )
    if args.output:
        _save_outputs(args.output, result.outputs, ran.read)
        print(f"wrote {safe_text(args.output)}")
    if args.activations:
        print(
            f"wrote {safe_text(str(Path(args.activations) / 'index.html'))} "
            f"({len(ran.pictures)} feature-map pictures)"
        )


def _check_activations_folder(folder: str, is_spec: bool) -> None:
    """--activations DIR: a new (or empty) folder in an existing, writable one."""
    if not is_spec:
        raise UsageError("--activations takes a .cnn spec (its layers are named and ordered)")
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{folder}: exists and is not an empty folder; give a new folder for the pictures")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{parent}: folder is not writable")


def _save_activations(args, network, weights, spec_text, example):
    """Every layer's output for one example, as PNG grids and an index.html."""
    from ..deploy.export import intermediate_outputs, needs_external_data, to_onnx
    from ..deploy.runtime import make_session
    from ..views.activations import save

    if needs_external_data(weights):
        raise UsageError("--activations takes models below 2 GB")
    names = [entry.name for entry in network.layers]
    model = intermediate_outputs(to_onnx(network, weights, args.opset, spec_text=spec_text), names)
    session = make_session(model.SerializeToString(), args.provider, args.threads)
    outputs = session.run(names, {session.get_inputs()[0].name: example})
    shape = "x".join(map(str, network.input_shape))
    layers = [("input", f"input {shape}", example[0])]
    layers += [(e.name, e.layer.spec_text(), out[0]) for e, out in zip(network.layers, outputs)]
    try:
        return save(Path(args.activations), network.name, layers)
    except OSError as exc:
        raise UsageError(f"{args.activations}: cannot write: {exc.strerror or exc}") from None


def _print_output(output, labels, top: int) -> None:
    from ..deploy.runtime import top_k

    if output.ndim == 2 and output.shape[1] > 1:
        shown = 8
        for index, best in enumerate(top_k(output[:shown], min(top, output.shape[1]), labels)):
            ranked = "  ".join(f"{label} {p:.4f}" for label, p in best)
            print(f"  [{index}] {safe_text(ranked)}")  # labels come from a file
        if output.shape[0] > shown:
            print(f"  ... {output.shape[0] - shown} more (save them all with -o OUT.npy)")
    elif output.size <= 256:
        with np_printoptions():
            print(output[0] if output.shape[0] == 1 else output)
    else:
        print(f"  {output.size:,} values (save them with -o)")


def _maybe(path: str | None) -> tuple[Path, ...]:
    return (Path(path),) if path else ()


def np_printoptions():
    import numpy as np

    return np.printoptions(precision=4, suppress=True, linewidth=100)


def _save_outputs(out: str, outputs, protect: tuple[Path, ...]) -> None:
    """Write OUT.npy (one output) or OUT.npz (every output by name) atomically
    (temporary file, then rename); never over an input."""
    import numpy as np

    from ..base.files import temporary

    final = output_target(out, protect)
    try:
        temp = temporary(final)
        try:
            with open(temp, "wb") as stream:
                if final.suffix == ".npz":
                    np.savez(stream, **dict(outputs))
                else:
                    np.save(stream, outputs[0][1])
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:  # a full disk, a folder gone read-only
        raise UsageError(f"{out}: cannot write: {exc.strerror or exc}") from None


def add_parser(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run a .cnn or .onnx with onnxruntime",
        description="Run a network with onnxruntime on images (PNG/JPEG, resized and scaled to [0, 1]), "
        "WAV clips (one channel per input channel, samples in [-1, 1)), folders of frames (a 3-D "
        "network's CxDxHxW), .npy arrays (the input shape, or N of them) or random data; print the "
        "output, top-K classes and timing.",
    )
    run.add_argument("model", metavar="FILE.cnn|MODEL.onnx")
    run.add_argument(
        "--input",
        nargs="+",
        default=[],
        metavar="PATH",
        help="images, .wav clips (1-D networks), folders of frames (3-D networks) or .npy arrays",
    )
    run.add_argument(
        "--no-resize",
        action="store_true",
        help="refuse an image of another size or channel count instead of resizing or converting it",
    )
    run.add_argument(
        "--resample",
        action="store_true",
        help="stretch a .wav of another length to the network's input length (linear interpolation)",
    )
    run.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    run.add_argument("--batch", type=positive_count, default=1, help="batch size of random input (default 1)")
    run.add_argument("--top", type=positive_count, default=5, help="classes to show per example (default 5)")
    run.add_argument("--labels", metavar="FILE", help="class names, one a line")
    run.add_argument(
        "--mean", type=finite_number, nargs="+", help="per-channel mean subtracted from the input"
    )
    run.add_argument("--std", type=finite_number, nargs="+", help="per-channel std the input is divided by")
    run.add_argument("--repeat", type=positive_count, default=10, help="timed runs (default 10)")
    run.add_argument(
        "-o", "--output", metavar="OUT.npy|OUT.npz", help="save the output (.npz: every output, by name)"
    )
    run.add_argument(
        "--threads", type=thread_count, help="onnxruntime's intra-op threads (default: one per core)"
    )
    run.add_argument(
        "--activations", metavar="DIR", help="save every layer's feature maps as PNG grids and DIR/index.html"
    )
    export_options(run, for_run=True)
    run.set_defaults(func=cmd_run)
