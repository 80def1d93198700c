"""`cnnspec calibrate`: this machine measured with onnxruntime, kernel kind by kernel kind.

Each sample is a small network of one kernel kind (three convs of one shape, an expanding
and a projecting 1x1 conv, three depthwise convs, three dense layers, pools, elementwise
functions, channel shuffles and pads), on maps from 1x1 to 112x112, written as a spec,
exported, and timed at batch 1 and 8. A machine's speed drifts by tens of percent over
seconds (other tenants, clocks), so the samples are timed in rounds, each sample once
per round, and the median of its rounds kept; within a visit a sample first runs until
it reaches its steady speed (a small network's first few runs after a pause take twice
as long), as `cnnspec bench` measures. Per kind, a least-squares fit with non-negative
coefficients, weighted so that each sample's relative error counts alike: t = c +
a·FLOPs + b·bytes + s·streamed bytes, over the same figures the predictor computes
(cost/latency.py). Least squares on four roofline features rather than a learned model: a
few dozen samples fit four numbers well, and the numbers say something (a is the inverse
of the FLOP/s a kind reaches, b of its bytes/s in cache, s the extra cost of a byte from
beyond it). In trials, one linear model fitted jointly to a few hundred random whole
networks predicted the zoo networks (none of them a sample) worse than these fits do."""

from __future__ import annotations

import gc
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from ..cost.latency import FIT_TERMS, KERNELS, Profile, predict
from ..infer import CheckedNetwork, check_text
from .export import build_model
from .runtime import make_session

BATCHES = (1, 8)


def _net(body: str, shape: str) -> str:
    return f"network sample {{\n  input {shape}\n{body}\n}}\n"


CONVS = [(8, 16), (16, 8), (240, 1), (960, 1), (16, 56), (32, 56), (64, 28), (128, 28), (128, 14)]
CONVS += [(256, 14), (512, 7), (64, 56), (256, 7), (16, 112), (32, 112)]  # (channels, size): from
# the small kernels that cost mostly their start (a squeeze-excite gate on a 1x1 map) to the
# large ones whose maps stream through memory
EXPANDS = [(16, 112, 6), (24, 56, 6), (32, 28, 6), (64, 14, 6), (160, 7, 6), (64, 56, 4)]
DEPTHWISE = [(16, 16, 3), (32, 56, 3), (96, 56, 3), (144, 28, 3), (240, 28, 5), (480, 14, 3)]
DEPTHWISE += [(672, 14, 5), (960, 7, 5), (1152, 7, 5), (32, 112, 3), (96, 112, 3)]  # (channels, size, kernel)
MAPS = [(16, 8), (64, 56), (128, 28), (256, 14), (512, 7), (960, 1), (64, 112)]
ROUNDS = 3


def samples(quick: bool = False) -> list[tuple[str, str]]:
    """(kernel kind, spec text) to time; `quick`: one per kind (for tests)."""
    found: list[tuple[str, str]] = []
    for (c, h), k in itertools.product(CONVS, (1, 3)):
        found.append(("conv", _net(f"  conv {c} {k}x{k} pad=same\n" * 3, f"{c}x{h}x{h}")))
    for c, h, t in EXPANDS:  # an inverted bottleneck's 1x1 convs: to t times the channels and back
        found.append(("conv", _net(f"  conv {c * t} 1x1 relu\n  conv {c} 1x1\n" * 2, f"{c}x{h}x{h}")))
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


def steady_seconds(session, feeds: dict, runs: int = 3, timed: float = 0.01) -> float:
    """One visit to a session: runs until it reaches its steady speed, then the median of
    `runs` or more timed runs (at least `timed` seconds). After a pause, or after another
    session ran, a network's first runs are slow (its threads asleep, the cores shared with
    the other session's spinning ones): a small one took 6 runs to settle, at 2.5x the
    steady time on the first; a run of a quarter of a second settles in one."""
    spent, count = 0.0, 0
    while count < SETTLE_RUNS and spent < SETTLE_SECONDS:
        start = time.perf_counter()
        session.run(None, feeds)
        spent, count = spent + time.perf_counter() - start, count + 1
    times: list[float] = []
    while len(times) < runs or sum(times) < timed:
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SETTLE_RUNS, SETTLE_SECONDS = 8, 0.25


def _model(network: CheckedNetwork) -> bytes:
    model, _ = build_model(network, seed=0)
    return model.SerializeToString()


def _feeds(session, network: CheckedNetwork, batch: int) -> dict:
    x = np.random.default_rng(0).standard_normal((batch, *network.input_shape)).astype(np.float32)
    return {session.get_inputs()[0].name: x}


def visit(
    model: bytes, network: CheckedNetwork, threads: int | None = None, runs: int = 3
) -> dict[int, float]:
    """Steady seconds per batch size, in a session of its own that is closed afterwards:
    the worker threads of sessions left open slow the one being timed (a conv sample took
    3.3 ms alone, 7 ms with three other sessions open and 15 ms later on)."""
    session = make_session(model, "cpu", threads)
    try:
        return {batch: steady_seconds(session, _feeds(session, network, batch), runs) for batch in BATCHES}
    finally:
        del session
        gc.collect()


def _overhead(threads: int | None) -> float:
    network = check_text(_net("  relu", "1x1x1"), "<calibrate>", None).networks[0]
    session = make_session(_model(network), "cpu", threads)
    feeds = _feeds(session, network, 1)
    return statistics.median(steady_seconds(session, feeds, 20) for _ in range(5))


def _measure(networks: list[CheckedNetwork], threads: int | None, progress) -> list[dict[int, float]]:
    """Seconds per sample and batch: the median of ROUNDS visits, interleaved across the
    samples, so that a slow spell of the machine hits many samples once rather than one
    sample every time."""
    models = [_model(network) for network in networks]
    visits: list[list[dict[int, float]]] = [[] for _ in networks]
    for round_ in range(ROUNDS):
        for index, (model, network) in enumerate(zip(models, networks)):
            visits[index].append(visit(model, network, threads))
        if progress:
            progress(f"round {round_ + 1} of {ROUNDS}")
    return [{b: statistics.median(v[b] for v in sample) for b in BATCHES} for sample in visits]


def calibrate(
    name: str, threads: int | None = None, quick: bool = False, progress: Callable[[str], None] | None = None
) -> Profile:
    """The profile of this machine as onnxruntime runs it, fitted on the samples."""
    overhead = _overhead(threads)
    todo = samples(quick)
    networks = [check_text(text, "<calibrate>", None).networks[0] for _, text in todo]
    measured = _measure(networks, threads, progress)
    rows = _rows([kind for kind, _ in todo], networks, measured, overhead)
    # per batch size: a batch of 8 keeps both cores busier than one image does
    fits = {str(batch): {kind: _fit(rows[(kind, batch)]) for kind in KERNELS} for batch in BATCHES}
    peak = max(row[1] / row[-1] for rows_ in rows.values() for row in rows_ if row[1]) or 1.0
    bandwidth = max(row[2] / row[-1] for rows_ in rows.values() for row in rows_) or 1.0
    described = f"{platform.processor() or platform.machine()}, onnxruntime on the CPU, {threads or os.cpu_count()} threads"
    return Profile(name, described, True, peak, bandwidth, fits, overhead)


def _rows(
    kinds: list[str], networks: list[CheckedNetwork], measured: list[dict[int, float]], overhead: float
):
    """(kernels, FLOPs, bytes, streamed bytes, seconds) per sample, by kernel kind and batch."""
    rows: dict[tuple[str, int], list] = {(kind, batch): [] for kind in KERNELS for batch in BATCHES}
    flat = Profile("flat", "", False, 1.0, 1.0, {})  # only its FLOPs and bytes are read
    for kind, network, seconds in zip(kinds, networks, measured):
        for batch in BATCHES:
            groups = [layer for layer in predict(network, flat, batch).layers if layer.kernel is not None]
            features = [
                len(groups),
                *(sum(getattr(g, f) for g in groups) for f in ("flops", "nbytes", "streamed")),
            ]
            rows[(kind, batch)].append((*features, max(seconds[batch] - overhead, 1e-7)))
    return rows


def _fit(rows: list[tuple[float, ...]]) -> list[float]:
    """c, a, b, s >= 0 minimising the relative error of c·n + a·F + b·B + s·S against t."""
    a = np.array([row[:FIT_TERMS] for row in rows], dtype=np.float64)
    t = np.array([row[FIT_TERMS] for row in rows], dtype=np.float64)
    weights = 1.0 / np.sqrt(t)  # between absolute (large kernels rule) and relative (small ones do)
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)  # columns of comparable size
    best, best_error = np.zeros(FIT_TERMS), np.inf
    for keep in itertools.product((True, False), repeat=FIT_TERMS):  # non-negative least squares, by subsets
        columns = [i for i in range(FIT_TERMS) if keep[i]]
        if not columns:
            continue
        scaled = (a[:, columns] / scale[columns]) * weights[:, None]
        solution, *_ = np.linalg.lstsq(scaled, t * weights, rcond=None)
        if np.any(solution < 0):
            continue
        coefficients = np.zeros(FIT_TERMS)
        coefficients[columns] = solution / scale[columns]
        error = float(np.sum(((a @ coefficients - t) * weights) ** 2))
        if error < best_error:
            best, best_error = coefficients, error
    return [float(v) for v in best]
