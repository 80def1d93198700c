"""ONNX model -> layer graph: the second front end, feeding the printer.

Each ONNX node becomes a cnnspec layer (or folds away: Identity, the Shape/Gather/Concat
arithmetic of a `view(n, -1)`, an x*sigmoid(x) pair that is one `silu`). Shapes are
inferred with the layer kinds' own rules as the graph is read, so an attribute cnnspec
cannot express, or a shape the import would get wrong, stops the import with the node's
name instead of writing a wrong spec. Anything that cannot be expressed is collected, and
reported together: every op type, with its node names and count.

A model is untrusted input: it is read as bytes (bounded by protobuf's own 2 GB limit),
external tensor data only from plain files beside it, and nothing in it is executed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..kinds import Shape
from .graph import import_graph
from .handlers import HANDLERS, Handler
from .load import load_model
from .state import RESERVED, ImportedGraph, NotAModel

__all__ = [
    "HANDLERS",
    "RESERVED",
    "Handler",
    "Imported",
    "ImportedGraph",
    "NotAModel",
    "import_graph",
    "import_model",
    "load_model",
]


@dataclass
class Imported:
    spec: str  # the .cnn text
    weights: dict[str, np.ndarray]  # keyed by the spec's tensor names (`layer1_0_conv1.weight`)
    graph: ImportedGraph
    total_params: int


def import_model(
    path: str | Path,
    name: str = "imported",
    input_shape: Shape | None = None,
    flat: bool = False,
    weights_file: str = "",
    source: str | None = None,
) -> Imported:
    """Read an ONNX model and write it as a spec and its weights. The spec is checked
    with cnnspec's own checker, and each weight tensor is keyed by the name that check
    gives its layer."""
    from ..infer import check_text
    from .printer import comment_text, print_network

    path = Path(path)
    model = load_model(path)
    graph = import_graph(model, path, input_shape, name)
    layout = (
        "\n# The model took NxHxWxC input; this spec takes NxCxHxW (transpose images to channels first)."
        if graph.layout == "NHWC"
        else ""
    )
    # The model's strings and the file names are data: comment_text keeps each on its line.
    # (`source`: what the model came from, where it is not the file: `torch:models:resnet18`)
    source, producer = comment_text(source or path.name), comment_text(graph.producer or "unknown producer")
    named = comment_text(weights_file)
    header = (
        f"# Imported by cnnspec from {source} ({producer}, opset {graph.opset})."
        + (
            f"\n# Weights: {named} (cnnspec export {name}.cnn --weights {named} -o model.onnx)"
            if named
            else ""
        )
        + layout
    )
    printed = print_network(name, graph.input_shape, graph.layers, graph.outputs, flat, header)
    result = check_text(printed.text, f"{name}.cnn", None)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    network = result.networks[0] if result.networks else None
    if errors or network is None:  # the printer wrote something the checker refuses: a cnnspec bug
        raise RuntimeError(
            f"the imported spec does not check: {errors[0].message if errors else 'no network'}"
        )
    checked = [entry for entry in network.layers if entry.tensors]
    imported = [layer for layer in printed.order if layer.tensors]
    if len(checked) != len(imported):
        raise RuntimeError(f"{len(checked)} layers with tensors in the spec, {len(imported)} in the model")
    weights: dict[str, np.ndarray] = {}
    for entry, layer in zip(checked, imported):
        for suffix, shape in entry.tensors.items():
            array = layer.tensors.get(suffix)
            if array is None or tuple(array.shape) != tuple(shape):
                raise RuntimeError(f"{entry.name}.{suffix} does not match the model's {layer.name}.{suffix}")
            weights[f"{entry.name}.{suffix}"] = array
    return Imported(printed.text, weights, graph, network.total_params)
