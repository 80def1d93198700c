"""A PyTorch module straight to a spec: exported in this process with `torch.onnx`, then
imported as any ONNX model. The bridge for someone with an `nn.Module` in hand, where
torchinfo would be the habit: one call gives the readable spec, its weights and the table.

    >>> import cnnspec
    >>> imported = cnnspec.from_torch(model, (3, 224, 224))
    >>> print(imported.spec)
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

from ..kinds import Shape


class TorchBridgeError(Exception):
    """The module could not be found, built or exported; the message says which, on one line."""


def from_torch(
    module,
    input_shape: Shape,
    name: str = "imported",
    fold_bn: bool = False,
    opset: int = 17,
    source: str | None = None,
    weights_file: str = "",
):
    """The spec and weights of a PyTorch `module` that takes NxCxHxW (NxCxL, NxCxDxHxW or NxF) input of
    `input_shape` (without the batch). Batch norm stays a layer with its statistics (to
    fine-tune); `fold_bn` folds it into the conv before it, as `torch.onnx.export` does by
    default. The module is exported in eval mode and left in the mode it was in."""
    import torch

    from . import import_model

    if not isinstance(module, torch.nn.Module):
        raise TorchBridgeError(f"expected a torch.nn.Module, got {type(module).__name__}")
    training = module.training
    with tempfile.TemporaryDirectory(prefix="cnnspec-torch-") as folder:
        path = Path(folder) / "model.onnx"
        try:
            module.eval()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporter's notes on tracing are not the user's
                torch.onnx.export(
                    module,
                    (torch.zeros(1, *input_shape),),
                    str(path),
                    dynamo=False,
                    do_constant_folding=fold_bn,
                    opset_version=opset,
                    input_names=["x"],
                    dynamic_axes={"x": {0: "N"}},
                )
        except Exception as exc:  # torch raises many kinds for a module it cannot trace or export
            raise TorchBridgeError(
                f"torch.onnx.export failed: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        finally:
            module.train(training)
        where = source or f"the PyTorch module {type(module).__name__}"
        return import_model(path, name, weights_file=weights_file, source=where)


def module_from_factory(reference: str, arguments: str | None):
    """`PACKAGE.MODULE:FACTORY` (the factory may be dotted: `models:ResNet.small`) called
    with `arguments`, a JSON list (positional) or object (keywords). The module is imported
    as `python -m` would, the current folder first on the path."""
    module_name, _, factory_name = reference.rpartition(":")
    if not module_name or not factory_name:
        raise TorchBridgeError(
            f"'{reference}' is not PACKAGE.MODULE:FACTORY (e.g. torchvision.models:resnet18)"
        )
    args, kwargs = _arguments(arguments)
    sys.path.insert(0, str(Path.cwd()))
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # an import runs the module's own code: anything may go wrong
        raise TorchBridgeError(
            f"cannot import {module_name}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    finally:
        sys.path.remove(str(Path.cwd()))
    for part in factory_name.split("."):
        if not hasattr(target, part):
            raise TorchBridgeError(f"{module_name} has no '{factory_name}'")
        target = getattr(target, part)
    if not callable(target):
        raise TorchBridgeError(f"{module_name}:{factory_name} is not callable")
    try:
        return target(*args, **kwargs)
    except Exception as exc:  # the user's code
        raise TorchBridgeError(
            f"{factory_name}(...) raised {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _arguments(text: str | None) -> tuple[list, dict]:
    if text is None:
        return [], {}
    try:
        value = json.loads(text)
    except ValueError:
        raise TorchBridgeError(f"--args is not JSON: {text[:80]!r}") from None
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise TorchBridgeError("--args is a JSON list (positional arguments) or object (keywords)")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "(no message)"
