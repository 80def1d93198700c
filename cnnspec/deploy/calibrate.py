"""`cnnspec calibrate`: this machine measured with onnxruntime, kernel kind by kernel kind.

Each sample is a small network of one kernel kind (three convs of one shape, three
depthwise convs, three dense layers, pools, elementwise functions, channel shuffles and
pads), written as a spec, exported, and timed at batch 1 and 8 (the median of runs
interleaved with the empty network's, whose time is the per-inference overhead). Per
kind, a least-squares fit with non-negative coefficients, weighted so that each sample's
relative error counts alike: t = c + a·FLOPs + b·bytes, over the same FLOPs and bytes the
predictor computes (cost/latency.py). Least squares on three roofline features rather
than a learned model: a few dozen samples fit three numbers well, and the numbers say
something (a is the inverse of the FLOP/s a kind reaches, b of its bytes/s)."""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from ..cost.latency import KERNELS, Profile, predict
from ..infer import CheckedNetwork, check_text
from .export import build_model
from .runtime import make_session

BATCHES = (1, 8)


def _net(body: str, shape: str) -> str:
    return f"network sample {{\n  input {shape}\n{body}\n}}\n"


CONVS = [(8, 16), (16, 8), (240, 1), (960, 1), (16, 56), (32, 56), (64, 28), (128, 28), (128, 14)]
CONVS += [(256, 14), (512, 7), (64, 56), (256, 7)]  # (channels, size): from the small kernels that
# cost mostly their start (a squeeze-excite gate on a 1x1 map) to the large ones
DEPTHWISE = [(16, 16, 3), (32, 56, 3), (96, 56, 3), (144, 28, 3), (240, 28, 5), (480, 14, 3)]
DEPTHWISE += [(672, 14, 5), (960, 7, 5), (1152, 7, 5)]  # (channels, size, kernel)
MAPS = [(16, 8), (64, 56), (128, 28), (256, 14), (512, 7), (960, 1)]


def samples(quick: bool = False) -> list[tuple[str, str]]:
    """(kernel kind, spec text) to time; `quick`: one per kind (for tests)."""
    found: list[tuple[str, str]] = []
    for (c, h), k in itertools.product(CONVS, (1, 3)):
        found.append(("conv", _net(f"  conv {c} {k}x{k} pad=same\n" * 3, f"{c}x{h}x{h}")))
    for c, h, k in DEPTHWISE:
        found.append(("depthwise", _net(f"  conv {c} {k}x{k} pad=same groups={c}\n" * 3, f"{c}x{h}x{h}")))
    for n in (64, 256, 1024, 4096):
        found.append(("dense", _net(f"  dense {n}\n" * 3, str(n))))
    for c, h in MAPS:
        shape = f"{c}x{h}x{h}"
        if h > 1:
            found.append(("pool", _net("  pool max 3 stride=1 pad=1\n" * 3, shape)))
            found.append(("movement", _net("  shuffle 2\n  pad 1\n  slice 0:-1", shape)))
        found.append(("pool", _net("  pool avg 1\n  pool max 1\n  globalpool avg", shape)))
        found.append(("elementwise", _net("  sigmoid\n  gelu\n  hardswish", shape)))
        found.append(
            ("elementwise", _net("  batchnorm\n  add input batchnorm1\n  multiply input add1", shape))
        )
        found.append(("movement", _net("  concat {} {}\n  upsample 2", shape)))
    if quick:
        found = [next(s for s in found if s[0] == kind) for kind in KERNELS]
    return found


def _seconds(session, batch: np.ndarray, budget: float = 0.15, at_least: int = 5) -> list[float]:
    feeds = {session.get_inputs()[0].name: batch}
    session.run(None, feeds)  # warm up: first runs allocate
    times: list[float] = []
    spent = 0.0
    while len(times) < at_least or spent < budget:
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if len(times) >= 200:
            break
    return times


def _session(network: CheckedNetwork, threads: int | None):
    model, _ = build_model(network, seed=0)
    return make_session(model.SerializeToString(), "cpu", threads)


def _overhead(threads: int | None) -> float:
    network = check_text(_net("  relu", "1x1x1"), "<calibrate>", None).networks[0]
    session = _session(network, threads)
    return statistics.median(_seconds(session, np.zeros((1, 1, 1, 1), np.float32), 0.2, 20))


def calibrate(
    name: str, threads: int | None = None, quick: bool = False, progress: Callable[[str], None] | None = None
) -> Profile:
    """The profile of this machine as onnxruntime runs it, fitted on the samples."""
    overhead = _overhead(threads)
    rows: dict[tuple[str, int], list] = {(kind, batch): [] for kind in KERNELS for batch in BATCHES}
    todo = samples(quick)
    for index, (kind, text) in enumerate(todo):
        network = check_text(text, "<calibrate>", None).networks[0]
        for batch, row in _timed(network, threads, overhead):
            rows[(kind, batch)].append(row)
        if progress:
            progress(f"{index + 1}/{len(todo)} {kind}")
    # per batch size: a batch of 8 keeps both cores busier than one image does
    fits = {str(batch): {kind: _fit(rows[(kind, batch)]) for kind in KERNELS} for batch in BATCHES}
    peak = max(f / t for rows_ in rows.values() for _, f, _, t in rows_ if f) or 1.0
    bandwidth = max(b / t for rows_ in rows.values() for _, _, b, t in rows_) or 1.0
    described = f"{platform.processor() or platform.machine()}, onnxruntime on the CPU, {threads or os.cpu_count()} threads"
    return Profile(name, described, True, peak, bandwidth, fits, overhead)


def _timed(network: CheckedNetwork, threads: int | None, overhead: float):
    """(batch, (kernels, FLOPs, bytes, seconds)) of one sample at each batch size."""
    session = _session(network, threads)
    flat = Profile("flat", "", True, 1.0, 1.0, {str(b): {k: [0.0] * 3 for k in KERNELS} for b in BATCHES})
    for batch in BATCHES:
        x = np.random.default_rng(0).standard_normal((batch, *network.input_shape)).astype(np.float32)
        seconds = max(statistics.median(_seconds(session, x)) - overhead, 1e-7)
        groups = [layer for layer in predict(network, flat, batch).layers if layer.kernel is not None]
        yield batch, (len(groups), sum(g.flops for g in groups), sum(g.nbytes for g in groups), seconds)


def _fit(rows: list[tuple[float, float, float, float]]) -> list[float]:
    """c, a, b >= 0 minimising the relative error of c·n + a·F + b·B against t."""
    a = np.array([[n, f, b] for n, f, b, _ in rows], dtype=np.float64)
    t = np.array([row[3] for row in rows], dtype=np.float64)
    weights = 1.0 / np.sqrt(t)  # between absolute (large kernels rule) and relative (small ones do)
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)  # columns of comparable size
    best, best_error = np.zeros(3), np.inf
    for keep in itertools.product((True, False), repeat=3):  # non-negative least squares, by subsets
        columns = [i for i in range(3) if keep[i]]
        if not columns:
            continue
        scaled = (a[:, columns] / scale[columns]) * weights[:, None]
        solution, *_ = np.linalg.lstsq(scaled, t * weights, rcond=None)
        if np.any(solution < 0):
            continue
        coefficients = np.zeros(3)
        coefficients[columns] = solution / scale[columns]
        error = float(np.sum(((a @ coefficients - t) * weights) ** 2))
        if error < best_error:
            best, best_error = coefficients, error
    return [float(v) for v in best]
