"""The whole graph: every node through its handler, in order; what cannot be expressed is
collected and reported together; activations fused onto the layer before them."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from ..base.diagnostics import CnnspecError, Diagnostic, one_line
from ..base.graph import ancestors
from ..kinds import (
    DEFAULT_ALPHA,
    Activation,
    ActivationLayer,
    Concat,
    Conv,
    Deconv,
    Dense,
    Shape,
)
from ..resolve import MAX_EXPANSION
from .folding import FOLDABLE, fold
from .handlers import HANDLERS
from .load import tensor_array
from .printer import INPUT, GraphLayer
from .state import Act, ImportedGraph, NotAModel, Partial, State, Unsupported, attributes_of, node_label


def import_graph(
    model, path: Path, input_shape: Shape | None = None, name: str = "imported"
) -> ImportedGraph:
    """The layer graph of a loaded model. Raises CnnspecError listing what cannot be
    imported, NotAModel when the file is not a usable model."""
    graph = model.graph
    if len(graph.node) > MAX_EXPANSION:
        raise CnnspecError(
            [
                _error(
                    path,
                    "too-large",
                    f"{len(graph.node):,} nodes; a cnnspec network has at most {MAX_EXPANSION:,} layers",
                )
            ]
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset == 0:
        raise NotAModel("the model imports no standard ONNX opset")
    state, shape, nhwc = _start(graph, path, input_shape, opset)
    walk = _Walk(model)
    for node in graph.node:
        _read_node(state, node, walk)
    for flat in state.hwc_flatten:
        state.unsupported["Transpose"].append(
            (flat, "it flattens in HxWxC order, and no dense layer follows to take that order over")
        )
    if state.unsupported:
        raise CnnspecError(_unsupported_report(state, path))
    outputs = []
    for out in graph.output:
        value = state.values.get(out.name)
        if not isinstance(value, Act) or value.layer == INPUT:
            raise CnnspecError(
                [_error(path, "import-unsupported", f"output '{out.name}' is not computed by a layer")]
            )
        outputs.append(value.layer)
    outputs = list(dict.fromkeys(outputs))  # a tensor listed as an output twice is one output
    layers, kept_outputs = _fuse_activations(list(state.layers.values()), tuple(outputs))
    _chain_concats(layers)
    needed = ancestors(layers, kept_outputs)  # what the outputs read; the rest is dead code
    return ImportedGraph(
        name,
        shape,
        [layer for layer in layers if layer.name in needed],
        kept_outputs,
        opset,
        model.producer_name,
        "NHWC" if nhwc else "NCHW",
    )


def _start(graph, path: Path, input_shape: Shape | None, opset: int) -> tuple[State, Shape, bool]:
    """The state before the first node: initializers, the input (and whether the model
    takes NxHxWxC, as Keras models converted as they are do), who reads what."""
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    readers = [n for n in graph.node if inputs and inputs[0].name in n.input]
    nhwc = bool(readers) and all(
        n.op_type == "Transpose" and [int(p) for p in attributes_of(n).get("perm", [])] == [0, 3, 1, 2]
        for n in readers
    )
    shape = _input_shape(inputs, path, input_shape, nhwc)
    dims = inputs[0].type.tensor_type.shape.dim
    declared = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    state = State(opset, declared)
    for tensor in graph.initializer:
        state.values[tensor.name] = tensor_array(tensor, path.parent)
    state.values[inputs[0].name] = Partial("nhwc_input", Act(INPUT, shape)) if nhwc else Act(INPUT, shape)
    for node in graph.node:
        state.readers.update(n for n in node.input if n)
    state.readers.update(o.name for o in graph.output)
    return state, shape, nhwc


STAND_IN = "\x00stand-in"  # the layer of a tensor that an op cnnspec cannot translate wrote


class _Walk:
    """How the import goes on past an op it cannot translate, so that one report names
    every op to fix: the op's outputs stand in as activations of the shape ONNX shape
    inference gives them (worked out on the first such op only), and the nodes after it
    are read as usual. `broken`: tensors with no shape to stand in; `derived`: tensors
    computed from a stand-in, whose nodes may fail for the stand-in's sake alone."""

    def __init__(self, model):
        self.model = model
        self.shapes: dict[str, Shape] | None = None
        self.broken: set[str] = set()
        self.derived: set[str] = set()

    def stand_in(self, state: State, node) -> None:
        if self.shapes is None:
            from .shapes import inferred_shapes

            self.shapes = inferred_shapes(self.model)
        for name in node.output:
            shape = self.shapes.get(name)
            if shape is None:
                self.broken.add(name)
            else:
                state.values[name] = Act(STAND_IN, shape)
                self.derived.add(name)


def _downstream_of_broken(state: State, node, label: str, walk: _Walk) -> None:
    """A node reading what has no shape to stand in is not read either; an op cnnspec
    would not know anyway is still listed."""
    walk.broken.update(node.output)
    if (
        node.op_type not in HANDLERS
        and node.op_type not in FOLDABLE
        and node.op_type not in ("Shape", "Constant")
    ):
        state.unsupported[node.op_type].append((label, ""))


def _read_node(state: State, node, walk: _Walk) -> None:
    """One node through constant folding or its op's handler; what cannot be expressed is
    collected in `state.unsupported`, and its outputs stand in for what it computes."""
    label = node_label(node)
    if node.domain not in ("", "ai.onnx"):
        state.unsupported[f"{node.domain}.{node.op_type}"].append(
            (label, "an op outside the standard ONNX domain")
        )
        walk.stand_in(state, node)
        return
    missing = [n for n in node.input if n and n not in state.values and n not in walk.broken]
    if missing:
        raise NotAModel(
            f"node '{label}' reads '{missing[0]}', which no earlier node writes (not a valid graph)"
        )
    if any(n in walk.broken for n in node.input if n):
        _downstream_of_broken(state, node, label, walk)
        return
    derived = any(n in walk.derived for n in node.input if n)
    try:
        _translate(state, node)
        walk.derived.update(node.output if derived else ())
    except Unsupported as exc:
        state.unsupported[node.op_type].append((label, str(exc)))
        walk.stand_in(state, node)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, ArithmeticError) as exc:
        if derived:  # it may fail only for the stand-in's sake: go on past it, unlisted
            walk.stand_in(state, node)
            return
        # a node missing inputs or outputs, an attribute of the wrong type or size
        raise NotAModel(f"node '{label}' ({node.op_type}) is malformed ({type(exc).__name__})") from None


def _translate(state: State, node) -> None:
    """The node's value: folded from constants, or what its op's handler makes of it."""
    folded = fold(state, node)
    if folded is not None:
        state.values[node.output[0]] = np.asarray(folded)
        return
    handler = HANDLERS.get(node.op_type)
    if handler is None:
        raise Unsupported("")
    result = handler.handle(state, node)
    results = result if isinstance(result, list) else [result]  # Split: one value per output
    for tensor, value in zip(node.output, results):
        state.values[tensor] = value
        if isinstance(value, Act) and value.layer != INPUT:
            state.layer_tensor.setdefault(value.layer, tensor)


def _input_shape(inputs, path: Path, given: Shape | None, nhwc: bool = False) -> Shape:
    def refuse(message: str, help: str | None = None) -> CnnspecError:
        return CnnspecError([_error(path, "import-unsupported", message, help)])

    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise refuse(f"the model has {len(inputs)} inputs ({names}); cnnspec networks have one")
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != 1:
        raise refuse("the model's input is not float32")
    dims = tensor_type.shape.dim
    if not 2 <= len(dims) <= 5:
        raise refuse(f"the input has {len(dims)} dimensions; cnnspec takes NxCxHxW, NxCxL, NxCxDxHxW or NxF")
    fixed, open_names = _declared_dims(dims, nhwc)
    if given is not None:
        if not _fits(given, fixed):
            shown = "x".join(str(f) if f else "?" for f in fixed)
            raise refuse(f"--input-shape {'x'.join(map(str, given))} does not fit the model's input {shown}")
        return tuple(given)
    if any(f is None for f in fixed):
        shown = "x".join(str(f) if f else name for f, name in zip(fixed, open_names))
        raise refuse(
            f"the input size {shown} is not fixed",
            "give it with --input-shape CxHxW (e.g. --input-shape 3x224x224)",
        )
    return tuple(f for f in fixed if f is not None)


def _declared_dims(dims, nhwc: bool) -> tuple[list[int | None], list[str]]:
    """The input's sizes after the batch (None where not fixed) and their names."""
    fixed = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims[1:]]
    open_names = [d.dim_param or "?" for d in dims[1:]]
    if nhwc:  # HxWxC, written CxHxW like every cnnspec input
        return fixed[2:] + fixed[:2], open_names[2:] + open_names[:2]
    return fixed, open_names


def _fits(given: Shape, fixed: list[int | None]) -> bool:
    return len(given) == len(fixed) and all(f is None or f == g for f, g in zip(fixed, given))


def _fuse_activations(
    layers: list[GraphLayer], outputs: tuple[str, ...]
) -> tuple[list[GraphLayer], tuple[str, ...]]:
    """`conv ...; relu` -> `conv ... relu` where nothing else reads the conv."""
    readers: Counter = Counter(n for layer in layers for n in layer.inputs)
    readers.update(outputs)
    by_name = {layer.name: layer for layer in layers}
    replaced: dict[str, str] = {}
    kept: list[GraphLayer] = []
    for layer in layers:
        layer.inputs = tuple(replaced.get(n, n) for n in layer.inputs)
        if isinstance(layer.config, ActivationLayer) and len(layer.inputs) == 1:
            before = by_name.get(layer.inputs[0])
            if (
                before is not None
                and isinstance(before.config, (Conv, Dense, Deconv))
                and before.config.activation is None
                and readers[before.name] == 1
                and layer.config.alpha
                in (None, DEFAULT_ALPHA.get(layer.config.fn))  # a conv line takes no alpha
            ):
                before.config = dataclasses.replace(
                    before.config, activation=Activation(name=layer.config.fn, alpha=layer.config.alpha)
                )
                replaced[layer.name] = before.name
                continue
        kept.append(layer)
    return kept, tuple(replaced.get(name, name) for name in outputs)


def _chain_concats(layers: list[GraphLayer]) -> None:
    """concat(a, b, c, d) where an earlier layer is concat(a, b, c): concat(that, d), the
    same channels in the same order. torchvision's DenseNet concatenates every feature so
    far in each layer; chained, the import reads as the hand-written `concat {} { ... }`."""
    by_first: dict[str, list[GraphLayer]] = {}  # earlier concats by their first input
    for layer in layers:
        if not isinstance(layer.config, Concat) or len(layer.inputs) < 2:
            continue
        inputs = layer.inputs
        prefixes = [
            earlier
            for earlier in by_first.get(inputs[0], [])
            if 2 <= len(earlier.inputs) < len(inputs) and inputs[: len(earlier.inputs)] == earlier.inputs
        ]
        by_first.setdefault(inputs[0], []).append(dataclasses.replace(layer))  # as written, before chaining
        if prefixes:
            longest = max(prefixes, key=lambda earlier: len(earlier.inputs))
            layer.inputs = (longest.name, *inputs[len(longest.inputs) :])


def _error(path: Path, code: str, message: str, help: str | None = None) -> Diagnostic:
    """Messages name nodes, ops and outputs of the model: each kept on one line, bounded."""
    return Diagnostic("error", code, one_line(f"{path}: {message}", 4000), None, help)


def _unsupported_report(state: State, path: Path) -> list[Diagnostic]:
    diagnostics = []
    for op, nodes in sorted(state.unsupported.items()):
        shown = ", ".join(label for label, _ in nodes[:5]) + (
            f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        )
        reasons = sorted({reason for _, reason in nodes if reason})
        why = f": {reasons[0]}" if reasons else ": no cnnspec layer does this"
        diagnostics.append(
            _error(
                path, "import-unsupported", f"{op} x{len(nodes)} ({shown}) cannot be written in cnnspec{why}"
            )
        )
    return diagnostics
