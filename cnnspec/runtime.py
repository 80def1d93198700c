"""Run an ONNX model with onnxruntime on CPU or CUDA: inputs from images (Pillow), `.npy`
arrays or random data; outputs, top-K classes and timing."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .diagnostics import CnnspecError, Diagnostic
from .layers import format_shape

Provider = Literal["cpu", "cuda", "auto"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ProviderUnavailable(Exception):
    """The requested execution provider is not installed (a usage problem: exit 2)."""


def _fail(code: str, message: str, help: str | None = None) -> CnnspecError:
    return CnnspecError([Diagnostic("error", code, message, None, help)])


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


def make_session(model: bytes | str | Path, provider: Provider = "cpu"):
    """An onnxruntime session; a corrupt or unsupported model is a CnnspecError."""
    import onnxruntime as ort

    providers = choose_providers(provider)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime's warnings are not the user's concern
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad models
        where = "the model" if isinstance(model, bytes) else str(model)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail("onnx-file", f"{where}: onnxruntime cannot load it: {first_line[:300]}") from None
    if provider == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise ProviderUnavailable("onnxruntime could not start the CUDA provider (driver or CUDA libraries?)")
    return session


def input_shape(session) -> tuple[int, ...]:
    """The per-example input shape (without the batch)."""
    shape = session.get_inputs()[0].shape
    dims = tuple(d for d in shape[1:])
    if not all(isinstance(d, int) for d in dims):
        raise _fail(
            "onnx-file", f"the model's input has a non-fixed shape {shape}; cnnspec needs fixed C, H, W"
        )
    return dims


def load_image(path: Path, shape: tuple[int, ...], mean, std) -> np.ndarray:
    """An image as C x H x W float32 in [0, 1], resized and converted to the channel count."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3:
        raise _fail(
            "bad-input",
            f"{path}: the network takes a flat vector of {shape[0]}, not an image",
            "give a .npy array instead",
        )
    channels, height, width = shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise _fail(
            "bad-input",
            f"{path}: the network takes {channels} channels; images give 1, 3 or 4",
            "give a .npy array instead",
        )
    try:
        with Image.open(path) as image:
            image = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise _fail("bad-input", f"{path}: not a readable image ({exc.__class__.__name__})") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return _normalise(array, mean, std)


def _normalise(array: np.ndarray, mean, std) -> np.ndarray:
    channels = array.shape[-3] if array.ndim >= 3 else array.shape[-1]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise _fail(
                "bad-input",
                f"{name} has {len(values)} values; the input has {channels} channels",
                "give one value, or one per channel",
            )
    if mean is not None:
        array = array - np.asarray(mean, np.float32).reshape(-1, *([1] * (array.ndim - 1)))
    if std is not None:
        array = array / np.asarray(std, np.float32).reshape(-1, *([1] * (array.ndim - 1)))
    return array.astype(np.float32)


def load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A `.npy` of one example (shape) or a batch (N, *shape)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail("bad-input", f"{path}: not a readable .npy array ({exc})") from None
    if not np.issubdtype(array.dtype, np.number):
        raise _fail("bad-input", f"{path}: holds {array.dtype}, not numbers")
    if tuple(array.shape) == shape:
        return array[None].astype(np.float32)
    if array.ndim == len(shape) + 1 and tuple(array.shape[1:]) == shape:
        return array.astype(np.float32)
    fmt = format_shape(shape)
    channels = ""
    if len(shape) == 3 and array.ndim in (3, 4) and array.shape[-3] != shape[0]:
        channels = f" (it has {array.shape[-3]} channels, the network takes {shape[0]})"
    raise _fail(
        "bad-input",
        f"{path}: array is {format_shape(array.shape)}, expected {fmt} or Nx{fmt}{channels}",
    )


def load_inputs(
    paths: list[str], shape: tuple[int, ...], batch: int, seed: int = 0, mean=None, std=None
) -> np.ndarray:
    """Stack every input into one batch; random data in [0, 1) when there are none."""
    if not paths:
        return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)
    arrays = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise _fail("bad-input", f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            arrays.append(_normalise(load_array(path, shape), mean, std))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            arrays.append(load_image(path, shape, mean, std)[None])
        else:
            raise _fail(
                "bad-input",
                f"{path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .npy array",
            )
    return np.concatenate(arrays)


@dataclass(frozen=True)
class RunResult:
    output: np.ndarray
    providers: list[str]
    latency_ms: float  # median over the timed runs, whole batch
    runs: int

    @property
    def images_per_second(self) -> float:
        return self.output.shape[0] / (self.latency_ms / 1000.0)


def run(session, batch: np.ndarray, repeat: int = 10, warmup: int = 2) -> RunResult:
    feeds = {session.get_inputs()[0].name: batch}
    output_name = session.get_outputs()[0].name
    output = None
    for _ in range(warmup):
        output = session.run([output_name], feeds)[0]
    times = []
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        output = session.run([output_name], feeds)[0]
        times.append(time.perf_counter() - start)
    return RunResult(output, session.get_providers(), statistics.median(times) * 1000.0, len(times))


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
    try:
        labels = [
            line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail("bad-input", f"{path}: cannot read labels ({exc.__class__.__name__})") from None
    if len(labels) != classes:
        raise _fail("bad-input", f"{path}: {len(labels)} labels for {classes} classes", "one label a line")
    return labels
