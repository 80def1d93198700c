"""Memory per batch, from the checked network alone.

Training: weights, their gradients, the optimizer's state, and the activations autograd
keeps for backward, as PyTorch keeps them when it runs cnnspec's torch backend
(training/modules.py): a conv keeps its input, batch norm its input, ReLU its output,
max pooling its input and the indices (int64), dropout its scaled mask; a view (flatten,
a slice) makes no tensor of its own. A tensor kept by several ops is counted once, as
memory holds it once. A layer keeps nothing when neither its weights train nor anything
before it does (a frozen prefix). Workspace, the allocator's slack and the framework's
own memory are left out, and said to be.

Inference: the most bytes alive at once when the layers run in order, each output freed
after its last reader (a skip connection keeps its tensor alive)."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..base.records import record
from ..infer import CheckedLayer, CheckedNetwork
from ..kinds import GlobalPool, Pad, Pool, rule_for
from ..resolve import INPUT

FP32 = 4
OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}  # state copies of each weight
# what PyTorch, the CUDA context and the allocator's slack usually take beyond the tensors
FRAMEWORK_SHARE = 0.1

Key = tuple[str, str]  # (what, layer): ("out", "conv1"), ("indices", "pool1"), ...


class _Storages:
    """The storage each layer's output lives in, and every storage's bytes per image (a
    view shares its input's storage; a fused activation adds its input as a storage)."""

    def __init__(self, network: CheckedNetwork, float_bytes: int):
        self.float_bytes = float_bytes
        self.of: dict[str, Key] = {INPUT: ("out", INPUT)}
        self.size: dict[Key, int] = {("out", INPUT): math.prod(network.input_shape) * float_bytes}
        self.fixed: dict[Key, int] = {}  # bytes that do not grow with the batch
        for entry in network.layers:
            if entry.kind in VIEWS:
                self.of[entry.name] = self.of[entry.inputs[0]]
                continue
            self.of[entry.name] = self.new(("out", entry.name), math.prod(entry.output_shape))
            if _fused(entry):
                self.new(("pre", entry.name), math.prod(entry.output_shape))

    def new(self, key: Key, elements: int, element_bytes: int | None = None) -> Key:
        self.size[key] = elements * (element_bytes or self.float_bytes)
        return key

    def input(self, entry: CheckedLayer, i: int = 0) -> Key:
        return self.of[entry.inputs[i]]


def _fused(entry: CheckedLayer) -> str | None:
    activation = getattr(entry.layer.config, "activation", None)
    return activation.name if activation is not None else None


def _padded(entry: CheckedLayer, pads: tuple[int, ...]) -> int:
    """Values of the input with (begin, end) padding added to each spatial axis."""
    sizes = (n + b + e for n, b, e in zip(entry.input_shape[1:], pads[::2], pads[1::2]))
    return entry.input_shape[0] * math.prod(sizes)


# What each kind's torch module keeps for backward: (storages, entry) -> keys.
def _input(s: _Storages, entry: CheckedLayer) -> list[Key]:
    return [s.input(entry)]


def _conv(s: _Storages, entry: CheckedLayer) -> list[Key]:
    pads = entry.pads or (0, 0)
    if pads[::2] == pads[1::2]:  # the convolution pads itself
        return [s.input(entry)]
    return [s.new(("padded", entry.name), _padded(entry, pads))]


def _pool(s: _Storages, entry: CheckedLayer) -> list[Key]:
    config = entry.config_as(Pool)
    pads = entry.floor_mode_pads or (0, 0)
    kept = [s.new(("padded", entry.name), _padded(entry, pads)) if any(pads) else s.input(entry)]
    if config.mode == "max":
        kept.append(s.new(("indices", entry.name), math.prod(entry.output_shape), 8))  # int64
    elif any(pads) and not config.count_pad:
        # the average divides by how many real pixels each window holds: one map for the batch
        divisor = ("divisor", entry.name)
        s.size[divisor], s.fixed[divisor] = 0, math.prod(entry.output_shape[1:]) * FP32
        kept.append(divisor)
    return kept


def _globalpool(s: _Storages, entry: CheckedLayer) -> list[Key]:
    if entry.config_as(GlobalPool).mode == "avg":  # a mean over H and W: backward needs only the sizes
        return []
    return [s.input(entry), s.new(("indices", entry.name), entry.output_shape[0], 8)]


def _batchnorm(s: _Storages, entry: CheckedLayer) -> list[Key]:
    stats = ("stats", entry.name)  # the batch's mean and inverse deviation, per channel
    s.size[stats], s.fixed[stats] = 0, 2 * entry.input_shape[0] * FP32
    return [s.input(entry), stats]


def _layernorm(s: _Storages, entry: CheckedLayer) -> list[Key]:
    positions = math.prod(entry.input_shape[1:])  # a mean and an inverse deviation per position
    return [s.input(entry), s.new(("stats", entry.name), 2 * positions, FP32)]


def _dropout(s: _Storages, entry: CheckedLayer) -> list[Key]:
    # the scaled mask, as float on the CPU (a CUDA device keeps it as one byte per value)
    return [s.new(("mask", entry.name), math.prod(entry.output_shape), FP32)]


def _droppath(s: _Storages, entry: CheckedLayer) -> list[Key]:
    return [s.new(("mask", entry.name), 1, FP32)]  # one factor per image


def _multiply(s: _Storages, entry: CheckedLayer) -> list[Key]:
    return [s.input(entry, i) for i in range(len(entry.inputs))]


def _pad(s: _Storages, entry: CheckedLayer) -> list[Key]:
    zero = entry.config_as(Pad).mode == "zero"
    return [] if zero else [s.input(entry)]  # reflect and edge read the input back


def _nothing(s: _Storages, entry: CheckedLayer) -> list[Key]:
    return []


SAVED: dict[str, Callable[[_Storages, CheckedLayer], list[Key]]] = {
    "conv": _conv,
    "deconv": _input,
    "dense": _input,
    "pool": _pool,
    "globalpool": _globalpool,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "scale": _input,
    "prelu": _input,
    "dropout": _dropout,
    "droppath": _droppath,
    "multiply": _multiply,
    "pad": _pad,
    "flatten": _nothing,  # a view
    "slice": _nothing,  # a view
    "shuffle": _nothing,  # reshapes, a transpose and a copy: backward needs no values
    "upsample": _nothing,  # backward needs only the sizes
    "add": _nothing,
    "concat": _nothing,
    "activation": _nothing,  # the function keeps its own: `_activation_keeps`
}
VIEWS = ("flatten", "slice")
KEEPS_OUTPUT = ("relu", "sigmoid", "tanh", "softmax")  # the rest keep their input


def _activation_keeps(s: _Storages, entry: CheckedLayer) -> list[Key]:
    """An activation keeps its output (ReLU, sigmoid, tanh, softmax) or its input."""
    fused = _fused(entry)
    fn = fused or getattr(entry.layer.config, "fn", None)
    if fn is None:
        return []
    before = ("pre", entry.name) if fused else s.input(entry)
    return [s.of[entry.name] if fn in KEEPS_OUTPUT else before]


@record
class LayerMemory:
    name: str
    weights: int  # bytes
    gradients: int
    optimizer: int
    saved_per_image: int  # activations this layer is the first to keep


@record
class TrainingMemory:
    batch: int
    optimizer: str
    amp: bool
    layers: tuple[LayerMemory, ...]
    weights: int
    gradients: int
    optimizer_state: int
    cast_weights: int  # autocast's half-precision copies of the weights
    saved_per_image: int
    saved_fixed: int

    @property
    def static(self) -> int:
        """Bytes that do not grow with the batch."""
        return self.weights + self.gradients + self.optimizer_state + self.cast_weights + self.saved_fixed

    @property
    def saved(self) -> int:
        return self.batch * self.saved_per_image + self.saved_fixed

    @property
    def total(self) -> int:
        return self.static + self.batch * self.saved_per_image

    def to_json(self) -> dict:
        return {
            "batch": self.batch,
            "optimizer": self.optimizer,
            "amp": self.amp,
            "weights_bytes": self.weights,
            "gradient_bytes": self.gradients,
            "optimizer_state_bytes": self.optimizer_state,
            "cast_weight_bytes": self.cast_weights,
            "saved_activation_bytes": self.saved,
            "saved_activation_bytes_per_image": self.saved_per_image,
            "total_bytes": self.total,
            "left_out": "workspace (cuDNN, GEMM), the allocator's slack, the CUDA context",
        }


def _requires_grad(network: CheckedNetwork) -> dict[str, bool]:
    """Whether each layer's output carries a gradient: its weights train, or an input's do."""
    needs = {INPUT: False}
    for entry in network.layers:
        trains = entry.trainable_params > 0 and not entry.layer.frozen
        needs[entry.name] = trains or any(needs[name] for name in entry.inputs)
    return needs


def training_memory(
    network: CheckedNetwork, batch: int, optimizer: str = "adam", amp: bool = False
) -> TrainingMemory:
    """Memory to train `network` on batches of `batch` with `optimizer` (a key of
    OPTIMIZERS), in fp32 or under autocast (`amp`: activations in half precision)."""
    storages = _Storages(network, 2 if amp else FP32)
    needs = _requires_grad(network)
    kept: set[Key] = set()
    rows = []
    for entry in network.layers:
        records = needs[entry.name]  # autograd records the op only if a gradient flows through it
        keys = rule_for(SAVED, entry.kind, "the memory estimate")(storages, entry) if records else []
        keys += _activation_keeps(storages, entry) if records else []
        new = [key for key in dict.fromkeys(keys) if key not in kept]
        kept.update(new)
        trainable = entry.trainable_params if not entry.layer.frozen else 0
        rows.append(
            LayerMemory(
                entry.name,
                entry.params * FP32,
                trainable * FP32,
                OPTIMIZERS[optimizer] * trainable * FP32,
                sum(storages.size[key] for key in new),
            )
        )
    trainable_total = sum(row.gradients for row in rows) // FP32
    return TrainingMemory(
        batch,
        optimizer,
        amp,
        tuple(rows),
        sum(row.weights for row in rows),
        sum(row.gradients for row in rows),
        sum(row.optimizer for row in rows),
        2 * trainable_total if amp else 0,
        sum(row.saved_per_image for row in rows),
        sum(storages.fixed.get(key, 0) for key in kept),
    )


def largest_batch(memory: TrainingMemory, budget: int) -> int:
    """The largest batch whose training memory fits `budget` bytes (0: not even one)."""
    room = budget - memory.static
    if room < memory.saved_per_image or memory.saved_per_image <= 0:
        return 0 if room < memory.saved_per_image else room  # nothing grows with the batch
    return room // memory.saved_per_image


def fitting(memory: TrainingMemory, budget: int) -> tuple[int, int]:
    """(the largest batch that fits `budget` bytes, the bytes kept for the framework)."""
    usable = int(budget * (1 - FRAMEWORK_SHARE))
    return largest_batch(memory, usable), budget - usable


@record
class Liveness:
    peak: int  # bytes per image
    at: str  # the layer running when the peak is reached
    total: int  # every output at once, as `activation_bytes` counts


def inference_peak(network: CheckedNetwork) -> Liveness:
    """The most fp32 bytes alive at once, one image: each layer's output lives from the
    step that makes it to its last reader (an output of the network, to the end); a view
    (flatten, a slice) lives in its input's memory."""
    storages = _Storages(network, FP32)
    order = [entry.name for entry in network.layers]
    last_use: dict[Key, int] = {}
    for step, entry in enumerate(network.layers):
        for name in entry.inputs:
            last_use[storages.of[name]] = step
    for name in network.outputs or order[-1:]:
        last_use[storages.of[name]] = len(order)
    change = [0] * (len(order) + 2)  # bytes that come alive (+) or are freed (-) at each step
    born: set[Key] = set()
    for step, entry in enumerate(network.layers):
        key = storages.of[entry.name]
        if key not in born:  # a view makes no new memory
            born.add(key)
            change[step] += storages.size[key]
            change[last_use.get(key, step) + 1] -= storages.size[key]
    alive = storages.size[("out", INPUT)]  # alive from the start to its last reader
    change[last_use.get(("out", INPUT), -1) + 1] -= alive
    peak, at = 0, order[0] if order else INPUT
    for step, name in enumerate(order):  # (a fused activation runs in place of its conv's output,
        alive += change[step]  # as onnxruntime fuses it: one tensor)
        if alive > peak:
            peak, at = alive, name
    return Liveness(peak, at, network.activation_bytes)
