"""`cnnspec bench`: throughput of a model at several batch sizes, and int8 against fp32."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    check_graph_memory,
    check_input_memory,
    check_weights_option,
    load_weights,
    model_source,
    print_error,
    rate_text,
    readable_file,
    readable_path,
    refuse_run,
    safe_text,
    say,
)
from .options import export_options, finite_number, thread_count

DEFAULT_BATCHES = (1, 8, 32)


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of batch sizes such as 1,8,32") from None
    if not values or min(values) < 1 or max(values) > 65536:
        raise argparse.ArgumentTypeError(f"'{text}': batch sizes run from 1 to 65,536")
    return values


@dataclass
class _Measured:
    described: str
    shape: tuple[int, ...]
    provider: str
    comparison: Any  # int8.Comparison
    agreement: Any  # int8.Agreement, with --int8-calibrate
    quantized: bool  # an int8 model was measured too
    source: bytes | Path = b""  # the fp32 model timed (its file, or as exported for this run)
    network: Any = None  # the checked network of a spec; None for an ONNX file


def cmd_bench(args) -> int:
    """Latency and throughput, fp32 and (given calibration data) int8, side by side."""
    import tempfile  # here, not at the top: `cnnspec check` never needs it

    from ..base.diagnostics import CnnspecError
    from ..deploy.runtime import ProviderUnavailable

    _check_options(args)
    scratch_dir = tempfile.TemporaryDirectory(prefix="cnnspec-bench-")
    try:
        measured = _measure(args, Path(scratch_dir.name))
        if measured is None:
            return EXIT_ERRORS
        threads = args.threads or os.cpu_count()
        if args.format == "json":
            _print_json(measured, threads)
        else:
            _print_table(measured, threads)
        if args.per_layer:
            _per_layer(args, measured)
    except ProviderUnavailable as exc:
        raise UsageError(str(exc)) from None
    except CnnspecError as exc:
        print_error(exc)
        return EXIT_ERRORS
    finally:
        scratch_dir.cleanup()
    return EXIT_OK


def _per_layer(args, measured: _Measured) -> None:
    """Each kernel's measured time beside the prediction for the layers it runs."""
    import numpy as np

    from ..cost.latency import UnknownDevice, load_profile, predict
    from ..deploy.runtime import kernel_times

    batch, network = args.batch[0], measured.network
    x = np.random.default_rng(0).standard_normal((batch, *measured.shape)).astype(np.float32)
    times = kernel_times(measured.source, x, args.provider, args.threads)
    predicted: dict[str, float] = {}
    device = args.latency or "this-cpu"
    if network is not None:
        try:
            predicted = predict(network, load_profile(device), batch).groups()
        except UnknownDevice:
            if args.latency:
                raise UsageError(f"--latency {safe_text(args.latency)}: no such device profile") from None
    print(
        f"\nper kernel at batch {batch} (onnxruntime's profiler, mean of 11 runs)"
        + (f"; predicted on {device}" if predicted else "; `cnnspec calibrate` adds predictions")
    )
    print(f"{'kernel':<24} {'op':<20} {'measured':>10} {'predicted':>10} {'error':>7}")
    for node, op, seconds in times:
        layer = node.removesuffix("_nchwc").split(".")[0]
        guess = predicted.get(layer)
        cells = f"{guess * 1e3:>7.3f} ms {guess / seconds - 1:>+6.0%}" if guess else ""
        print(f"{safe_text(node)[:24]:<24} {op[:20]:<20} {seconds * 1e3:>7.3f} ms {cells}")
    total = sum(seconds for _, _, seconds in times)
    print(f"{'total':<24} {'':<20} {total * 1e3:>7.3f} ms")


def _check_options(args) -> None:
    args.batch_given = args.batch is not None
    args.batch = args.batch or DEFAULT_BATCHES
    readable_file(args.model, "file")
    if args.int8_calibrate:
        readable_path(args.int8_calibrate, "calibration data")
    if args.per_layer and args.format == "json":
        raise UsageError("--per-layer prints a table; leave out --format json")
    if args.latency and Path(args.model).suffix != ".cnn":
        raise UsageError("--latency predicts from a .cnn spec; an ONNX model is only measured")
    if (args.mean or args.std) and not args.int8_calibrate:
        raise UsageError("--mean and --std apply to the --int8-calibrate examples")
    if Path(args.model).suffix != ".cnn":
        for option, value in (("--weights", args.weights), ("--network", args.network)):
            if value:
                raise UsageError(f"{option} applies to a .cnn spec; an ONNX model carries its own weights")


def _measure(args, scratch: Path) -> _Measured | None:
    """The fp32 model (a spec exported for this run, or an ONNX file) timed, and its int8
    quantisation beside it when calibration data is given."""
    from ..deploy.int8 import compare
    from ..deploy.runtime import input_shape, make_session

    path = Path(args.model)
    largest = max(args.batch)  # one session times every batch: onnxruntime's memory pattern stays on
    if path.suffix == ".cnn":
        check_weights_option(args)
        loaded = load_weights(args, args.model)
        if loaded is None:
            return None
        network, weights, spec_text, _ = loaded
        fp32, footprint = model_source(network, weights, args, spec_text, scratch)
        refuse_run(
            f"a batch of {largest:,} through '{network.name}'", footprint, largest, memory_pattern=True
        )
        described = f"{network.name} ({args.model}, seed {args.seed})"
    else:
        network, fp32, described = None, path, str(path)
        footprint = check_graph_memory(path, largest, memory_pattern=True)
    fp32_session = make_session(fp32, args.provider, args.threads)
    shape = input_shape(fp32_session)
    if _fixed_batch(args, fp32_session, path):  # the sizes are the model's now: checked again
        largest = max(args.batch)
        refuse_run(f"a batch of {largest:,} through {path}", footprint, largest, memory_pattern=True)
    if footprint is None:
        check_input_memory(shape, largest)
    int8_session, agreement = (
        _quantized(args, fp32, fp32_session, shape, scratch) if args.int8_calibrate else (None, None)
    )
    comparison = compare(fp32_session, int8_session, shape, args.batch, args.seconds)
    provider = fp32_session.get_providers()[0]
    quantized = int8_session is not None
    return _Measured(described, shape, provider, comparison, agreement, quantized, fp32, network)


def _fixed_batch(args, session, path: Path) -> bool:
    """A model exported for one batch size runs that size only: the default sizes give way
    to it (said; True), sizes asked for are refused."""
    from ..deploy.runtime import fixed_batch

    fixed = fixed_batch(session)
    if fixed is None or set(args.batch) == {fixed}:
        return False
    if args.batch_given:
        raise UsageError(f"{path}: the model takes batches of exactly {fixed:,}; use --batch {fixed}")
    say("note", f"{path} takes batches of exactly {fixed:,}: timing that size only")
    args.batch = (fixed,)
    return True


def _quantized(args, fp32: bytes | Path, fp32_session, shape, scratch: Path):
    """An int8 session calibrated on part of the examples, and its agreement on the rest."""
    from ..deploy.int8 import agreement, load_examples, quantize, split
    from ..deploy.runtime import fixed_batch, make_session

    source = scratch / "fp32.onnx"
    if isinstance(fp32, bytes):
        source.write_bytes(fp32)
    else:
        source = fp32
    calibration, held_out = split(load_examples(args.int8_calibrate, shape, args.mean, args.std))
    quantize(source, scratch / "int8.onnx", calibration, fixed_batch(fp32_session) or 1)
    int8_session = make_session(scratch / "int8.onnx", args.provider, args.threads)
    return int8_session, agreement(fp32_session, int8_session, held_out)


def _print_json(measured: _Measured, threads: int | None) -> None:
    import json

    comparison = measured.comparison
    verdict = _deploy(measured)
    document = {
        "model": measured.described,
        "provider": measured.provider,
        "threads": threads,
        "input": list(measured.shape),
        "fp32": [vars(t) | {"images_per_second": t.images_per_second} for t in comparison.fp32],
        "int8": [vars(t) | {"images_per_second": t.images_per_second} for t in comparison.int8],
        "int8_speedup": comparison.ratios(),
        "agreement": vars(measured.agreement) if measured.agreement else None,
        "deploy": {"int8": "int8", "fp32": "fp32", "mixed": "depends on the batch size"}.get(
            verdict or "", "fp32"
        ),
    }
    print(json.dumps(document, indent=2))


def _print_table(measured: _Measured, threads: int | None) -> None:
    comparison, agreement = measured.comparison, measured.agreement
    print(
        f"model: {safe_text(measured.described)}   input: Nx{'x'.join(map(str, measured.shape))}   "
        f"{measured.provider}, {threads} threads"
    )
    header = f"{'batch':>5}  {'fp32 p50':>10} {'p90':>10} {'images/s':>10}"
    if measured.quantized:
        header += f"  {'int8 p50':>10} {'p90':>10} {'images/s':>10}  {'int8 speed-up':>13}"
    print(header)
    for i, f in enumerate(comparison.fp32):
        row = f"{f.batch:>5}  {f.p50_ms:>7.3f} ms {f.p90_ms:>7.3f} ms {rate_text(f.images_per_second):>10}"
        if measured.quantized:
            q = comparison.int8[i]
            row += f"  {q.p50_ms:>7.3f} ms {q.p90_ms:>7.3f} ms {rate_text(q.images_per_second):>10}  {comparison.ratios()[i]:>12.2f}x"
        print(row)
    if agreement is not None:
        print(
            f"int8 top-1 agreement with fp32: {agreement.top1:.1%} on {agreement.examples} held-out examples "
            f"(largest output difference {agreement.max_difference:.4g})"
        )
    from ..deploy.int8 import agreement_problem

    problem = agreement_problem(agreement)
    if problem:  # the rule export --int8 applies: not int8, however fast
        say("warning", problem)
        print("deploy: fp32 (int8 changes too many answers)")
    else:
        _print_verdict(_deploy(measured), comparison)


def _deploy(measured: _Measured) -> str | None:
    """int8, fp32 or mixed: by speed, unless int8 agrees too rarely with fp32."""
    from ..deploy.int8 import agreement_problem

    if not measured.quantized:
        return None
    return "fp32" if agreement_problem(measured.agreement) else measured.comparison.verdict()


def _print_verdict(verdict: str | None, comparison) -> None:
    if verdict == "int8":
        print("deploy: int8 (faster at every batch size measured)")
    elif verdict == "fp32":
        say(
            "warning",
            "int8 is slower than fp32 for this model on this machine at every batch size: deploy fp32",
        )
        print("deploy: fp32")
    elif verdict == "mixed":
        wins = [f.batch for f, r in zip(comparison.fp32, comparison.ratios()) if r > 1.05]
        print(f"deploy: int8 for batch sizes {', '.join(map(str, wins))}; fp32 otherwise")


def add_parser(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="latency and throughput, fp32 and int8 side by side",
        description="Time a .cnn or an ONNX model with onnxruntime: p50 and p90 latency and images/s per "
        "batch size; with --int8-calibrate, the int8 model beside it, the speed-up, the top-1 agreement "
        "and which one to deploy on this machine.",
    )
    bench.add_argument("model", metavar="FILE.cnn|MODEL.onnx")
    bench.add_argument("--batch", type=_batches, help="batch sizes (default 1,8,32)")
    bench.add_argument("--int8-calibrate", metavar="DATA", help="quantise with these examples and compare")
    bench.add_argument(
        "--mean", type=finite_number, nargs="+", help="per-channel mean of the calibration images"
    )
    bench.add_argument(
        "--std", type=finite_number, nargs="+", help="per-channel std of the calibration images"
    )
    bench.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    bench.add_argument(
        "--threads", type=thread_count, help="onnxruntime's intra-op threads (default: one per core)"
    )
    bench.add_argument("--seconds", type=finite_number, default=1.0, help="timing per batch size (default 1)")
    bench.add_argument("--format", choices=("table", "json"), default="table")
    bench.add_argument(
        "--per-layer",
        action="store_true",
        help="also time each kernel with onnxruntime's profiler at the first batch size, beside "
        "what `check --latency` predicts (a .cnn: with --latency DEVICE, default this-cpu when calibrated)",
    )
    bench.add_argument("--latency", metavar="DEVICE", help="the device profile for --per-layer's prediction")
    export_options(bench, for_run=True)
    bench.set_defaults(func=cmd_bench)
