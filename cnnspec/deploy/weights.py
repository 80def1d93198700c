"""Weights for a checked network: fresh (seeded), written in the spec, or loaded from an
`.npz` / ONNX file and matched by name and shape. Names follow PyTorch's state-dict
convention (`conv1.weight`, `bn1.running_mean`) so weights move between the two.

The result comes with a plan: for every tensor, where its values come from and whether
training may change it. `cnnspec export` prints the plan's totals; tests read it.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Literal

import numpy as np

from ..base.diagnostics import CnnspecError, Diagnostic, fail
from ..base.files import damaged_array_file_errors, npz_fits
from ..base.records import record
from ..infer import CheckedLayer, CheckedNetwork, accepted_weight_shapes
from ..kinds import RELU_FAMILY, format_shape

Source = Literal["loaded", "new", "spec"]
FRESH_CHUNK = 1 << 22  # values drawn at once for a fresh tensor (32 MB of float64)
NPZ_HELP = "save with numpy.savez(path, **{'conv1.weight': ..., 'conv1.bias': ...})"


@record
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    source: Source  # loaded from --weights, freshly initialised, or written in the spec
    frozen: bool
    trainable: bool  # False for frozen layers and for batch-norm running statistics


class TensorStore(MutableMapping[str, np.ndarray]):
    """Tensors by name. Fresh ones are made each time they are read and never held, so an
    export streams a model tensor by tensor: memory peaks near its largest tensor, not its
    size. The values are the same on every read (seeded by name)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._fresh: dict[str, tuple[tuple[int, ...], bool, int, float | None]] = {}

    def put(self, name: str, array: np.ndarray) -> None:
        self._fresh.pop(name, None)
        self._arrays[name] = array

    __setitem__ = put

    def __delitem__(self, name: str) -> None:
        if self._arrays.pop(name, None) is None:
            del self._fresh[name]

    def fresh(
        self, name: str, shape: tuple[int, ...], he: bool, seed: int, constant: float | None = None
    ) -> None:
        self._fresh[name] = (shape, he, seed, constant)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._arrays:
            return self._arrays[name]
        shape, he, seed, constant = self._fresh[name]
        return fresh_tensor(name, shape, he, seed, constant)

    def __iter__(self) -> Iterator[str]:
        return iter([*self._arrays, *self._fresh])

    def __len__(self) -> int:
        return len(self._arrays) + len(self._fresh)

    def __contains__(self, name: object) -> bool:
        return name in self._arrays or name in self._fresh


@record
class WeightSet:
    arrays: Mapping[str, np.ndarray]
    plan: tuple[TensorPlan, ...]
    unused: tuple[str, ...] = ()  # tensors of the file that belong to dropped layers

    @property
    def frozen_names(self) -> list[str]:
        return [p.name for p in self.plan if p.frozen]

    def summary(self) -> str:
        def count(predicate) -> int:
            return sum(math.prod(p.shape) for p in self.plan if predicate(p))

        parts = [
            f"{count(lambda p: p.source == 'loaded'):,} loaded",
            f"{count(lambda p: p.source == 'new'):,} newly initialised",
        ]
        if any(p.source == "spec" for p in self.plan):
            parts.append(f"{count(lambda p: p.source == 'spec'):,} from the spec")
        parts.append(f"{count(lambda p: p.frozen):,} frozen")
        text = "weights: " + ", ".join(parts)
        if self.unused:
            text += f"; not used (dropped layers): {', '.join(self.unused)}"
        return text

    def table(self) -> str:
        """The plan per tensor: where its values come from and whether training may change
        it (`frozen`, or `fixed` for batch-norm running statistics), then the totals."""
        rows = [f"{'tensor':<24} {'shape':<14} {'values':<7} training"]
        for p in self.plan:
            training = "frozen" if p.frozen else ("trains" if p.trainable else "fixed")
            rows.append(f"{p.name:<24} {format_shape(p.shape):<14} {p.source:<7} {training}")
        return "\n".join([*rows, self.summary()])


def _problem(message: str) -> Diagnostic:
    return Diagnostic("error", "weights-file", message)


def _followed_by_relu(network: CheckedNetwork, index: int) -> bool:
    """He initialisation suits a layer whose output goes (maybe through batch norm) into a
    ReLU-family activation; Glorot suits the rest."""
    entry = network.layers[index]
    if entry.layer.config.activation_name is not None:
        return entry.layer.config.activation_name in RELU_FAMILY
    for later in network.layers[index + 1 :]:
        if later.kind in ("batchnorm", "dropout"):
            continue
        return later.layer.config.activation_name in RELU_FAMILY
    return False


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def fresh_tensor(
    name: str, shape: tuple[int, ...], he: bool, seed: int, constant: float | None = None
) -> np.ndarray:
    """Deterministic per tensor: the seed and the tensor's name pick the random stream, so
    adding a layer elsewhere never changes this one's values. `constant`: the value the
    layer's kind starts every element at (LayerConfig.initial)."""
    if constant is not None:
        return np.full(shape, constant, np.float32)
    suffix = name.rsplit(".", 1)[-1]
    if suffix in ("bias", "running_mean"):
        return np.zeros(shape, np.float32)
    if suffix == "running_var":
        return np.ones(shape, np.float32)
    if len(shape) == 1:  # batch-norm gamma
        return np.ones(shape, np.float32)
    # The whole seed enters the stream (no masking: seeds 1 and 2^32 + 1 differ).
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    fan_in, fan_out = _fans(shape)
    out = np.empty(shape, np.float32)
    flat = out.reshape(-1)
    # In chunks: numpy draws in float64, and a whole large tensor of it would double the
    # memory; drawn in pieces the stream, hence the values, are the same.
    for start in range(0, flat.size, FRESH_CHUNK):
        count = min(FRESH_CHUNK, flat.size - start)
        if he:
            flat[start : start + count] = rng.standard_normal(count) * math.sqrt(2.0 / fan_in)
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            flat[start : start + count] = rng.uniform(-limit, limit, count)
    return out


def _spec_tensor(entry: CheckedLayer, suffix: str) -> np.ndarray | None:
    """Weights written in the spec (`weights=[[1,0,-1],...]`); bias then defaults to 0."""
    written = getattr(entry.layer.config, "weights", None)
    if written is None:
        return None
    shape = entry.tensors[suffix]
    if suffix == "weight":
        array = np.asarray(written, np.float32)
        assert array.shape in accepted_weight_shapes(shape)  # checked by infer
        return array.reshape(shape)
    return np.zeros(shape, np.float32)


def load_file(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of an `.npz` (keys = names) or of an ONNX model's initializers."""
    path = Path(path)
    if not path.is_file():
        raise fail("weights-file", f"{path}: no such weights file")
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf raises several types for a corrupt file
            raise fail("weights-file", f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
        try:
            return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        except Exception as exc:  # an element type numpy cannot hold, external data missing
            raise fail("weights-file", f"{path}: a tensor cannot be read ({type(exc).__name__})") from None
    try:
        problem = npz_fits(path) if zipfile.is_zipfile(path) else None  # sizes from the headers
        if problem is None:
            data = np.load(path, allow_pickle=False)
    except damaged_array_file_errors() as exc:
        raise fail("weights-file", f"{path}: not a readable .npz of named arrays ({exc})", NPZ_HELP) from None
    if problem:  # checked before any tensor is inflated
        raise fail("weights-file", f"{path}: {problem}")
    if isinstance(data, np.ndarray):
        raise fail("weights-file", f"{path}: holds one unnamed array, not named tensors", NPZ_HELP)
    with data:
        try:
            return {key: np.asarray(data[key]) for key in data.files}
        except damaged_array_file_errors() as exc:
            raise fail(
                "weights-file", f"{path}: a tensor cannot be read ({str(exc)[:200]})", NPZ_HELP
            ) from None


def _value_problem(name: str, value: np.ndarray) -> str | None:
    """Why a provided tensor cannot be a weight: not real numbers, or NaN / infinity."""
    if value.dtype.kind not in "biuf":
        return f"tensor '{name}' holds {value.dtype} values, not real numbers"
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        bad = int(np.count_nonzero(~np.isfinite(value)))
        return f"tensor '{name}' holds {bad:,} NaN or infinite values"
    if (
        value.dtype.kind in "iuf"
        and value.size
        and np.abs(value.astype(np.float64)).max() > np.finfo(np.float32).max
    ):
        return f"tensor '{name}' holds values beyond float32's range"
    return None


def _load_into(arrays: TensorStore, name: str, value: np.ndarray, shape, layer: str) -> Diagnostic | None:
    """A tensor from the weights file, stored when its values and shape fit."""
    unusable = _value_problem(name, value)
    if unusable:
        return _problem(unusable)
    if tuple(value.shape) != tuple(shape):
        return _problem(
            f"tensor '{name}' is {format_shape(value.shape)} in the weights, but {layer} needs {format_shape(shape)}"
        )
    arrays.put(name, value.astype(np.float32))
    return None


def _unused(network: CheckedNetwork, left: set[str], problems: list[Diagnostic]) -> list[str]:
    """Tensors of the file no layer took: those of dropped layers are expected (returned),
    any other is a problem (a file for another network)."""
    dropped = tuple(f"{name}." for name in network.dropped)
    unused = []
    for name in sorted(left):
        if name.startswith(dropped):
            unused.append(name)
        else:
            problems.append(
                _problem(f"the weights have a tensor '{name}' that no layer of '{network.name}' uses")
            )
    return unused


def build_weights(
    network: CheckedNetwork,
    seed: int = 0,
    provided: dict[str, np.ndarray] | None = None,
) -> WeightSet:
    """Every tensor of `network`: from `provided` for layers that must take them, from the
    spec where written there, otherwise fresh. Raises CnnspecError listing every
    missing, extra or wrongly shaped tensor at once."""
    arrays = TensorStore()
    plan: list[TensorPlan] = []
    problems: list[Diagnostic] = []
    used: set[str] = set()
    for index, entry in enumerate(network.layers):
        layer = entry.layer
        # Every layer of a plain network and the kept layers of a derived one must find
        # their tensors in the file; a derived network's new layers take them when the
        # file has them (a trained model of this very network) and start fresh otherwise.
        must_load = provided is not None and layer.origin != "new"
        he = _followed_by_relu(network, index)
        for suffix, shape in entry.tensors.items():
            name = f"{layer.name}.{suffix}"
            trainable = not layer.frozen and suffix not in ("running_mean", "running_var")
            source: Source
            if provided is not None and name in provided:
                used.add(name)
                problem = _load_into(arrays, name, np.asarray(provided[name]), shape, layer.name)
                if problem:
                    problems.append(problem)
                    continue
                source = "loaded"
            elif must_load:
                problems.append(
                    _problem(f"the weights have no tensor '{name}' (needed: {format_shape(shape)})")
                )
                continue
            elif (written := _spec_tensor(entry, suffix)) is not None:
                arrays.put(name, written)
                source = "spec"
            else:
                arrays.fresh(name, tuple(shape), he, seed, layer.config.initial(suffix))
                source = "new"
            plan.append(TensorPlan(name, tuple(shape), source, layer.frozen, trainable))
    unused: list[str] = []
    if provided is not None:
        unused = _unused(network, set(provided) - used, problems)
    if problems:
        raise CnnspecError(problems)
    return WeightSet(arrays, tuple(plan), tuple(unused))
