"""`cnnspec import`: an ONNX model to a spec and its weights."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    output_target,
    print_error,
    readable_file,
    safe_text,
    say,
)


def _shape_argument(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape such as 3x224x224") from None
    if not dims or min(dims) < 1 or max(dims) > 2**20:
        raise argparse.ArgumentTypeError(f"'{text}': sizes must be between 1 and {2**20:,}")
    return dims


def cmd_import(args) -> int:
    """ONNX model -> NET.cnn and NET.npz (its weights, keyed by the spec's tensor names)."""
    from ..base.diagnostics import CnnspecError
    from ..importer import NotAModel, import_model

    from_torch = args.model.startswith(TORCH_PREFIX)
    model = Path(args.model)
    if not from_torch:
        readable_file(args.model, "model")
    elif args.input_shape is None:
        raise UsageError(f"{args.model}: give the input size with --input-shape CxHxW (e.g. 3x224x224)")
    elif args.flat:
        raise UsageError("--flat reads an ONNX file; import the PyTorch model, then `cnnspec fmt` it")
    spec_path, weights_path, weights_out = _output_paths(args, model)
    name = _network_name(args)
    try:
        if from_torch:
            imported = _import_torch(args, name, weights_out.name)
        else:
            imported = import_model(model, name, args.input_shape, args.flat, weights_out.name)
    except NotAModel as exc:
        raise UsageError(f"{args.model}: {exc}") from None
    except CnnspecError as exc:
        print_error(exc)
        return EXIT_ERRORS
    except _ModelError as exc:
        say("error", str(exc))
        return EXIT_ERRORS
    _write_both(args, imported, spec_path, weights_path)
    graph = imported.graph
    print(
        f"wrote {safe_text(args.output)} ({imported.spec.count(chr(10))} lines): network {name}, "
        f"input {'x'.join(map(str, graph.input_shape))}, {len(graph.layers)} layers, "
        f"{imported.total_params:,} parameters"
    )
    print(f"wrote {safe_text(str(weights_out))} ({len(imported.weights)} tensors)")
    if graph.layout == "NHWC":
        say(
            "warning",
            "the model took NxHxWxC input; the spec takes NxCxHxW: transpose images to channels first",
        )
    return EXIT_OK


TORCH_PREFIX = "torch:"


def _import_torch(args, name: str, weights_file: str):
    """`torch:PACKAGE.MODULE:FACTORY`: the factory's module, exported and imported here."""
    try:
        import torch  # noqa: F401  (the train extra)
    except ImportError:
        raise UsageError(
            f"{args.model}: importing a PyTorch model needs PyTorch: pip install 'cnnspec[train]'"
        ) from None
    from ..importer.from_torch import TorchBridgeError, from_torch, module_from_factory

    try:
        module = module_from_factory(args.model[len(TORCH_PREFIX) :], args.args)
        return from_torch(
            module, args.input_shape, name, fold_bn=args.fold_bn, source=args.model, weights_file=weights_file
        )
    except TorchBridgeError as exc:
        raise _ModelError(f"{args.model}: {exc}") from None


class _ModelError(Exception):
    """The user's PyTorch model could not be built or exported: exit 1, one line."""


def _output_paths(args, model: Path) -> tuple[Path, Path, Path]:
    """The spec and weights files to write (checked, never the model or a file not named)."""
    spec_out = Path(args.output)
    if spec_out.suffix != ".cnn":
        raise UsageError(f"{args.output}: the spec should end in .cnn")
    weights_out = Path(args.weights_out) if args.weights_out else spec_out.with_suffix(".npz")
    if weights_out.suffix != ".npz":
        raise UsageError(f"{weights_out}: the weights file should end in .npz")
    if not args.weights_out and os.path.lexists(
        weights_out
    ):  # never replaced unnamed, nor a dangling link followed
        raise UsageError(
            f"{weights_out} exists; name it with --weights-out {weights_out} to replace it, or choose another"
        )
    protect = (model, *model.parent.glob(f"{model.name}.*.data"))
    spec_path = output_target(args.output, protect)
    weights_path = output_target(str(weights_out), protect + (spec_path,))
    if spec_path == weights_path:
        raise UsageError("the spec and its weights need two different files")
    return spec_path, weights_path, weights_out


def _network_name(args) -> str:
    from ..importer import RESERVED
    from ..importer.printer import spec_name

    name = args.name or spec_name((Path(args.output).stem,)) or "imported"
    if spec_name((name,)) != name or name in RESERVED:
        raise UsageError(
            f"--name {safe_text(name)}: not a network name (letters, digits and _, not a keyword)"
        )
    return name


def _write_both(args, imported, spec_path: Path, weights_path: Path) -> None:
    """The spec and its weights belong together: both are written beside their targets
    first, then renamed into place, the weights first; if the spec's rename fails, the old
    weights are put back, so a failure leaves the old pair or the new one, never a mix."""
    import numpy as np

    from ..base.files import temporary

    written: list[Path] = []
    try:
        temp_weights = temporary(weights_path)
        written.append(temp_weights)
        with open(temp_weights, "wb") as stream:
            np.savez(stream, **imported.weights)
        temp_spec = temporary(spec_path)
        written.append(temp_spec)
        temp_spec.write_text(imported.spec, encoding="utf-8")
        old_weights = _keep_old(weights_path, written)
        os.replace(temp_weights, weights_path)
        try:
            os.replace(temp_spec, spec_path)
        except BaseException:  # a failed rename, Ctrl-C or SIGTERM between the two: the old pair
            _put_back(weights_path, old_weights)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def _keep_old(path: Path, written: list[Path]) -> Path | None:
    """A hard link to the file about to be replaced (None when there is none), removed at
    the end with the other temporary files."""
    from ..base.files import temporary

    if not path.exists():
        return None
    backup = temporary(path)
    written.append(backup)
    try:
        backup.unlink()
        os.link(path, backup)
    except OSError:  # a file system without hard links: a copy
        import shutil

        shutil.copy2(path, backup)
    return backup


def _put_back(path: Path, old: Path | None) -> None:
    if old is None:
        path.unlink(missing_ok=True)
    else:
        os.replace(old, path)


def add_parser(sub) -> None:
    imp = sub.add_parser(
        "import",
        help="turn an ONNX model into a .cnn spec and its weights",
        description="Import an ONNX model (from torch.onnx.export or a Keras converter): write a "
        "readable .cnn spec (repeated modules folded into blocks) and its weights as .npz, keyed by "
        "the spec's tensor names, so `cnnspec export NET.cnn --weights NET.npz` rebuilds the model. "
        "Exit 1 lists every op cnnspec cannot express; exit 2 for a file that is not a model.",
    )
    imp.add_argument(
        "model",
        metavar="MODEL.onnx",
        help="an ONNX file, or torch:PACKAGE.MODULE:FACTORY: a PyTorch model built by calling FACTORY "
        "(imported from the current folder as `python -m` would; its code runs), exported here",
    )
    imp.add_argument(
        "--args", metavar="JSON", help="for torch:...: the factory's arguments, a JSON list or object"
    )
    imp.add_argument(
        "--fold-bn",
        action="store_true",
        help="for torch:...: fold batch norm into the conv before it (default: keep it, to fine-tune)",
    )
    imp.add_argument("-o", "--output", required=True, metavar="NET.cnn")
    imp.add_argument(
        "--weights-out", metavar="NET.npz", help="where the weights go (default: beside NET.cnn)"
    )
    imp.add_argument("--name", help="the network's name (default: from NET.cnn)")
    imp.add_argument("--flat", action="store_true", help="one line per layer: no combinators, no blocks")
    imp.add_argument(
        "--input-shape",
        type=_shape_argument,
        metavar="CxHxW",
        help="the input size (CxHxW, CxL for a 1-D model, CxDxHxW for a 3-D one), where the model leaves it open",
    )
    imp.set_defaults(func=cmd_import)
