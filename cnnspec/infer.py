"""Resolved networks -> checked networks: shapes, parameters, MACs, receptive fields
and every shape diagnostic, positioned at the layer (or the argument) that caused it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .base.diagnostics import (
    Diagnostic,
    Hidden,
    Span,
    cap_per_file,
    error,
    has_errors,
    suggestion_budget,
    warning,
    with_call_sites,
)
from .base.graph import readers
from .base.records import record
from .base.resources import gc_paused
from .kinds import Inferred, LayerConfig, Pool, Shape, format_shape
from .resolve import INPUT, Layer, Network, Resolved, resolve_sources

ConfigT = TypeVar("ConfigT", bound=LayerConfig)
BYTES_FP32 = 4
CONVENTIONS = {
    "macs": "multiply-accumulates of conv and dense weights, one image; bias adds, "
    "batch norm, pooling and activations count 0",
    "flops": "2 x MACs",
    "params": "every weight and bias; batch norm has 4 per channel, of which gamma and beta "
    "train and the running mean and variance do not (as Keras counts them)",
    "receptive_field": "input pixels that one output position sees, per spatial axis (height, width "
    "for images; length; depth, height, width)",
    "activation_bytes": "fp32 bytes of the input and every layer output, one image",
    "receptive_field_paths": "where paths join, the largest receptive field and jump over the inputs; "
    "upsample and deconv leave them unchanged",
}


@record
class CheckedLayer:
    """One layer after the check: shapes, tensors, parameters, MACs, receptive field."""

    layer: Layer
    input_shape: Shape
    output_shape: Shape
    tensors: dict[str, Shape]  # `weight`, `bias`, ... -> shape (names without the layer prefix)
    trainable_params: int
    non_trainable_params: int
    macs: int
    receptive_field: tuple[int, ...] | None  # one size per spatial axis; None on flat inputs
    jump: tuple[int, ...] | None  # cumulative stride: input pixels between output positions
    pads: tuple[int, ...] | None  # windowed layers, begin and end per axis, `same` resolved
    in_features: int | None
    # A shape error of its own that still left an output (a dense on a map, checked as if
    # flattened): the layers after it are checked, but their figures are not to be trusted.
    erroneous: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.layer.inputs

    @property
    def name(self) -> str:
        return self.layer.name

    def config_as(self, kind: type[ConfigT]) -> ConfigT:
        """The layer's arguments as the kind a backend dispatched on (checked, and typed)."""
        config = self.layer.config
        if not isinstance(config, kind):
            raise TypeError(f"{self.name} is a {config.kind}, not a {kind.kind}")
        return config

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def floor_mode_pads(self) -> tuple[int, ...] | None:
        """Pads (begin, end per axis) that give this layer's output size in floor mode.

        Backends lower pooling's ceil mode to extra end padding: runtimes disagree on
        ceil-mode windows that start in the right padding (PyTorch drops them,
        onnxruntime and ONNX shape inference keep them); explicit pads mean the same
        everywhere. Padding is never part of a max, nor of an average (padding is not
        counted), so the values are unchanged."""
        config = self.layer.config
        if self.pads is None or not isinstance(config, Pool) or not config.ceil:
            return self.pads
        pads: list[int] = []
        for axis, (stride, kernel) in enumerate(zip(config.window_stride, config.kernel)):
            begin = self.pads[2 * axis]
            out, n = self.output_shape[axis + 1], self.input_shape[axis + 1]
            pads += [begin, max((out - 1) * stride + kernel - n - begin, 0)]
        return tuple(pads)

    @property
    def dense_equivalent_params(self) -> int | None:
        """What a fully connected layer from this input to this output would cost."""
        if self.kind != "conv":
            return None
        return (math.prod(self.input_shape) + 1) * math.prod(self.output_shape)

    def to_json(self) -> dict:
        layer = self.layer
        return {
            "name": self.name,
            "kind": self.kind,
            "inputs": list(layer.inputs),
            "spec": layer.spec_text(),
            "path": layer.span.path,
            "line": layer.span.line,
            "column": layer.span.column,
            "input": list(self.input_shape),
            "output": list(self.output_shape),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "macs": self.macs,
            "flops": 2 * self.macs,
            "receptive_field": list(self.receptive_field) if self.receptive_field else None,
            "jump": list(self.jump) if self.jump else None,
            "activation_size": math.prod(self.output_shape),
            "tensors": {k: list(v) for k, v in self.tensors.items()},
            "frozen": layer.frozen,
            "origin": layer.origin,
            "block": layer.block,
            "in_features": self.in_features,
            "dense_equivalent_params": self.dense_equivalent_params,
        }


@record
class CheckedNetwork:
    """A checked network: its layers, totals and whether the walk reached the end."""

    name: str
    path: str
    line: int
    input_shape: Shape
    layers: tuple[CheckedLayer, ...]
    complete: bool  # False when a shape error stopped the walk before the last layer
    base: str | None = None
    dropped: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # layer names; none: the network is its input
    instances: Mapping[str, str] = field(default_factory=dict, compare=False)  # block instance -> its call

    @property
    def output_shapes(self) -> tuple[Shape, ...]:
        by_name = {layer.name: layer for layer in self.layers}
        return tuple(by_name[name].output_shape for name in self.outputs if name in by_name)

    @property
    def output_shape(self) -> Shape:
        """The first output's shape (the input's when there is no layer)."""
        shapes = self.output_shapes
        return shapes[0] if shapes else (self.layers[-1].output_shape if self.layers else self.input_shape)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def non_trainable_params(self) -> int:
        return sum(layer.non_trainable_params for layer in self.layers)

    @property
    def frozen_params(self) -> int:
        return sum(layer.params for layer in self.layers if layer.layer.frozen)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def param_bytes(self) -> int:
        return self.total_params * BYTES_FP32

    @property
    def activation_bytes(self) -> int:
        sizes = [math.prod(self.input_shape)] + [math.prod(c.output_shape) for c in self.layers]
        return sum(sizes) * BYTES_FP32

    def layer(self, name: str) -> CheckedLayer:
        for checked in self.layers:
            if checked.name == name:
                return checked
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "line": self.line,
            "base": self.base,
            "dropped": list(self.dropped),
            "input": list(self.input_shape),
            "output": list(self.output_shape),
            "inputs": [INPUT],
            "outputs": [
                {"name": name, "shape": list(shape)} for name, shape in zip(self.outputs, self.output_shapes)
            ],
            "complete": self.complete,
            "layers": [layer.to_json() for layer in self.layers],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "frozen_params": self.frozen_params,
            "macs": self.macs,
            "flops": 2 * self.macs,
            "param_bytes": self.param_bytes,
            "activation_bytes": self.activation_bytes,
        }


@dataclass
class CheckResult:
    """What `cnnspec check` reports: the checked networks and every diagnostic."""

    networks: list[CheckedNetwork]
    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)
    hidden: list[Hidden] = field(default_factory=list)  # counted past the per-file cap
    files: list = field(default_factory=list)  # every file read (resolved Paths): outputs never replace them

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics) and not any(h.errors for h in self.hidden)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def network(self, name: str | None = None) -> CheckedNetwork:
        """The network called `name`, or the only (first) one when no name is given."""
        for net in self.networks:
            if name is None or net.name == name:
                return net
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "schema": 2,
            "conventions": CONVENTIONS,
            "networks": [net.to_json() for net in self.networks],
            "diagnostics": [d.to_json() for d in self.diagnostics],
            "diagnostics_not_shown": [
                {"path": h.path, "errors": h.errors, "warnings": h.warnings} for h in self.hidden
            ],
        }


def _span_for(layer: Layer, argument: str | None) -> Span:
    if argument and argument in layer.arg_spans:
        return layer.arg_spans[argument]
    return layer.span


def _nested_shape(values) -> tuple[int, ...] | None:
    """Shape of a rectangular nested tuple, None when ragged."""
    if not isinstance(values, tuple):
        return ()
    inner = {_nested_shape(v) for v in values}
    if len(inner) != 1 or None in inner:
        return None if values else (0,)
    rest = inner.pop()
    assert rest is not None
    return (len(values), *rest)


def accepted_weight_shapes(full: Shape) -> list[Shape]:
    """Fixed weights may leave out leading 1s: a single 3x3 filter is written as 3x3."""
    shapes = [full]
    while len(full) > 2 and full[0] == 1:
        full = full[1:]
        shapes.append(full)
    return shapes


def _check_fixed_weights(layer: Layer, result: Inferred) -> Diagnostic | None:
    weights = getattr(layer.config, "weights", None)
    if weights is None:
        return None
    full = result.tensors["weight"][0]
    given = _nested_shape(weights)
    if given in accepted_weight_shapes(full):
        return None
    what = "ragged" if given is None else format_shape(given)
    return error(
        "weights-shape",
        f"{layer.name}: the weights written here are {what}, but the layer needs {format_shape(full)}",
        _span_for(layer, "weights"),
        "write one row per kernel row; leading dimensions of size 1 may be left out",
    )


def _origin(name: str, layers: dict[str, Layer], reader: Layer) -> str:
    """`conv3 (line 12)`: an input of a join, with where it came from. Read from outside its
    block instance, a layer is that instance's output: named as the user named the instance,
    at the line that called it (`enc2 (line 12)`, not the block's `relu4 (line 3)`)."""
    layer = layers.get(name)
    if layer is None:
        return "the input"
    if layer.block is not None and layer.block != reader.block and layer.calls:
        return f"{layer.block} (line {layer.calls[0].line})"
    return f"{name} (line {layer.span.line})"


Fields = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # name -> (receptive field, jump), per axis


def check_network(
    network: Network, base: CheckedNetwork | None = None
) -> tuple[CheckedNetwork, list[Diagnostic]]:
    """Walk the layer graph in definition order (a topological order). A shape error
    stops only the layers that depend on it; the other branches are still checked."""
    diagnostics: list[Diagnostic] = []
    shapes: dict[str, Shape] = {INPUT: network.input_shape}
    ones = (1,) * max(len(network.input_shape) - 1, 1)
    fields: Fields = {INPUT: (ones, ones)}
    by_name = {layer.name: layer for layer in network.layers}
    checked: list[CheckedLayer] = []
    inferred: dict[tuple[int, Shape], Inferred] = {}  # read only: shared by equal layers
    complete = True
    for layer in network.layers:
        if any(name not in shapes for name in layer.inputs):
            complete = False  # an input failed: this layer cannot be checked
            continue
        in_shapes = [shapes[name] for name in layer.inputs]
        result = _infer_layer(layer, in_shapes, by_name, inferred)
        diagnostics += _findings(layer, result)
        if result.output is not None and max(result.output, default=0) > MAX_SIZE:
            diagnostics.append(_beyond_int64(layer, result.output))
            result = Inferred(None)
        if result.output is None:
            complete = False
            continue
        entry = _checked_layer(layer, in_shapes[0], result, fields)
        if layer.expect is not None and tuple(layer.expect) != result.output:
            diagnostics.append(_expectation_failed(entry))
        checked.append(entry)
        shapes[layer.name] = result.output
    if base is not None:
        diagnostics += _transfer_problems(network, checked, base)
    diagnostics += _order_warnings(checked)
    diagnostics += _unused_branches(network)
    net = CheckedNetwork(
        network.name,
        network.span.path,
        network.span.line,
        network.input_shape,
        tuple(checked),
        complete,
        network.base,
        network.dropped,
        network.outputs,
        network.instances,
    )
    return net, diagnostics


MAX_SIZE = 2**63 - 1  # ONNX, onnxruntime and PyTorch hold every size in int64


def _beyond_int64(layer: Layer, shape: Shape) -> Diagnostic:
    """A size no runtime can hold: said here, not as a crash at export."""
    return with_call_sites(
        error(
            "too-large",
            f"{layer.name} gives {' x '.join(f'{d:,}' for d in shape)}: a size beyond int64 "
            f"({MAX_SIZE:,}), which ONNX and PyTorch use for every size",
            layer.span,
            "check the padding, stride and scale on this line",
        ),
        layer.calls,
    )


def _infer_layer(layer: Layer, in_shapes: list[Shape], by_name: dict[str, Layer], inferred: dict) -> Inferred:
    """The kind's shape rule on the layer's inputs."""
    if layer.config.joins and len(in_shapes) > 1:
        labels = [_origin(n, by_name, layer) for n in layer.inputs]
        return layer.config.infer_many(in_shapes, labels, residual=layer.residual)
    # Repeated layers share one config object: infer each (config, shape) once.
    key = (id(layer.config), in_shapes[0])
    return inferred.get(key) or inferred.setdefault(key, layer.config.infer(in_shapes[0]))


def _findings(layer: Layer, result: Inferred) -> list[Diagnostic]:
    """The shape rule's problems, and fixed weights of the wrong shape, at the layer's line."""
    found = []
    for problem in result.problems:
        make = error if problem.severity == "error" else warning
        found.append(
            with_call_sites(
                make(
                    problem.code,
                    f"{layer.name}: {problem.message}",
                    _span_for(layer, problem.field),
                    problem.help,
                ),
                layer.calls,
            )
        )
    fixed = _check_fixed_weights(layer, result) if result.output is not None else None
    if fixed:
        found.append(with_call_sites(fixed, layer.calls))
    return found


def _receptive_field(layer: Layer, shape: Shape, result: Inferred, fields: Fields) -> tuple:
    """Receptive field and jump: the largest over every path into the layer."""
    if len(layer.inputs) == 1:  # a chain: the one path in
        rf, jump = fields[layer.inputs[0]]
    else:
        rf = tuple(map(max, *(fields[n][0] for n in layer.inputs)))
        jump = tuple(map(max, *(fields[n][1] for n in layer.inputs)))
    spatial = len(shape) >= 2 and len(shape) - 1 == len(rf)
    if result.window and spatial:
        extent, stride = result.window.extent, result.window.stride
        rf = tuple(r + (e - 1) * j for r, e, j in zip(rf, extent, jump))
        jump = tuple(j * s for j, s in zip(jump, stride))
    elif result.covers_input and spatial:
        # Every output sees every position of the map (global pool, flatten).
        rf = tuple(r + (n - 1) * j for r, n, j in zip(rf, shape[1:], jump))
        jump = tuple(j * n for j, n in zip(jump, shape[1:]))
    return rf, jump


def _checked_layer(layer: Layer, shape: Shape, result: Inferred, fields: Fields) -> CheckedLayer:
    rf, jump = _receptive_field(layer, shape, result, fields)
    fields[layer.name] = (rf, jump)
    total, trainable = _counts(result)
    if layer.frozen:
        trainable = 0
    assert result.output is not None
    return CheckedLayer(
        layer=layer,
        input_shape=shape,
        output_shape=result.output,
        tensors={k: s for k, (s, _) in result.tensors.items()},
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        macs=result.macs,
        receptive_field=rf,
        jump=jump,
        pads=result.window.pads if result.window else None,
        in_features=result.in_features,
        erroneous=any(p.severity == "error" for p in result.problems),
    )


def _counts(result: Inferred) -> tuple[int, int]:
    """(all, trainable) parameters of the tensors a shape rule gave."""
    total = trainable = 0
    for shape, trains in result.tensors.values():
        size = math.prod(shape)
        total += size
        trainable += size if trains else 0
    return total, trainable


def _expectation_failed(entry: CheckedLayer) -> Diagnostic:
    """`conv ... -> 16x7x7` where the layer gives another shape: the arithmetic in the help."""
    layer = entry.layer
    assert layer.expect is not None
    return error(
        "shape-mismatch",
        f"{layer.name} gives {format_shape(entry.output_shape)}, not "
        f"{format_shape(layer.expect) or layer.expect_text}",
        layer.expect_span or layer.span,
        layer.config.explain(entry.input_shape, entry.output_shape, entry.pads),
    )


def _unused_branches(network: Network) -> list[Diagnostic]:
    """A layer nothing reads that is not an output: its work never reaches a result."""
    read = readers(network.layers, network.outputs)
    found = []
    for layer in network.layers:
        if layer.name not in read:
            found.append(
                with_call_sites(
                    warning(
                        "unused-branch",
                        f"{layer.name} reaches no output: nothing reads it",
                        layer.span,
                        f"read it (`from {layer.name}`, a join) or list it in `output`",
                    ),
                    layer.calls,
                )
            )
    return found


def _transfer_problems(
    network: Network, checked: list[CheckedLayer], base: CheckedNetwork
) -> list[Diagnostic]:
    problems = []
    by_name = {c.name: c for c in base.layers}
    for entry in checked:
        if entry.layer.origin != "base" or entry.name not in by_name:
            continue
        old = by_name[entry.name]
        if old.tensors == entry.tensors:
            continue
        tensor = next(k for k in entry.tensors if old.tensors.get(k) != entry.tensors[k])
        problems.append(
            error(
                "transfer-shape-changed",
                f"{entry.name} is kept from '{base.name}', but its input changed from "
                f"{format_shape(old.input_shape)} to {format_shape(entry.input_shape)}, so {entry.name}.{tensor} "
                f"would be {format_shape(entry.tensors[tensor])} instead of {format_shape(old.tensors[tensor])}",
                network.base_span or network.span,
                f"drop it and what follows (`drop from {entry.name}`) and add a new layer",
            )
        )
        break  # later layers follow from the first change
    return problems


def _order_warnings(checked: list[CheckedLayer]) -> list[Diagnostic]:
    """Softmax that feeds more layers, dropout after the last weighted layer: followed
    along the graph (what reads what), so parallel branches do not count. One backward
    pass: linear in the number of layers."""
    readers: dict[str, list[Layer]] = {}
    for entry in checked:
        for name in entry.layer.inputs:
            readers.setdefault(name, []).append(entry.layer)
    weighted = {entry.layer.name for entry in checked if _weighted(entry)}
    weighted_below: dict[str, bool] = {}  # a weighted layer reads it, directly or not
    next_real: dict[str, str | None] = {}  # the first layer other than dropout it feeds
    for entry in reversed(checked):
        name = entry.layer.name
        below = readers.get(name)
        if not below:
            weighted_below[name], next_real[name] = False, None
            continue
        # .get: with a duplicate-name error, a "reader" may come first; stay total
        weighted_below[name] = any(r.name in weighted or weighted_below.get(r.name, False) for r in below)
        candidates = [r.name if r.config.kind != "dropout" else next_real.get(r.name) for r in below]
        next_real[name] = next((c for c in candidates if c), None)
    found = []
    last_weighted: CheckedLayer | None = None
    for entry in checked:
        layer = entry.layer
        if entry.layer.config.activation_name == "softmax" and next_real[entry.name]:
            found.append(
                warning(
                    "softmax-not-last",
                    f"{layer.name}: softmax is followed by {next_real[entry.name]}; "
                    "softmax normally gives the final class probabilities",
                    layer.span,
                    "move softmax to the last layer, or use relu here",
                )
            )
        if entry.kind == "dropout" and last_weighted is not None and not weighted_below[entry.name]:
            found.append(
                warning(
                    "dropout-after-output",
                    f"{layer.name}: dropout after the output layer "
                    f"{last_weighted.name} randomly zeroes the network's outputs in training",
                    layer.span,
                    "put dropout before the last dense layer",
                )
            )
        if _weighted(entry):
            last_weighted = entry
    return found


def _weighted(entry: CheckedLayer) -> bool:
    return bool(entry.tensors) and entry.kind != "batchnorm"


def check_text(text: str, path: str, real: Path | None, network: str | None = None) -> CheckResult:
    """Resolve and check spec text (`real`: the file it was read from, for `use` paths):
    what `cnnspec.check_source`, the command line, the language server and the importer run."""
    with gc_paused(), suggestion_budget():
        return infer(resolve_sources(text, path, real, network))


def infer(resolved: Resolved) -> CheckResult:
    diagnostics = list(resolved.diagnostics)
    checked: dict[str, CheckedNetwork] = {}

    def visit(name: str) -> CheckedNetwork | None:
        if name in checked:
            return checked[name]
        network = resolved.networks.get(name)
        if network is None:
            return None
        base = visit(network.base) if network.base else None
        net, problems = check_network(network, base)
        checked[name] = net
        diagnostics.extend(problems)
        return net

    for name in resolved.networks:
        visit(name)
    targets = [checked[name] for name in resolved.targets if name in checked]
    unique = list(dict.fromkeys(diagnostics))
    unique.sort(key=lambda d: (d.span.path, d.span.line, d.span.column) if d.span else ("", 0, 0))
    kept, hidden = cap_per_file(unique)
    return CheckResult(targets, kept, resolved.sources, hidden, list(resolved.files))
