"""`cnnspec evaluate`: accuracy, per class, and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    fitting_batch,
    load_weights,
    model_classes,
    model_preprocessing,
    model_source,
    print_error,
    random_weights_warning,
    readable_file,
    safe_text,
)
from .options import export_options


def cmd_evaluate(args) -> int:
    """Accuracy, per-class accuracy and the confusion matrix on labelled data."""
    import json
    import tempfile  # here, not at the top: `cnnspec check` never needs it

    from ..base.diagnostics import CnnspecError, printable
    from ..deploy.runtime import input_shape
    from ..training.data import FolderData, relabel
    from ..training.evaluate import evaluate, table
    from ..training.train import load_dataset

    path = Path(args.model)
    readable_file(args.model, "model")
    if not Path(args.data).exists():
        raise UsageError(f"{args.data}: no such file or folder")
    scratch_dir = tempfile.TemporaryDirectory(prefix="cnnspec-evaluate-")
    try:
        opened = _session(args, path, Path(scratch_dir.name))
        if opened is None:
            return EXIT_ERRORS
        session, batch = opened
        shape = input_shape(session)
        classes = session.get_outputs()[0].shape[-1]
        if not isinstance(classes, int) or classes < 1 or len(session.get_outputs()[0].shape) != 2:
            raise UsageError("evaluate takes a classifier: one output of N x classes")
        data = load_dataset(args.data, shape, classes, stream=True)
        names = model_classes(session, classes)  # the class names a model trained on folders records
        if names is not None and isinstance(data, FolderData):
            data = relabel(data, names)
        mean, std = model_preprocessing(session) if path.suffix != ".cnn" else (None, None)
        result = evaluate(session, data, classes, mean, std, batch)
    except CnnspecError as exc:
        print_error(exc)
        return EXIT_ERRORS
    finally:
        scratch_dir.cleanup()
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"model: {safe_text(args.model)}   data: {safe_text(args.data)}")
        print(printable(table(result)))  # several lines: class names escaped, not the breaks
    return EXIT_OK


def _session(args, path: Path, scratch: Path):
    """(onnxruntime session, batch size) for the model, the batch as large as free memory
    allows up to 256; None after a spec's diagnostics."""
    from ..base.resources import shortfall
    from ..deploy.footprint import file_memory
    from ..deploy.runtime import fixed_batch, make_session
    from ..training.evaluate import BATCH

    if path.suffix == ".cnn":
        loaded = load_weights(args, args.model)
        if loaded is None:
            return None
        network, weights, spec_text, _ = loaded
        random_weights_warning(args, weights)
        source, footprint = model_source(network, weights, args, spec_text, scratch)
    else:
        source, footprint = path, file_memory(path)
    batch = fitting_batch(footprint, BATCH, args.model)
    session = make_session(
        source, "cpu", memory_pattern=footprint.memory_pattern(batch) if footprint else True
    )
    fixed = fixed_batch(session)  # a model exported for one batch size runs that many at a time
    problem = shortfall(footprint.peak(fixed)) if fixed is not None and footprint is not None else None
    if problem:
        raise UsageError(f"{args.model} takes batches of exactly {fixed:,}: such a batch {problem}")
    return session, batch


def add_parser(sub) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="accuracy, per class, and the confusion matrix",
        description="Evaluate a classifier (ONNX, or a .cnn with --weights) on labelled data: an .npz with "
        "x and y, or a folder of class folders.",
    )
    evaluate.add_argument("model", metavar="MODEL.onnx|SPEC.cnn")
    evaluate.add_argument("--data", required=True, metavar="DATA")
    evaluate.add_argument("--format", choices=("table", "json"), default="table")
    export_options(evaluate, for_run=True)
    evaluate.set_defaults(func=cmd_evaluate)
