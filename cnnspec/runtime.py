"""Run an ONNX model with onnxruntime on CPU or CUDA: inputs from images (Pillow), `.npy`
arrays or random data; outputs, top-K classes and timing."""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from .diagnostics import CnnspecError, Diagnostic
from .layers import format_shape
from .records import record

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


def make_session(model: bytes | str | Path, provider: Provider = "cpu", threads: int | None = None):
    """An onnxruntime session (`threads`: its intra-op threads; default: one per core);
    a corrupt or unsupported model is a CnnspecError."""
    import onnxruntime as ort

    providers = choose_providers(provider)
    ort.set_default_logger_severity(4)  # its log lines duplicate the errors raised to us
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
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
    """The per-example input shape (without the batch). Models cnnspec cannot feed — other
    than one float input with a batch dimension first, or an output without a batch
    dimension — are refused here, with the reason, before anything runs."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise _fail(
            "onnx-file", f"the model has {len(inputs)} inputs ({names}); cnnspec runs models with one"
        )
    first = inputs[0]
    if first.type != "tensor(float)":
        raise _fail(
            "onnx-file",
            f"the model's input '{first.name}' is {first.type}; cnnspec feeds float32 images or arrays",
        )
    shape = first.shape
    if len(shape) < 2:
        raise _fail(
            "onnx-file",
            f"the model's input '{first.name}' has shape {shape}: no batch dimension before the example's",
            "cnnspec feeds N x C x H x W (or N x features)",
        )
    dims = tuple(d for d in shape[1:])
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise _fail(
            "onnx-file", f"the model's input has a non-fixed shape {shape}; cnnspec needs fixed C, H, W"
        )
    for output in outputs:
        if len(output.shape or []) < 1:
            raise _fail(
                "onnx-file",
                f"the model's output '{output.name}' is a scalar; cnnspec expects one result per example "
                "(a batch dimension first)",
            )
    return dims


def fixed_batch(session) -> int | None:
    """The batch size a model was exported with, when it is not symbolic."""
    first = session.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


def load_image(path: Path, shape: tuple[int, ...], mean, std) -> np.ndarray:
    """An image as C x H x W float32 in [0, 1], resized and converted to the channel count.
    16-bit images are scaled by 65535 and float images kept as they are (never clipped to
    8 bits first); images above Pillow's decompression-bomb limit are refused."""
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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                array = _image_array(image, mode, width, height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _fail(
            "bad-input",
            f"{path}: the image is too large to decode safely (above {Image.MAX_IMAGE_PIXELS:,} pixels)",
            "resize it first",
        ) from None
    except UnidentifiedImageError:
        raise _fail(
            "bad-input",
            f"{path}: not a readable image (not a format Pillow knows: PNG, JPEG, BMP, GIF, TIFF, WebP, ...)",
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged: say what Pillow said
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
        raise _fail("bad-input", f"{path}: not a readable image ({reason[:200]})") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return _normalise(array, mean, std)


# Pillow modes with more than 8 bits per sample -> the value of full intensity.
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def _image_array(image, mode: str, width: int, height: int) -> np.ndarray:
    """H x W (x C) float32 in [0, 1]. `convert("L")` would clip a 16-bit image at 255."""
    from PIL import Image

    if image.mode not in _WIDE_MODES:
        converted = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(converted, np.float32) / 255.0
    plane = np.asarray(image, np.float32) / _WIDE_MODES[image.mode]
    resized = Image.fromarray(plane, "F").resize((width, height), Image.Resampling.BILINEAR)
    gray = np.asarray(resized, np.float32)
    if mode == "L":
        return gray
    planes = [gray] * 3 + ([np.ones_like(gray)] if mode == "RGBA" else [])
    return np.stack(planes, axis=-1)


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
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise _fail("bad-input", f"{path}: not a readable .npy array ({str(exc)[:200]})") from None
    if not isinstance(array, np.ndarray):  # an .npz under a .npy name
        raise _fail("bad-input", f"{path}: not a .npy array (an .npz archive?)")
    if array.dtype.kind not in "biuf":
        raise _fail("bad-input", f"{path}: holds {array.dtype}, not real numbers")
    if array.ndim == 0:
        raise _fail("bad-input", f"{path}: holds a single number, expected an array of {format_shape(shape)}")
    from .resources import shortfall

    problem = shortfall(array.size * 4)
    if problem:
        raise _fail("bad-input", f"{path}: {array.size:,} values {problem}")
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
        f"{path}: the array is {format_shape(array.shape)}, expected {fmt} or Nx{fmt}{channels}",
    )


def load_inputs(
    paths: list[str], shape: tuple[int, ...], batch: int, seed: int = 0, mean=None, std=None
) -> np.ndarray:
    """Stack every input into one batch; random data in [0, 1) when there are none."""
    if not paths:
        return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)
    stacked = _stack(paths, shape, mean, std)
    bad = int(np.count_nonzero(~np.isfinite(stacked)))
    if bad:
        warnings.warn(f"the input holds {bad:,} NaN or infinite values; the outputs will too", stacklevel=2)
    return stacked


def _stack(paths: list[str], shape: tuple[int, ...], mean, std) -> np.ndarray:
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
    import onnxruntime as ort

    fixed = fixed_batch(session)
    if fixed is not None and fixed != batch.shape[0]:
        raise _fail(
            "bad-input",
            f"the model takes batches of exactly {fixed}; got {batch.shape[0]}",
            f"give {fixed} input{'s' * (fixed != 1)}, or --batch {fixed}",
        )
    feeds = {session.get_inputs()[0].name: batch}
    names = [output.name for output in session.get_outputs()]
    options = ort.RunOptions()
    options.log_severity_level = 4
    times = []
    try:
        outputs = session.run(names, feeds, options)
        for _ in range(max(warmup - 1, 0)):
            session.run(names, feeds, options)
        for _ in range(max(repeat, 1)):
            start = time.perf_counter()
            outputs = session.run(names, feeds, options)
            times.append(time.perf_counter() - start)
    except MemoryError:
        raise
    except Exception as exc:  # onnxruntime's own exception types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "alloc" in text.lower():
            text = f"not enough memory for a batch of {batch.shape[0]:,} ({text[:200]})"
        raise _fail("bad-input", f"onnxruntime cannot run this input: {text[:300]}") from None
    median = statistics.median(times) * 1000.0
    return RunResult(outputs[0], session.get_providers(), median, len(times), tuple(zip(names, outputs)))


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
    from .files import UnreadableFile, read_source

    try:
        labels = [line.strip() for line in read_source(path).splitlines() if line.strip()]
    except UnreadableFile as exc:
        raise _fail("bad-input", f"{path}: cannot read labels ({exc})") from None
    if len(labels) != classes:
        raise _fail("bad-input", f"{path}: {len(labels)} labels for {classes} classes", "one label a line")
    return labels
