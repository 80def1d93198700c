"""Run an ONNX model with onnxruntime on CPU or CUDA: inputs from images (Pillow), `.npy`
arrays or random data; outputs, top-K classes and timing."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Literal

import numpy as np

from ..base.diagnostics import fail
from ..base.records import record

Provider = Literal["cpu", "cuda", "auto"]


class ProviderUnavailable(Exception):
    """The requested execution provider is not installed (a usage problem: exit 2)."""


def choose_providers(provider: Provider) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if provider == "cuda" and not has_cuda:
        raise ProviderUnavailable(
            "the CUDA execution provider is not available (available: " + ", ".join(available) + "); "
            "install the GPU build with `pip install cnnspec[gpu]` on a machine with an NVIDIA GPU"
        )
    if provider == "cuda" or (provider == "auto" and has_cuda):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(
    model: bytes | str | Path,
    provider: Provider = "cpu",
    threads: int | None = None,
    memory_pattern: bool = True,
    arena: bool = True,
):
    """An onnxruntime session (`threads`: its intra-op threads; default: one per core;
    `memory_pattern`: plan one block for a run's activations, faster for small runs and
    more memory for large ones, see footprint.Footprint; `arena`: onnxruntime's own
    allocator, faster, off for a measured run, footprint.Measured); a corrupt or unsupported model
    is a CnnspecError."""
    import onnxruntime as ort

    providers = choose_providers(provider)
    ort.set_default_logger_severity(4)  # its log lines duplicate the errors raised to us
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.enable_mem_pattern = memory_pattern
    options.enable_cpu_mem_arena = arena
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad models
        where = "the model" if isinstance(model, bytes) else str(model)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail("onnx-file", f"{where}: onnxruntime cannot load it: {first_line[:300]}") from None
    if provider == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise ProviderUnavailable("onnxruntime could not start the CUDA provider (driver or CUDA libraries?)")
    return session


def input_shape(session) -> tuple[int, ...]:
    """The per-example input shape (without the batch). Models cnnspec cannot feed — other
    than one float input with a batch dimension first, or an output without a batch
    dimension — are refused here, with the reason, before anything runs."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise fail("onnx-file", f"the model has {len(inputs)} inputs ({names}); cnnspec runs models with one")
    first = inputs[0]
    if first.type != "tensor(float)":
        raise fail(
            "onnx-file",
            f"the model's input '{first.name}' is {first.type}; cnnspec feeds float32 images or arrays",
        )
    shape = first.shape
    if len(shape) < 2:
        raise fail(
            "onnx-file",
            f"the model's input '{first.name}' has shape {shape}: no batch dimension before the example's",
            "cnnspec feeds N x C x H x W (or N x features)",
        )
    if isinstance(shape[0], int) and shape[0] < 1:
        raise fail(
            "onnx-file",
            f"the model's input '{first.name}' has a batch dimension of {shape[0]}: it can run no example",
        )
    dims = tuple(d for d in shape[1:])
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise fail(
            "onnx-file", f"the model's input has a non-fixed shape {shape}; cnnspec needs fixed C, H, W"
        )
    for output in outputs:
        if len(output.shape or []) < 1:
            raise fail(
                "onnx-file",
                f"the model's output '{output.name}' is a scalar; cnnspec expects one result per example "
                "(a batch dimension first)",
            )
    return dims


def fixed_batch(session) -> int | None:
    """The batch size a model was exported with, when it is not symbolic."""
    first = session.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


@record
class RunResult:
    output: np.ndarray  # the first output
    providers: list[str]
    latency_ms: float  # median over the timed runs, whole batch
    runs: int
    outputs: tuple[tuple[str, np.ndarray], ...] = ()  # every output, by name

    @property
    def images_per_second(self) -> float:
        return self.output.shape[0] / (self.latency_ms / 1000.0)


def run(session, batch: np.ndarray, repeat: int = 10, warmup: int = 2) -> RunResult:
    """Run `batch` through the model, `warmup` times untimed and `repeat` times timed.
    onnxruntime's failures (an allocation it cannot make, a batch size the model fixes)
    become one bad-input error."""
    fixed = fixed_batch(session)
    if fixed is not None and fixed != batch.shape[0]:
        raise fail(
            "bad-input",
            f"the model takes batches of exactly {fixed}; got {batch.shape[0]}",
            f"give {fixed} input{'s' * (fixed != 1)}, or --batch {fixed}",
        )
    feeds = {session.get_inputs()[0].name: batch}
    names = [output.name for output in session.get_outputs()]
    options = _quiet()
    times = []
    with _runtime_errors(batch):
        session.run(names, feeds, options)  # warm-up outputs are dropped at once: one set alive at a time
        for _ in range(max(warmup - 1, 0)):
            session.run(names, feeds, options)
        outputs: list = []
        for _ in range(max(repeat, 1)):
            outputs.clear()  # (the memory a measured run was measured with: footprint.Measured)
            start = time.perf_counter()
            outputs = session.run(names, feeds, options)
            times.append(time.perf_counter() - start)
    median = statistics.median(times) * 1000.0
    return RunResult(outputs[0], session.get_providers(), median, len(times), tuple(zip(names, outputs)))


def measure(session, example: tuple[int, ...], dtype, probes: tuple[int, int]):
    """footprint.Measured: the peak memory of running the session on batches of each of
    `probes` sizes (zeros of one `example`'s shape), above what the process held before
    each (footprint.measured_line). Meaningful for a session without onnxruntime's arena,
    which the caller builds."""
    from .footprint import measured_line

    name = session.get_inputs()[0].name

    def step(size: int) -> None:
        session.run(None, {name: np.zeros((size, *example), dtype)}, _quiet())  # outputs dropped

    with _runtime_errors(np.zeros((probes[1], *example), dtype)):
        return measured_line(step, probes)[0]


def run_examples(session, examples: np.ndarray) -> list[np.ndarray]:
    """Every output of the model for `examples`, onnxruntime's failures as in run(). A
    model that fixes its batch size takes them that many at a time, the last batch padded
    with zeros whose outputs are dropped."""
    size = fixed_batch(session) or len(examples)
    parts = []
    for start in range(0, len(examples), max(size, 1)):
        batch = examples[start : start + size]
        count = len(batch)
        if count < size:
            batch = np.concatenate([batch, np.zeros((size - count, *batch.shape[1:]), batch.dtype)])
        with _runtime_errors(batch):
            outputs = session.run(None, {session.get_inputs()[0].name: batch}, _quiet())
        parts.append([output[:count] for output in outputs])
    return [np.concatenate(outputs) for outputs in zip(*parts)]


def _quiet():
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4  # its log lines duplicate the errors raised to us
    return options


@contextlib.contextmanager
def _runtime_errors(batch: np.ndarray):
    """onnxruntime's failures (an allocation it cannot make, a shape the model does not
    take) as one bad-input error."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as exc:  # onnxruntime's own exception types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "alloc" in text.lower():
            text = f"not enough memory for a batch of {batch.shape[0]:,} ({text[:200]})"
        raise fail("bad-input", f"onnxruntime cannot run this input: {text[:300]}") from None


def top_k(scores: np.ndarray, k: int, labels: list[str] | None = None) -> list[list[tuple[str, float]]]:
    """Per example, the k best classes with probabilities (softmax applied when the scores
    are not already probabilities)."""
    probs = scores
    if not (np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)):
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    result = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:k]
        result.append([(labels[i] if labels and i < len(labels) else str(i), float(row[i])) for i in best])
    return result


def read_labels(path: str, classes: int) -> list[str]:
    from ..base.files import UnreadableFile, read_source

    try:
        labels = [line.strip() for line in read_source(path).splitlines() if line.strip()]
    except UnreadableFile as exc:
        raise fail("bad-input", f"{path}: cannot read labels ({exc})") from None
    if len(labels) != classes:
        raise fail("bad-input", f"{path}: {len(labels)} labels for {classes} classes", "one label a line")
    return labels


def kernel_times(
    model: bytes | str | Path,
    batch: np.ndarray,
    provider: Provider = "cpu",
    threads: int | None = None,
    runs: int = 10,
) -> list[tuple[str, str, float]]:
    """(node, op, mean seconds) of every kernel onnxruntime runs, by its own profiler, in
    the order it ran them. Nodes it fused carry the name of one of the nodes fused (cnnspec
    names nodes after layers); layout changes it adds are `Reorder...`."""
    import json
    import tempfile

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.enable_profiling = True
    if threads:
        options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="cnnspec-profile-") as folder:
        options.profile_file_prefix = str(Path(folder) / "profile")
        source = model if isinstance(model, bytes) else str(model)
        session = ort.InferenceSession(source, options, providers=choose_providers(provider))
        feeds = {session.get_inputs()[0].name: batch}
        session.run(None, feeds)  # the first run allocates: not timed
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, list] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")]
            entry = totals.setdefault(node, [event.get("args", {}).get("op_name", "?"), 0.0])
            entry[1] += event.get("dur", 0) * 1e-6
    return [(node, op, seconds / (runs + 1)) for node, (op, seconds) in totals.items()]
