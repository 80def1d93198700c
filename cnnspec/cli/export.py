"""`cnnspec export`: a spec to ONNX (fresh, given or transferred weights; fp16, int8, optimised)."""

from __future__ import annotations

from pathlib import Path

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    check_weights_option,
    load_weights,
    print_error,
    readable_path,
    safe_text,
    say,
    write_model_file,
)
from .options import export_options, finite_number, thread_count


def _check_speed_options(args) -> None:
    if args.int8 and not args.calibrate:
        raise UsageError("--int8 needs --calibrate DATA: a few hundred examples (image folder, .npz or .npy)")
    if args.calibrate and not args.int8:
        raise UsageError("--calibrate goes with --int8")
    if (args.mean or args.std) and not args.calibrate:
        raise UsageError("--mean and --std apply to the --calibrate examples")
    if args.std and min(args.std) <= 0:
        raise UsageError("--std values must be above 0")
    if args.int8 and args.optimize:
        raise UsageError("--int8 writes onnxruntime's quantised graph; --optimize applies to fp32 models")
    if args.fp16 and (args.int8 or args.optimize):
        raise UsageError("--fp16 is a model of its own: not with --int8 or --optimize")
    if args.calibrate:
        readable_path(args.calibrate, "calibration data")


def onnx_checker(model) -> None:
    import onnx

    onnx.checker.check_model(model, full_check=True)


def _write_faster_model(network, weights, args, spec_text, read):
    """export --int8 / --optimize: the fp32 model built in memory, transformed, written."""
    from ..base.files import BadOutput
    from ..deploy.export import needs_external_data, to_onnx
    from ..deploy.int8 import export_int8, load_examples, optimize

    if needs_external_data(weights):
        raise UsageError(
            "--int8, --optimize and --fp16 take models below 2 GB (protobuf's limit for one file)"
        )
    built = to_onnx(network, weights, args.opset, args.fold_bn, spec_text)
    model = built.SerializeToString()
    protect = read + ((Path(args.calibrate),) if args.calibrate else ())
    try:
        if args.fp16:
            from ..deploy.export import save, to_fp16

            half = to_fp16(built)
            onnx_checker(half)
            save(half, args.output, protect)
            return None
        if args.optimize:
            optimize(model, Path(args.output), protect)
            return None
        examples = load_examples(args.calibrate, network.input_shape, args.mean, args.std)
        return export_int8(model, Path(args.output), examples, args.int8 == "auto", args.threads, protect)
    except BadOutput as exc:
        raise UsageError(f"{args.output}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write: {exc.strerror or exc}") from None


def _print_int8_report(report) -> None:
    from ..deploy.int8 import agreement_problem

    a = report.agreement
    print(
        f"int8 (static QDQ, per channel): top-1 agreement with fp32 {a.top1:.1%} on {a.examples} held-out "
        f"examples; largest output difference {a.max_difference:.4g} (fp32 outputs up to {a.fp32_range:.4g})"
    )
    if report.comparison is not None:
        ratios = ", ".join(
            f"batch {f.batch}: {f.p50_ms:.3f} ms fp32, {i.p50_ms:.3f} ms int8 ({r:.2f}x)"
            for f, i, r in zip(report.comparison.fp32, report.comparison.int8, report.comparison.ratios())
        )
        print(f"measured here: {ratios}")
        if report.kept == "fp32":
            say(
                "warning",
                "int8 is not faster for this model on this machine: wrote the fp32 model (--int8 auto)",
            )
        else:
            print("int8 is faster here: wrote the int8 model")
    problem = agreement_problem(a)
    if problem:
        say("warning", problem)


def cmd_export(args) -> int:
    from ..base.diagnostics import CnnspecError

    check_weights_option(args)
    _check_speed_options(args)
    report = None
    try:
        loaded = load_weights(args, args.file, (args.output,))
        if loaded is None:
            return EXIT_ERRORS
        network, weights, spec_text, read = loaded
        if args.int8 or args.optimize or args.fp16:
            report = _write_faster_model(network, weights, args, spec_text, read)
            written = [Path(args.output)]
        else:
            written = write_model_file(network, weights, args, spec_text, read)
    except CnnspecError as exc:
        print_error(exc)
        return EXIT_ERRORS
    size = sum(p.stat().st_size for p in written)
    print(
        f"wrote {safe_text(args.output)} ({size / 1e6:.1f} MB, opset {args.opset}): network {network.name}, "
        f"input {'x'.join(map(str, ('N', *network.input_shape)))}, "
        + ", ".join(
            f"output {name + ' ' if len(network.outputs) > 1 else ''}{'x'.join(map(str, ('N', *shape)))}"
            for name, shape in zip(
                network.outputs or ("input",), network.output_shapes or (network.input_shape,)
            )
        )
    )
    print(weights.table() if args.plan else weights.summary())
    if len(written) > 1:
        print(f"weights above protobuf's 2 GB limit are in {safe_text(written[1].name)} beside the model")
    if args.optimize:
        print("graph optimised offline by onnxruntime (extended level: folding and fusions, any CPU)")
    if args.fp16:
        print("float16 inside (for --provider cuda), float32 input and output")
    if report is not None:
        _print_int8_report(report)
    return EXIT_OK


def add_parser(sub) -> None:
    export = sub.add_parser(
        "export",
        help="write an ONNX model",
        description="Export a checked network to ONNX (named layers, symbolic batch N). A spec with "
        "errors is not exported: the same diagnostics as `check`, exit 1.",
    )
    export.add_argument("file", metavar="FILE.cnn")
    export.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    export.add_argument(
        "--fold-bn", action="store_true", help="fold batch norm into the conv or dense before it"
    )
    export.add_argument(
        "--plan", action="store_true", help="list every tensor: loaded, new or from the spec; frozen or not"
    )
    export.add_argument(
        "--int8",
        nargs="?",
        const="on",
        choices=("on", "auto"),
        help="static int8 quantisation (QDQ, per channel); `auto` keeps fp32 where int8 is not faster here",
    )
    export.add_argument(
        "--calibrate", metavar="DATA", help="int8 calibration examples: image folder, .npz or .npy"
    )
    export.add_argument(
        "--mean", type=finite_number, nargs="+", help="per-channel mean of the calibration images"
    )
    export.add_argument(
        "--std", type=finite_number, nargs="+", help="per-channel std of the calibration images"
    )
    export.add_argument("--threads", type=thread_count, help="threads when timing for --int8 auto")
    export.add_argument("--optimize", action="store_true", help="write onnxruntime's offline-optimised graph")
    export.add_argument(
        "--fp16", action="store_true", help="compute in float16 (for the CUDA provider); float32 in and out"
    )
    export_options(export)
    export.set_defaults(func=cmd_export)
