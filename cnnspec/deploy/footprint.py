"""The memory a process takes to run or to train a model, estimated before it starts, so
that `run`, `bench`, `evaluate` and `train` refuse a batch that does not fit instead of
being killed by the kernel halfway (issue 24, rule 2).

A run's estimate comes from the ONNX graph onnxruntime is given (a spec's run exports it
first): the weights and their copies, and per image the largest set of activations alive
at once over its nodes. Training's comes from the checked network (cost.memory): the
weights, optimizer state and what autograd keeps. The multipliers are measured (peak
resident memory over the interpreter's own, zoo networks; `python
benchmarks/bench_limits.py` prints estimate against measurement) and chosen so that the
estimate is never below the peak measured: an estimate too low lets the kernel kill the
run; one too high refuses a batch that would have fitted. So on the CPU these estimates
are the quick upper bound (running 1.0x-2.2x, training 1.1x-1.6x), and a batch one does not
let through is measured on two smaller ones instead (Measured: running 1.07x-1.14x over 16
networks, training 1.05x-1.23x over five).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from ..base.records import record

# Running (onnxruntime), measured on 16 zoo networks (1-D, 2-D, 3-D), from a spec and from
# a file. While batches run the process holds the runtime itself (thread pools, kernels,
# the allocator's first chunks: 12-60 MiB, more on some installs), onnxruntime's copy of
# the weights, a repacked copy of the conv weights for its NCHWc kernels, and the caller's
# own copies (a spec's run keeps its numpy arrays); building the session holds one copy
# more for a moment (the serialised model, or the file as read). Per image: the largest set
# of activations alive at once, channels padded as onnxruntime's x86 kernels pad them,
# times what its arena makes of that set: with the memory pattern off 0.67x (ResNet-50,
# whose Conv+Add onnxruntime fuses) to 1.76x (SqueezeNet) and 1.98x (LeNet-5's small maps),
# so 2x; with the pattern on up to 3.9x (the first run's chunks and the planned block
# coexist), so 4x. The pattern saves time on small runs only (LeNet-5 at batch 1 runs 1.2x
# faster with it; at the first batch above PATTERN_LIMIT bytes of activations, eight
# networks ran in 0.88x-1.02x the time without it), so larger runs go without it and hold
# 3-56% less per image (11 of 12 networks; GoogLeNet 8% more).
SESSION_BYTES, CONV_WEIGHT_COPIES, CHANNEL_BLOCK = 64 << 20, 2, 16
LIVE_COPIES, PATTERN_LIVE_COPIES, PATTERN_LIMIT = 2, 4, 64 << 20

# A batch the graph's estimate does not let through is measured instead (Measured): two
# batches, the larger about PROBE_BYTES by that estimate (a batch of 1 and 2 fell up to 7%
# short of ResNet-50's large batch; these were within 3%), the slope taken 10% higher.
PROBE_BYTES, MEASURED_MARGIN = 128 << 20, 1.1

# Training (PyTorch, on the CPU). Measured for LeNet-5 and eight ImageNet networks, batch 4 to
# 512, Adam and SGD: PyTorch itself about 90-130 MiB; the weights about 8 times (the
# module's parameters, their gradients, the optimizer's state, the numpy arrays they came
# from, the checkpoint and the ONNX model written at the end); per example 1.02x
# (MobileNetV2) to 1.53x (DenseNet-121) the activations autograd keeps for the backward
# pass (the gradients in flight come on top) and the batch's input a few times over (read,
# normalised, as a tensor); a data set of arrays twice (as read, and the copies the batches
# are cut from).
TRAIN_SESSION_BYTES = 128 << 20
TRAIN_WEIGHT_COPIES, TRAIN_SAVED_COPIES, TRAIN_INPUT_COPIES, TRAIN_DATA_COPIES = 8, 1.6, 4, 2
TRAIN_FED_COPIES = 2  # a measured step's batch as read and normalised, outside the step

# Outputs that share their input's memory in onnxruntime, as a view does in cost.memory;
# and activations it fuses into the conv before them (when nothing else reads the conv's output).
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
FUSED_ACTIVATIONS = frozenset({"Relu", "Tanh", "Sigmoid", "LeakyRelu", "Clip", "HardSigmoid"})


@record
class Footprint:
    """The peak memory of running one model in onnxruntime, as a function of the batch."""

    load: int  # bytes while the session is built
    resident: int  # bytes held while batches run, whatever the batch
    live: int  # per image: the most activation bytes alive at once, channels padded
    ends: int  # per image: the input and the output

    def memory_pattern(self, batch: int) -> bool:
        """Whether a session that runs `batch` images should plan onnxruntime's memory pattern."""
        return batch * self.live < PATTERN_LIMIT

    def per_image(self, batch: int, memory_pattern: bool | None = None) -> int:
        pattern = self.memory_pattern(batch) if memory_pattern is None else memory_pattern
        return int((PATTERN_LIVE_COPIES if pattern else LIVE_COPIES) * self.live) + self.ends

    def peak(self, batch: int, memory_pattern: bool | None = None) -> int:
        """Bytes at the peak of building the session and running `batch` images through it,
        the memory pattern on or off (by default as memory_pattern(batch) says)."""
        return max(self.load, self.resident + batch * self.per_image(batch, memory_pattern))

    def largest_batch(self, budget: float, memory_pattern: bool | None = None) -> int:
        """The largest batch whose peak is within `budget` bytes, the memory pattern on or
        off (by default as memory_pattern(batch) says); 0 when not even one image fits."""
        if budget < self.load:
            return 0
        room = budget - self.resident
        fits = {pattern: max(int(room // max(self.per_image(1, pattern), 1)), 0) for pattern in (True, False)}
        if memory_pattern is not None:
            return fits[memory_pattern]
        # without the pattern a batch takes less, but only a batch that large runs without it
        return fits[False] if fits[False] * self.live >= PATTERN_LIMIT else fits[True]


@record
class Measured:
    """The memory running a model takes above what the process holds, measured on two small
    batches with exact allocation (resources.exact_allocation, onnxruntime's arena off):
    then every tensor is a block of its own, and the peak grows by the same bytes per image
    whatever the batch (16 zoo networks, batches of 4 to 1,857: the line 0.97x-1.04x the
    peak before its margin, `python benchmarks/bench_limits.py`)."""

    fixed: int  # bytes whatever the batch (none from the probes: line_through; a module's in training)
    per_image: int  # bytes per image, with MEASURED_MARGIN
    probes: tuple[int, int]  # the batch sizes measured

    def peak(self, batch: int) -> int:
        return self.fixed + batch * self.per_image

    def largest_batch(self, budget: float) -> int:
        """The largest batch whose peak is within `budget` bytes; 0 when not even one fits."""
        return max(int((budget - self.fixed) // max(self.per_image, 1)), 0)


def probe_batches(footprint: Footprint, batch: int, room: float) -> tuple[int, int] | None:
    """Two batch sizes to measure `batch` images by (probe_sizes), by the graph's estimate."""
    return probe_sizes(footprint.per_image(batch, memory_pattern=False), batch, room)


def probe_sizes(per_image: float, batch: int, room: float, least: int = 2) -> tuple[int, int] | None:
    """Two batch sizes to measure `batch` images by, for an estimate of `per_image` bytes:
    the larger holding about PROBE_BYTES by it (enough for its allocations to look as a
    large batch's do) and at least `least`, both below `batch` and their images within
    `room` bytes; None when there are no two such sizes."""
    per_image = max(per_image, 1)
    larger = min(batch - 1, max(least, int(PROBE_BYTES // per_image)), int(room // per_image))
    return (larger // 2, larger) if larger >= max(least, 2) else None


def measured_line(step, probes: tuple[int, int]) -> tuple[Measured, int]:
    """(the Measured line of `step(size)`, the bytes its first call left resident): one
    call at the smaller size whose lasting allocations stay outside the line, then each
    size twice with the peak reset before each, the line through the smaller's lower peak
    and the larger's higher, so that a stray allocation in one call steepens it rather
    than flattening it (seen once: U-Net's batch of 1 peaked 30 MiB high, and a batch of
    16 then went 5% above the line). Meaningful in a process with exact allocation
    (resources.exact_allocation), which the caller sets up."""
    from ..base.resources import peak_meter, resident_memory

    start = peak_meter()
    if start is None:
        raise RuntimeError("peak memory cannot be read on this system")  # the caller checked
    before = resident_memory()
    step(probes[0])
    lasting = max(resident_memory() - before, 0)
    peaks: dict[int, list[int]] = {size: [] for size in probes}
    for size in (*probes, *probes):
        read = start()
        step(size)
        peaks[size].append(read())
    return line_through(probes, (min(peaks[probes[0]]), max(peaks[probes[1]]))), lasting


def line_through(probes: tuple[int, int], peaks: tuple[int, int]) -> Measured:
    """The Measured line of two (batch, peak bytes) points: the slope between them, but
    never flatter than the line from nothing to the larger point (so no intercept), with
    MEASURED_MARGIN. A few MiB held at the smaller batch alone flatten the slope far
    (ResNet-50, batches of 3 and 6: 4.41 MiB an image where a batch of 85 took 4.99, once in
    five CI runs); bytes that do not grow with the batch, spread over the larger batch's
    images instead, make the estimate higher, never lower."""
    (small, large), (low, high) = probes, peaks
    slope = max(max(high - low, 0) / (large - small), high / large)
    return Measured(0, int(slope * MEASURED_MARGIN), probes)


def channel_padding(shapes) -> float:
    """How much more memory maps of these per-image shapes (channels first) take with their
    channels padded to a block; vectors are not padded."""
    maps = [shape for shape in shapes if len(shape) >= 2]
    plain = sum(math.prod(shape) for shape in maps)
    padded = sum(-(-shape[0] // CHANNEL_BLOCK) * CHANNEL_BLOCK * math.prod(shape[1:]) for shape in maps)
    return padded / plain if plain else 1.0


def train_memory(
    network, batch: int, optimizer: str = "adam", amp: bool = False, data_bytes: int = 0
) -> tuple[int, int]:
    """(bytes that do not grow with the batch, bytes per example) that training the checked
    `network` on the CPU holds at its peak, `data_bytes` the arrays of a data set read
    whole (0 for a folder, read a batch at a time)."""
    from ..cost.memory import training_memory

    memory = training_memory(network, batch, optimizer, amp)
    fixed = TRAIN_SESSION_BYTES + TRAIN_WEIGHT_COPIES * network.param_bytes + memory.cast_weights
    inputs = 4 * math.prod(network.input_shape)
    per_example = int(TRAIN_SAVED_COPIES * memory.saved_per_image) + TRAIN_INPUT_COPIES * inputs
    return fixed + memory.saved_fixed + TRAIN_DATA_COPIES * data_bytes, per_example


def graph_memory(model, held_weight_copies: int = 0) -> Footprint | None:
    """The Footprint of running an ONNX model (a ModelProto, read without its external
    data) whose caller holds `held_weight_copies` copies of its weights the while (a spec's
    run: its numpy arrays); None when its shapes cannot all be inferred (custom operators,
    dimensions other than the batch left open), where no estimate is better than a wrong one."""
    graph = _inferred(model)
    if graph is None:
        return None
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    sizes = _per_example_sizes(graph, weights)
    if sizes is None:
        return None
    weight_sizes = {
        name: max(math.prod(t.dims), 0) * (_itemsize(t.data_type) or 4) for name, t in weights.items()
    }
    conv_bytes = sum(
        weight_sizes[node.input[1]]
        for node in model.graph.node
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in weights
    )
    weight_bytes = sum(weight_sizes.values())
    resident = SESSION_BYTES + (1 + held_weight_copies) * weight_bytes + CONV_WEIGHT_COPIES * conv_bytes
    ends = sum(sizes[v.name][0] for v in (*graph.input, *graph.output) if v.name in sizes)
    produced = {name for node in graph.node for name in node.output}  # the input is not padded
    live = _live_peak(graph, sizes) * channel_padding(
        [shape for name, (_, shape) in sizes.items() if name in produced]
    )
    return Footprint(resident + weight_bytes, resident, int(live), ends)


def file_memory(path: str | Path, held_weight_copies: int = 0) -> Footprint | None:
    """graph_memory of the ONNX file at `path`; None when it cannot be read or estimated."""
    model = read_graph(path)
    return graph_memory(model, held_weight_copies) if model is not None else None


def read_graph(path: str | Path):
    """The model at `path` without its external data (the estimate needs shapes only);
    None when onnx cannot read it (onnxruntime then says why, loading it)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and onnx's own: the session reports the file
        return None


def _inferred(model):
    """The model's graph with every shape onnx can infer; its large initializers stand in
    as inputs of the same shape, so that inference copies no weights."""
    import onnx

    light = _without_weights(model)
    try:
        return onnx.shape_inference.infer_shapes(light, strict_mode=False).graph
    except Exception:  # onnx's own InferenceError, ValidationError, ... for a model it cannot type
        return None


def _without_weights(model):
    import onnx
    from onnx import helper

    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)  # a model's own functions: inference needs their bodies
    graph = light.graph
    graph.node.extend(model.graph.node)
    graph.value_info.extend(model.graph.value_info)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    names = {value.name for value in model.graph.input}
    for tensor in model.graph.initializer:
        if math.prod(tensor.dims) <= 64:  # shapes and scales inference reads as values
            graph.initializer.append(tensor)
        elif tensor.name not in names:
            graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return light


def _itemsize(elem_type: int) -> int | None:
    """Bytes per element of an ONNX tensor type; None for strings and types onnx does not know."""
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _per_example_sizes(graph, weights) -> dict[str, tuple[int, tuple[int, ...]]] | None:
    """Every activation's (bytes per example, shape without the batch); None when one is
    not known. The first dimension is the batch, whether named or fixed."""
    sizes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
            return None
        dims = tensor.shape.dim[1:]
        if not all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            return None
        shape = tuple(int(d.dim_value) for d in dims)
        itemsize = _itemsize(tensor.elem_type)
        if itemsize is None:
            return None
        sizes[value.name] = (math.prod(shape) * itemsize, shape)
    produced = {name for node in graph.node for name in node.output if name}
    return sizes if produced <= sizes.keys() else None


def _live_peak(graph, sizes) -> int:
    """The most per-example bytes alive at once, the nodes run in the file's order: each
    output lives from its node to its last reader (a graph output, to the end); a view
    or a fused activation lives in its input's memory."""
    storage = {value.name: value.name for value in graph.input if value.name in sizes}
    born = dict.fromkeys(storage, 0)
    last: dict[str, int] = {}
    shares = _sharing(graph)
    for step, node in enumerate(graph.node):
        for name in node.input:
            if name in storage:
                last[storage[name]] = step
        for name in node.output:
            if step in shares and node.input[0] in storage:
                storage[name] = storage[node.input[0]]
            elif name:
                storage[name] = name
                born[name] = step
    for value in graph.output:
        if value.name in storage:  # (not a weight, nor a name no node makes: a broken file)
            last[storage[value.name]] = len(graph.node)
    change = [0] * (len(graph.node) + 2)  # bytes born (+) and freed (-) at each step
    for name, start in born.items():
        change[start] += sizes[name][0]
        change[max(last.get(name, start), start) + 1] -= sizes[name][0]
    return max(itertools.accumulate(change))


def _sharing(graph) -> set[int]:
    """Positions of the nodes whose output lives in their first input's memory."""
    readers: dict[str, int] = {}
    makers: dict[str, str] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
        for name in node.output:
            makers[name] = node.op_type
    outputs = {value.name for value in graph.output}
    shares = set()
    for step, node in enumerate(graph.node):
        first = node.input[0] if node.input else ""
        fused = makers.get(first) == "Conv" and readers.get(first) == 1 and first not in outputs
        if first and (node.op_type in VIEW_OPS or (node.op_type in FUSED_ACTIVATIONS and fused)):
            shares.add(step)
    return shares
