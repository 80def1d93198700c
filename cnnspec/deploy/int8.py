"""fp32 ONNX model -> int8, and the measurements that say whether to deploy it.

int8 is not always faster: on a CPU with VNNI, large convolutions run several times faster,
but a small network pays more for the quantize/dequantize steps than it saves. So
quantisation here always comes with two checks on this machine: how closely the int8 model
agrees with fp32 on examples that were not used for calibration, and how fast each one
runs (`benchmark`). onnxruntime's own tools do the quantisation: static, QDQ, per channel.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.diagnostics import CnnspecError, Diagnostic, fail
from ..base.files import npz_fits
from ..inputs import IMAGE_SUFFIXES, load_array, load_image, normalise
from ..kinds import format_shape

MAX_CALIBRATION = 300  # examples onnxruntime calibrates on; more adds time, not accuracy
MAX_HELD_OUT = 200  # examples the agreement is measured on
MIN_EXAMPLES = 2  # one to calibrate on, one to check
AGREEMENT_WARNING = 0.99


# ------------------------------------------------------------------ data


def load_examples(
    path: str | Path, shape: tuple[int, ...], mean=None, std=None, limit: int = 1000
) -> np.ndarray:
    """Examples for calibration: an `.npz` (its `x`, or its one array), an `.npy`, or a
    folder of images (class subfolders allowed), at most `limit`, in a fixed order."""

    path = Path(path)
    if path.is_dir():
        return _folder_examples(path, shape, mean, std, limit)
    if not path.is_file():
        raise fail("bad-input", f"{path}: no such file or folder")
    if path.suffix.lower() == ".npy":
        return normalise(load_array(path, shape)[:limit], mean, std, shape)
    try:
        problem = npz_fits(path, copies=2)  # as read, and as float32: before inflating
        if problem:
            raise fail("bad-input", f"{path}: {problem}")
        with np.load(path, allow_pickle=False) as archive:
            files = list(getattr(archive, "files", []))
            key = "x" if "x" in files else (files[0] if len(files) == 1 else None)
            if key is None:
                raise fail("bad-input", f"{path}: needs an array 'x' (it has: {', '.join(files) or 'none'})")
            x = archive[key][:limit]
    except CnnspecError:
        raise
    except Exception as exc:  # zip and format errors all mean an unreadable file
        raise fail("bad-input", f"{path}: not a readable .npz or .npy ({type(exc).__name__})") from None
    if tuple(x.shape[1:]) != tuple(shape) or x.dtype.kind not in "biuf":
        raise fail(
            "bad-input",
            f"{path}: x is {format_shape(x.shape)} {x.dtype}, the network takes Nx{format_shape(shape)}",
        )
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise fail("bad-input", f"{path}: x holds NaN or infinite values")
    return normalise(x, mean, std, shape)


def _folder_examples(path: Path, shape: tuple[int, ...], mean, std, limit: int) -> np.ndarray:
    """At most `limit` images of a folder (class subfolders allowed), spread evenly."""
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise fail(
            "bad-input",
            f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder or below",
        )
    if len(images) > limit:  # an even spread over the folder, not its first class only
        images = [images[i] for i in np.linspace(0, len(images) - 1, limit).astype(int)]
    return np.stack([load_image(p, shape, mean, std) for p in images])


def agreement_problem(agreement) -> str | None:
    """The one rule `export --int8` and `bench` apply: below AGREEMENT_WARNING top-1
    agreement with fp32 on held-out examples, int8 is not recommended, whatever its speed."""
    if agreement is None or agreement.top1 >= AGREEMENT_WARNING:
        return None
    return (
        f"int8 agrees with fp32 on only {agreement.top1:.1%} of held-out examples (below "
        f"{AGREEMENT_WARNING:.0%}); check accuracy before deploying it, or calibrate on more representative data"
    )


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held out): every fifth example is held out, at least one each."""
    if len(x) < MIN_EXAMPLES:
        raise fail(
            "bad-input",
            f"int8 calibration needs at least {MIN_EXAMPLES} examples, got {len(x)}",
            "a few hundred representative images give good ranges",
        )
    held = np.arange(len(x)) % 5 == 4
    if not held.any():
        held[-1] = True
    return x[~held][:MAX_CALIBRATION], x[held][:MAX_HELD_OUT]


# ------------------------------------------------------------------ quantisation


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: `size` examples at a time (the batch a
    model fixes; 1 for an open one), the last batch filled with the first examples again."""

    def __init__(self, name: str, x: np.ndarray, size: int = 1):
        if len(x) % size:  # (a copy only then: calibration sets run to hundreds of MB)
            x = x[np.arange(-(-len(x) // size) * size) % len(x)]
        self.name, self.x, self.size, self.i = name, x, size, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += self.size
        return {self.name: self.x[self.i - self.size : self.i]}

    def rewind(self) -> None:
        self.i = 0


def has_vnni() -> bool:
    """Whether this x86 CPU has int8 dot-product instructions (AVX-VNNI or AVX512-VNNI)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def quantize(fp32: Path, out: Path, calibration: np.ndarray, batch: int = 1) -> None:
    """Static QDQ quantisation, per channel, int8 weights, calibrated on `calibration`.
    Activations are int8 where the CPU has VNNI (onnxruntime's recommended S8S8), uint8
    without it: AVX2's VPMADDUBSW multiplies uint8 by int8 directly (U8S8 measured 1.28x
    against S8S8's 1.10x over fp32 on the CIFAR net on an AVX2-only CPU). `batch`: the
    examples fed at a time, the batch size a model fixes (1 for an open one)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    reader = _Reader(name, calibration, batch)
    CalibrationDataReader.register(_Reader)
    prepared = out.with_name(out.stem + ".prepared.onnx")
    logging.disable(logging.WARNING)  # its advice goes to the root logger, on every call
    try:
        _quantize_static(fp32, prepared, out, reader)
    except CnnspecError:
        raise
    except Exception as exc:  # onnxruntime's tools raise many kinds for graphs they cannot take
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CnnspecError(
            [
                Diagnostic(
                    "error", "onnx-file", f"onnxruntime could not quantise this model: {first}", None, None
                )
            ]
        ) from None
    finally:
        logging.disable(logging.NOTSET)
        prepared.unlink(missing_ok=True)


def _quantize_static(fp32: Path, prepared: Path, out: Path, reader) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    # shape inference and onnxruntime's fusions first (a batch norm folds into its conv), as
    # onnxruntime recommends: fewer tensors to quantise, better ranges
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8 if has_vnni() else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


@dataclass
class Agreement:
    examples: int
    top1: float  # share of examples (or positions, for maps) whose best class is the same
    max_difference: float  # largest absolute output difference
    fp32_range: float  # largest absolute fp32 output, to read the difference against


def agreement(fp32_session, int8_session, x: np.ndarray) -> Agreement:
    from .runtime import run_examples

    a, b = run_examples(fp32_session, x)[0], run_examples(int8_session, x)[0]
    if a.ndim >= 2 and a.shape[1] > 1:  # classes along axis 1 (per pixel for maps)
        top1 = float(np.mean(a.argmax(1) == b.argmax(1)))
    else:  # one score per example: agreement of its sign
        top1 = float(np.mean((a > 0) == (b > 0)))
    return Agreement(len(x), top1, float(np.max(np.abs(a - b))), float(np.max(np.abs(a))))


# ------------------------------------------------------------------ timing


@dataclass
class Timing:
    batch: int
    p50_ms: float
    p90_ms: float
    runs: int

    @property
    def images_per_second(self) -> float:
        return self.batch / (self.p50_ms / 1000.0)


@dataclass
class Comparison:
    """fp32 and int8 side by side, per batch size."""

    fp32: list[Timing]
    int8: list[Timing] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [f.p50_ms / i.p50_ms for f, i in zip(self.fp32, self.int8)]

    def verdict(self) -> str:
        """'int8' when it is faster at every batch size measured, 'fp32' when slower at
        every one, else 'mixed'."""
        ratios = self.ratios()
        if not ratios:
            return "fp32"
        if all(r > 1.05 for r in ratios):
            return "int8"
        if all(r < 1.0 for r in ratios):
            return "fp32"
        return "mixed"


def time_session(
    session, shape: tuple[int, ...], batch: int, seconds: float = 1.0, min_runs: int = 5, max_runs: int = 200
) -> Timing:
    """Latency of one batch: warm-up, then runs until `seconds` have passed (at least
    `min_runs`); p50 and p90 of those."""
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    feeds = {session.get_inputs()[0].name: x}
    session.run(None, feeds)  # warm-up: first-run allocations and kernel choices
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < seconds and len(times) < max_runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000.0)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return Timing(batch, statistics.median(times), p90, len(times))


def compare(fp32_session, int8_session, shape: tuple[int, ...], batches, seconds: float = 1.0) -> Comparison:
    result = Comparison([time_session(fp32_session, shape, b, seconds) for b in batches])
    if int8_session is not None:
        result.int8 = [time_session(int8_session, shape, b, seconds) for b in batches]
    return result


# ------------------------------------------------------------------ the export


@dataclass
class Int8Export:
    agreement: Agreement
    kept: str  # int8 | fp32 (`--int8 auto` where int8 does not pay)
    comparison: Comparison | None = None  # measured for `auto`


def export_int8(
    fp32_model: bytes,
    out: Path,
    examples: np.ndarray,
    auto: bool = False,
    threads: int | None = None,
    protect: tuple[Path, ...] = (),
) -> Int8Export:
    """Quantise, check agreement on held-out examples, and write the int8 model to `out`
    (with `auto`, the fp32 model where int8 is not faster here). Atomic."""
    import tempfile

    from ..base.files import target, write_atomically
    from .runtime import make_session

    final = target(out, protect)
    calibration, held_out = split(examples)
    with tempfile.TemporaryDirectory(prefix="cnnspec-int8-") as scratch:
        fp32, int8 = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        fp32.write_bytes(fp32_model)
        quantize(fp32, int8, calibration)
        fp32_session, int8_session = make_session(fp32, threads=threads), make_session(int8, threads=threads)
        report = Int8Export(agreement(fp32_session, int8_session, held_out), "int8")
        if auto:
            shape = tuple(examples.shape[1:])
            report.comparison = compare(fp32_session, int8_session, shape, (1, 8), seconds=0.5)
            if report.comparison.verdict() != "int8":
                report.kept = "fp32"
        chosen = int8 if report.kept == "int8" else fp32
        write_atomically(final, lambda temp: temp.write_bytes(chosen.read_bytes()))
    return report


def optimize(model: bytes, out: Path, protect: tuple[Path, ...] = ()) -> None:
    """onnxruntime's offline-optimised graph (constant folding, conv + batch norm and
    conv + activation fusions: the `extended` level, portable across CPUs), written atomically."""
    import tempfile

    import onnxruntime as ort

    from ..base.files import target, write_atomically

    final = target(out, protect)
    with tempfile.TemporaryDirectory(prefix="cnnspec-opt-") as scratch:
        optimized = Path(scratch) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 4
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        write_atomically(final, lambda temp: temp.write_bytes(optimized.read_bytes()))
