"""`cnnspec` command line. Thin: parse arguments, call the library, print, exit.

Exit codes, as linters use them: 0 clean (warnings allowed), 1 the spec or the data has
errors, 2 usage errors, unreadable files or a missing optional dependency.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import os
import signal
import sys
import warnings
from pathlib import Path

from .. import __version__

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in cnnspec, never a problem with the input
MAX_SEED = 2**63 - 1  # numpy takes any size, PyTorch 64 bits
MAX_WORKERS = 64  # processes reading images; more only exhausts the machine


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit 2."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C so every `finally` removes its temporary files."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def _say(prefix: str, message: str) -> None:
    from ..base.diagnostics import printable

    print(f"cnnspec: {prefix}: {printable(message)}", file=sys.stderr)


def _shown(text: str) -> str:
    """A path or a label from the user, safe to print (control characters escaped)."""
    from ..base.diagnostics import printable

    return printable(text)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """numpy's and Pillow's warnings as one cnnspec line, without their source paths."""
    _say("warning", str(message))


def _use_color(stream, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


STDIN = "-"  # as a spec path: standard input (`./-` names a file called -)
STDIN_NAME = "<stdin>"  # how diagnostics name it


def _read_spec(path: str) -> str:
    from ..base.files import UnreadableFile, read_source, read_source_stream

    try:
        if path != STDIN:
            return read_source(path)
        if sys.stdin is None:  # started with standard input closed
            raise UnreadableFile("standard input is closed")
        return read_source_stream(sys.stdin.buffer)
    except UnreadableFile as exc:
        raise UsageError(f"{STDIN_NAME if path == STDIN else path}: {exc}") from None


def _stdin_at_most_once(paths: list[str]) -> None:
    if paths.count(STDIN) > 1:
        raise UsageError("- (standard input) can be named only once")


def _check_files(paths: list[str], network: str | None):
    """Check every file; one merged result (networks and diagnostics of them all)."""
    from ..infer import CheckResult, infer
    from ..resolve import resolve_sources

    _stdin_at_most_once(paths)
    merged = CheckResult([], [], {})
    seen: set[str] = set()
    for path in paths:
        key = path if path == STDIN else os.path.realpath(path)
        if key in seen:  # the same file named twice is checked once
            continue
        seen.add(key)
        text = _read_spec(path)
        # Standard input has no folder: its `use` paths are relative to the current one.
        name, real = (STDIN_NAME, None) if path == STDIN else (path, Path(path))
        result = infer(resolve_sources(text, name, real, network))
        merged.networks += result.networks
        merged.diagnostics += result.diagnostics
        merged.sources.update(result.sources)
        merged.hidden += result.hidden
        merged.files += result.files
    return merged


def cmd_check(args) -> int:
    from ..views.report import render_diagnostics, render_table, to_json

    result = _check_files(args.files, args.network)
    _reject_unknown_network(result)
    if args.format == "json":
        print(to_json(result))
    else:
        table = render_table(result, _use_color(sys.stdout, args.color), args.dense_equivalent)
        if table:
            print(table)
        notes = render_diagnostics(result, _use_color(sys.stderr, args.color))
        if notes:
            sys.stdout.flush()
            print(("\n" if table else "") + notes, file=sys.stderr)
        if not table and not notes:  # a file of blocks only: say what was checked
            print(f"{_shown(', '.join(args.files))}: no network to check (blocks only); no errors")
    return EXIT_OK if result.ok else EXIT_ERRORS


def _reject_unknown_network(result) -> None:
    """`--network NAME` naming no network is a usage error, not a spec error."""
    for d in result.diagnostics:
        if d.code == "unknown-network" and d.span is None:
            raise UsageError(d.message + (f"; {d.help}" if d.help else ""))


def _print_diagnostics(result, args) -> None:
    from ..views.report import render_diagnostics

    text = render_diagnostics(result, _use_color(sys.stderr, getattr(args, "color", "auto")))
    if text:
        print(text, file=sys.stderr)


def _print_error(error) -> None:
    """A CnnspecError from export/run/train: one line per problem, no source position."""
    from ..base.diagnostics import printable

    for d in error.diagnostics:
        print(f"cnnspec: {d.severity}: {printable(d.message)} [{d.code}]", file=sys.stderr)
        if d.help:
            print(f"  help: {printable(d.help)}", file=sys.stderr)


def _checked_network(path: str, network: str | None, args):
    """Check one spec file and pick one network; diagnostics printed, None on errors."""
    result = _check_files([path], network)
    _reject_unknown_network(result)
    _print_diagnostics(result, args)
    if not result.ok:
        return None, result
    if not result.networks:
        raise UsageError(f"{path} defines no network")
    if network is None and len(result.networks) > 1:
        names = ", ".join(n.name for n in result.networks)
        raise UsageError(f"{path} defines several networks ({names}); pick one with --network NAME")
    return result.networks[0], result


def _weights(args, path: str, outputs: tuple[str | None, ...] = ()):
    """A .cnn spec -> (checked network, weights, spec text, files read) with the options of
    `args`; None after printing its diagnostics when the spec has errors. Every output in
    `outputs` is checked against every file read before the weights are built."""
    from ..deploy.weights import build_weights, load_file

    network, result = _checked_network(path, args.network, args)
    if network is None:
        return None
    read = _files_read(result, args)
    for out in outputs:
        if out:
            _output_target(out, read)
    _check_weight_memory(network)
    provided = load_file(args.weights) if args.weights else None
    return network, build_weights(network, args.seed, provided), result.sources.get(path), read


def _files_read(result, args) -> tuple[Path, ...]:
    """Every file this command reads: specs (with their `use`s), weights, inputs, data."""
    named = [getattr(args, "weights", None), getattr(args, "labels", None), getattr(args, "data", None)]
    named += list(getattr(args, "input", None) or [])
    return tuple(result.files) + tuple(Path(p) for p in named if p)


def _output_target(out: str, read: tuple[Path, ...]) -> Path:
    """OUT checked before any work: not an input, a regular file, in a writable folder."""
    from ..base.files import BadOutput, target

    try:
        return target(out, read)
    except BadOutput as exc:
        raise UsageError(f"{out}: {exc}") from None


def _check_weight_memory(network) -> None:
    """Refuse, before allocating, weights that do not fit in this machine's memory."""
    from ..base.diagnostics import CnnspecError, Diagnostic
    from ..base.resources import shortfall

    needed = network.param_bytes * 2  # the arrays and the serialised model
    problem = shortfall(needed)
    if problem:
        raise CnnspecError(
            [
                Diagnostic(
                    "error",
                    "too-large",
                    f"'{network.name}' has {network.total_params:,} parameters: its weights {problem}",
                )
            ]
        )


def _check_opset(opset: int) -> None:
    import onnx

    from ..deploy.export import MIN_OPSET

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise UsageError(f"--opset {opset}: cnnspec exports opsets {MIN_OPSET} to {newest}")


def cmd_export(args) -> int:
    from ..base.diagnostics import CnnspecError

    _check_opset(args.opset)
    _check_weights_option(args)
    _check_speed_options(args)
    report = None
    try:
        loaded = _weights(args, args.file, (args.output,))
        if loaded is None:
            return EXIT_ERRORS
        network, weights, spec_text, read = loaded
        if args.int8 or args.optimize or args.fp16:
            report = _write_faster_model(network, weights, args, spec_text, read)
            written = [Path(args.output)]
        else:
            written = _write_model(network, weights, args, spec_text, read)
    except CnnspecError as exc:
        _print_error(exc)
        return EXIT_ERRORS
    size = sum(p.stat().st_size for p in written)
    print(
        f"wrote {_shown(args.output)} ({size / 1e6:.1f} MB, opset {args.opset}): network {network.name}, "
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
        print(f"weights above protobuf's 2 GB limit are in {_shown(written[1].name)} beside the model")
    if args.optimize:
        print("graph optimised offline by onnxruntime (extended level: folding and fusions, any CPU)")
    if args.fp16:
        print("float16 inside (for --provider cuda), float32 input and output")
    if report is not None:
        _print_int8_report(report)
    return EXIT_OK


def cmd_lsp(args) -> int:
    """The language server, on stdin and stdout."""
    try:
        import pygls  # noqa: F401
    except ImportError:
        raise UsageError("the language server needs pygls: pip install 'cnnspec[lsp]'") from None
    from ..views.lsp import serve

    serve()
    return EXIT_OK


def cmd_fmt(args) -> int:
    """Rewrite specs in the canonical layout; --check and --diff only report."""
    import difflib
    import functools

    from ..base.diagnostics import CnnspecError
    from ..base.files import write_atomically
    from ..language.fmt import reformat

    _stdin_at_most_once(args.files)
    code = EXIT_OK
    for path in args.files:
        name = STDIN_NAME if path == STDIN else path
        text = _read_spec(path)
        try:
            formatted = reformat(text, name)
        except CnnspecError as exc:  # a file that does not parse is never rewritten
            _print_diagnostics_of(exc, {name: text}, args)
            code = EXIT_ERRORS
            continue
        if path == STDIN and not (args.check or args.diff):  # a filter: the text, changed or not
            sys.stdout.write(formatted)
            continue
        if formatted == text:
            continue
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(True), formatted.splitlines(True), f"{name} (now)", f"{name} (formatted)"
                )
            )
        if args.check or args.diff:
            if args.check:
                print(f"would reformat {_shown(name)}")
            code = max(code, EXIT_ERRORS)
            continue
        path = Path(name)
        try:
            write_atomically(path, functools.partial(Path.write_text, data=formatted, encoding="utf-8"), path)
        except OSError as exc:
            raise UsageError(f"{name}: cannot write: {exc.strerror or exc}") from None
        print(f"reformatted {_shown(name)}")
    return code


def _print_diagnostics_of(error, sources: dict[str, str], args) -> None:
    from ..base.diagnostics import render

    color = _use_color(sys.stderr, getattr(args, "color", "auto"))
    for diagnostic in error.diagnostics:
        print(render(diagnostic, sources, color=color), file=sys.stderr)


def cmd_draw(args) -> int:
    """The network as a diagram: .svg, .png or .html, chosen by the output's suffix."""
    from ..base.files import write_atomically
    from ..views.draw import layout, to_html, to_png, to_svg

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".html"):
        raise UsageError(f"{args.output}: draw writes .svg, .png or .html")
    network, result = _checked_network(args.file, args.network, args)
    if network is None:
        return EXIT_ERRORS
    final = _output_target(args.output, tuple(result.files))
    diagram = layout(network, args.collapse)

    def write(temp: Path) -> None:
        if suffix == ".png":
            try:
                to_png(diagram, temp)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        else:
            temp.write_text(to_svg(diagram) if suffix == ".svg" else to_html(diagram), encoding="utf-8")

    try:
        write_atomically(final, write)
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {_shown(args.output)} ({diagram.width}x{diagram.height}, {len(diagram.boxes)} boxes)")
    return EXIT_OK


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
        _readable_path(args.calibrate, "calibration data")


def _readable_path(name: str, what: str) -> None:
    """A file or a folder that must exist."""
    if not Path(name).is_dir():
        _readable_file(name, what)


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


def onnx_checker(model) -> None:
    import onnx

    onnx.checker.check_model(model, full_check=True)


def _print_int8_report(report) -> None:
    from ..deploy.int8 import AGREEMENT_WARNING

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
            _say(
                "warning",
                "int8 is not faster for this model on this machine: wrote the fp32 model (--int8 auto)",
            )
        else:
            print("int8 is faster here: wrote the int8 model")
    if a.top1 < AGREEMENT_WARNING:
        _say(
            "warning",
            f"int8 agrees with fp32 on only {a.top1:.1%} of held-out examples (below {AGREEMENT_WARNING:.0%}); "
            "check accuracy before deploying it, or calibrate on more representative data",
        )


def cmd_bench(args) -> int:
    """Latency and throughput, fp32 and (given calibration data) int8, side by side."""
    import json
    import tempfile  # here, not at the top: `cnnspec check` never needs it

    from ..base.diagnostics import CnnspecError
    from ..deploy.int8 import compare, load_examples, quantize, split
    from ..deploy.runtime import ProviderUnavailable, input_shape, make_session

    path = Path(args.model)
    _readable_file(args.model, "file")
    if args.int8_calibrate:
        _readable_path(args.int8_calibrate, "calibration data")
    if (args.mean or args.std) and not args.int8_calibrate:
        raise UsageError("--mean and --std apply to the --int8-calibrate examples")
    if path.suffix != ".cnn":
        for option, value in (("--weights", args.weights), ("--network", args.network)):
            if value:
                raise UsageError(f"{option} applies to a .cnn spec; an ONNX model carries its own weights")
    scratch_dir = tempfile.TemporaryDirectory(prefix="cnnspec-bench-")
    scratch = Path(scratch_dir.name)
    try:
        if path.suffix == ".cnn":
            _check_opset(args.opset)
            _check_weights_option(args)
            loaded = _weights(args, args.model)
            if loaded is None:
                return EXIT_ERRORS
            network, weights, spec_text, _ = loaded
            _check_run_memory(network, max(args.batch))
            fp32: bytes | Path = _model_source(network, weights, args, spec_text, scratch)
            described = f"{network.name} ({args.model}, seed {args.seed})"
        else:
            fp32, described = path, str(path)
        fp32_session = make_session(fp32, args.provider, args.threads)
        shape = input_shape(fp32_session)
        if path.suffix != ".cnn":
            _check_input_memory(shape, max(args.batch))
        int8_session, agreement = None, None
        if args.int8_calibrate:
            from ..deploy.int8 import agreement as measure

            source = scratch / "fp32.onnx"
            if isinstance(fp32, bytes):
                source.write_bytes(fp32)
            else:
                source = fp32
            calibration, held_out = split(load_examples(args.int8_calibrate, shape, args.mean, args.std))
            quantize(source, scratch / "int8.onnx", calibration)
            int8_session = make_session(scratch / "int8.onnx", args.provider, args.threads)
            agreement = measure(fp32_session, int8_session, held_out)
        comparison = compare(fp32_session, int8_session, shape, args.batch, args.seconds)
    except ProviderUnavailable as exc:
        raise UsageError(str(exc)) from None
    except CnnspecError as exc:
        _print_error(exc)
        return EXIT_ERRORS
    finally:
        scratch_dir.cleanup()
    provider = fp32_session.get_providers()[0]
    threads = args.threads or os.cpu_count()
    verdict = comparison.verdict() if int8_session is not None else None
    if args.format == "json":
        document = {
            "model": described,
            "provider": provider,
            "threads": threads,
            "input": list(shape),
            "fp32": [vars(t) | {"images_per_second": t.images_per_second} for t in comparison.fp32],
            "int8": [vars(t) | {"images_per_second": t.images_per_second} for t in comparison.int8],
            "int8_speedup": comparison.ratios(),
            "agreement": vars(agreement) if agreement else None,
            "deploy": {"int8": "int8", "fp32": "fp32", "mixed": "depends on the batch size"}.get(
                verdict or "", "fp32"
            ),
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    print(
        f"model: {_shown(described)}   input: Nx{'x'.join(map(str, shape))}   {provider}, {threads} threads"
    )
    header = f"{'batch':>5}  {'fp32 p50':>10} {'p90':>10} {'images/s':>10}"
    if int8_session is not None:
        header += f"  {'int8 p50':>10} {'p90':>10} {'images/s':>10}  {'int8 speed-up':>13}"
    print(header)
    for i, f in enumerate(comparison.fp32):
        row = f"{f.batch:>5}  {f.p50_ms:>7.3f} ms {f.p90_ms:>7.3f} ms {_rate(f.images_per_second):>10}"
        if int8_session is not None:
            q = comparison.int8[i]
            row += f"  {q.p50_ms:>7.3f} ms {q.p90_ms:>7.3f} ms {_rate(q.images_per_second):>10}  {comparison.ratios()[i]:>12.2f}x"
        print(row)
    if agreement is not None:
        print(
            f"int8 top-1 agreement with fp32: {agreement.top1:.1%} on {agreement.examples} held-out examples "
            f"(largest output difference {agreement.max_difference:.4g})"
        )
    if verdict == "int8":
        print("deploy: int8 (faster at every batch size measured)")
    elif verdict == "fp32":
        _say(
            "warning",
            "int8 is slower than fp32 for this model on this machine at every batch size: deploy fp32",
        )
        print("deploy: fp32")
    elif verdict == "mixed":
        wins = [f.batch for f, r in zip(comparison.fp32, comparison.ratios()) if r > 1.05]
        print(f"deploy: int8 for batch sizes {', '.join(map(str, wins))}; fp32 otherwise")
    return EXIT_OK


def _rate(images_per_second: float) -> str:
    """Three significant figures for slow models (1.19 images/s, not 1), whole numbers above."""
    digits = 2 if round(images_per_second, 2) < 10 else 1 if round(images_per_second, 1) < 100 else 0
    return f"{images_per_second:,.{digits}f}"


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of batch sizes such as 1,8,32") from None
    if not values or min(values) < 1 or max(values) > 65536:
        raise argparse.ArgumentTypeError(f"'{text}': batch sizes run from 1 to 65,536")
    return values


def _threads(text: str) -> int:
    value = _count(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"'{text}': threads run from 1 to 1,024")
    return value


def cmd_run(args) -> int:
    import tempfile  # here, not at the top: `cnnspec check` never needs it

    from ..base.diagnostics import CnnspecError
    from ..deploy.runtime import ProviderUnavailable, input_shape, make_session, read_labels, run
    from ..inputs import load_inputs

    path = Path(args.model)
    _readable_file(args.model, "file")
    for name, value in (("--batch", args.batch), ("--top", args.top), ("--repeat", args.repeat)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1")
    if args.std and min(args.std) <= 0:
        raise UsageError("--std values must be above 0")
    if (args.mean or args.std) and not args.input:
        raise UsageError("--mean and --std apply to --input files (random input is used as it is)")
    for name in args.input:
        _readable_file(name, "file")
    if args.labels:
        _readable_file(args.labels, "labels file")
    is_spec = path.suffix == ".cnn"
    if args.activations:
        _check_activations_folder(args.activations, is_spec)
    if not is_spec:
        for option, value in (("--weights", args.weights), ("--network", args.network)):
            if value:
                raise UsageError(f"{option} applies to a .cnn spec; an ONNX model carries its own weights")
        if args.output:
            _output_target(args.output, (path, *map(Path, args.input), *_maybe(args.labels)))
    else:
        _check_weights_option(args)
    scratch_dir = tempfile.TemporaryDirectory(prefix="cnnspec-run-")  # for models above 2 GB
    scratch = Path(scratch_dir.name)
    try:
        if is_spec:
            _check_opset(args.opset)
            loaded = _weights(args, args.model, (args.output,))
            if loaded is None:
                return EXIT_ERRORS
            network, weights, spec_text, read = loaded
            _check_run_memory(network, args.batch if not args.input else len(args.input))
            source = _model_source(network, weights, args, spec_text, scratch)
            described = f"{network.name} ({args.model}, exported for this run, seed {args.seed})"
        else:
            source = path
            described = str(path)
            read = (path, *map(Path, args.input), *_maybe(args.labels))
        session = make_session(source, args.provider, args.threads)
        shape = input_shape(session)
        if args.output and len(session.get_outputs()) > 1 and not args.output.endswith(".npz"):
            raise UsageError(
                f"the model has {len(session.get_outputs())} outputs: save them with -o OUT.npz (one array each)"
            )
        if not is_spec and not args.input:
            _check_input_memory(shape, args.batch)
        mean, std = args.mean, args.std
        if not is_spec and args.input and mean is None and std is None:
            mean, std = _model_preprocessing(session)
        batch = load_inputs(args.input, shape, args.batch, args.seed, mean, std)
        result = run(session, batch, repeat=args.repeat)
        output = result.output
        labels = read_labels(args.labels, output.shape[1]) if args.labels and output.ndim == 2 else None
        if labels is None and not is_spec and output.ndim == 2:
            labels = _model_classes(session, output.shape[1])
        if args.activations:
            pictures = _save_activations(args, network, weights, spec_text, batch[:1])
    except ProviderUnavailable as exc:
        raise UsageError(str(exc)) from None
    except CnnspecError as exc:
        _print_error(exc)
        return EXIT_ERRORS
    finally:
        scratch_dir.cleanup()
    origin = "random" if not args.input else ", ".join(args.input)
    print(f"model: {_shown(described)}")
    print(f"provider: {result.providers[0]}")
    several = len(result.outputs) > 1
    shapes = "   ".join(
        f"{_shown(n) + ': ' if several else ''}{'x'.join(map(str, o.shape))}" for n, o in result.outputs
    )
    print(f"input: {'x'.join(map(str, batch.shape))} ({_shown(origin)})   output: {shapes}")
    for name, output in result.outputs:  # every output of the network, in order
        if several:
            print(f"{_shown(name)}:")
        _print_output(output, labels if output is result.output else None, args.top)
    print(
        f"latency: {result.latency_ms:.3f} ms per batch of {batch.shape[0]} (median of {result.runs}) · "
        f"{_rate(result.images_per_second)} images/s"
    )
    if args.output:
        _save_outputs(args.output, result.outputs, read)
        print(f"wrote {_shown(args.output)}")
    if args.activations:
        print(
            f"wrote {_shown(str(Path(args.activations) / 'index.html'))} ({len(pictures)} feature-map pictures)"
        )
    return EXIT_OK


def _model_preprocessing(session):
    """The mean and std a model trained by cnnspec records (read from the session that
    already loaded it), said when used."""
    from ..training.data import model_preprocess

    mean, std = model_preprocess(session.get_modelmeta().custom_metadata_map)
    if mean is not None or std is not None:
        shown = ", ".join(
            f"{k} {','.join(f'{v:g}' for v in vals)}" for k, vals in (("mean", mean), ("std", std)) if vals
        )
        print(f"preprocessing from the model: {shown}", file=sys.stderr)
    return mean, std


def _model_classes(session, count: int) -> list[str] | None:
    """The class names a model trained on a class folder records."""
    names = session.get_modelmeta().custom_metadata_map.get("classes", "").split("\n")
    return names if len(names) == count and all(names) else None


def _check_activations_folder(folder: str, is_spec: bool) -> None:
    """--activations DIR: a new (or empty) folder in an existing, writable one."""
    if not is_spec:
        raise UsageError("--activations takes a .cnn spec (its layers are named and ordered)")
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{folder}: exists and is not an empty folder; give a new folder for the pictures")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{parent}: folder is not writable")


def _save_activations(args, network, weights, spec_text, example):
    """Every layer's output for one example, as PNG grids and an index.html."""
    from ..deploy.export import intermediate_outputs, needs_external_data, to_onnx
    from ..deploy.runtime import make_session
    from ..views.activations import save

    if needs_external_data(weights):
        raise UsageError("--activations takes models below 2 GB")
    names = [entry.name for entry in network.layers]
    model = intermediate_outputs(to_onnx(network, weights, args.opset, spec_text=spec_text), names)
    session = make_session(model.SerializeToString(), args.provider, args.threads)
    outputs = session.run(names, {session.get_inputs()[0].name: example})
    shape = "x".join(map(str, network.input_shape))
    layers = [("input", f"input {shape}", example[0])]
    layers += [(e.name, e.layer.spec_text(), out[0]) for e, out in zip(network.layers, outputs)]
    try:
        return save(Path(args.activations), network.name, layers)
    except OSError as exc:
        raise UsageError(f"{args.activations}: cannot write: {exc.strerror or exc}") from None


def _print_output(output, labels, top: int) -> None:
    from ..deploy.runtime import top_k

    if output.ndim == 2 and output.shape[1] > 1:
        shown = 8
        for index, best in enumerate(top_k(output[:shown], min(top, output.shape[1]), labels)):
            ranked = "  ".join(f"{label} {p:.4f}" for label, p in best)
            print(f"  [{index}] {_shown(ranked)}")  # labels come from a file
        if output.shape[0] > shown:
            print(f"  ... {output.shape[0] - shown} more (save them all with -o OUT.npy)")
    elif output.size <= 256:
        with np_printoptions():
            print(output[0] if output.shape[0] == 1 else output)
    else:
        print(f"  {output.size:,} values (save them with -o)")


def _maybe(path: str | None) -> tuple[Path, ...]:
    return (Path(path),) if path else ()


def _readable_file(name: str, what: str) -> None:
    """A missing, unreadable or non-file input is a usage error (exit 2), said plainly."""
    path = Path(name)
    try:
        if path.is_dir():
            raise UsageError(f"{name}: is a directory, not a file")
        if not path.exists():
            raise UsageError(f"{name}: no such {what}")
        if not path.is_file():
            raise UsageError(f"{name}: not a regular file")
    except OSError as exc:  # a symlink loop, a name too long
        raise UsageError(f"{name}: {exc.strerror or type(exc).__name__}") from None
    if not os.access(path, os.R_OK):
        raise UsageError(f"{name}: permission denied")


def _check_input_memory(shape: tuple[int, ...], batch: int) -> None:
    from ..base.resources import shortfall

    problem = shortfall(batch * math.prod(shape) * 4 * 2)  # the batch and at least its copy
    if problem:
        raise UsageError(f"a random batch of {batch:,} inputs {problem}; use a smaller --batch")


def _check_weights_option(args) -> None:
    if args.weights:
        _readable_file(args.weights, "weights file")


def _check_run_memory(network, batch: int) -> None:
    """`run --batch 1000000`: refuse before onnxruntime tries to allocate it."""
    from ..base.resources import shortfall
    from ..views.report import nbytes

    needed = network.param_bytes * 2 + batch * network.activation_bytes
    problem = shortfall(needed)
    if problem:
        raise UsageError(
            f"a batch of {batch:,} through '{network.name}' ({nbytes(network.activation_bytes)} of "
            f"activations per image) {problem}; use a smaller --batch"
        )


def cmd_train(args) -> int:
    """Train; under torchrun (WORLD_SIZE above 1) as one of several data-parallel
    processes, of which only the first prints and writes."""
    try:
        import torch
    except ImportError:
        raise UsageError("`cnnspec train` needs PyTorch: pip install 'cnnspec[train]'") from None
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return _train(args)
    if args.on_bad_image == "skip":
        raise UsageError(
            "--on-bad-image skip would give the processes different numbers of steps; clean the data"
        )
    import contextlib
    import io

    import torch.distributed as dist

    device = _torch_device(args.device)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    try:
        if dist.get_rank() == 0:
            return _train(args, processes=world)
        quiet = io.StringIO()  # the first process speaks for all
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return _train(args, processes=world)
    finally:
        dist.destroy_process_group()


def _train(args, processes: int = 1) -> int:
    from ..base.diagnostics import CnnspecError

    writer = int(os.environ.get("RANK", "0") or 0) == 0
    from ..deploy.weights import build_weights, load_file
    from ..training.train import Recipe, load_dataset, train

    _check_opset(args.opset)
    device = _torch_device(args.device)
    if args.amp and device != "cuda":
        raise UsageError(
            "--amp (mixed precision) runs on CUDA: it needs --device cuda (or auto on a GPU machine)"
        )
    for name, value in (("--patience", args.patience), ("--step-size", args.step_size)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1")
    if args.weight_decay < 0 or not 0 <= args.momentum < 1 or not 0 < args.gamma <= 1:
        raise UsageError("--weight-decay must be 0 or more, --momentum in [0, 1), --gamma in (0, 1]")
    for name, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1")
    if not 0 <= args.val_split < 1:
        raise UsageError("--val-split must be at least 0 and below 1")
    if args.lr <= 0:
        raise UsageError("--lr must be above 0")
    _check_weights_option(args)
    if not Path(args.data).exists():
        raise UsageError(f"{args.data}: no such file or folder")
    network, result = _checked_network(args.file, args.network, args)
    if network is None:
        return EXIT_ERRORS
    read = _files_read(result, args) + ((Path(args.resume),) if args.resume else ())
    _output_target(args.output, read)  # before training: a bad -o must not cost the run
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.output).with_suffix(".ckpt")
    if args.resume:
        _readable_file(args.resume, "checkpoint")
    elif checkpoint.exists() and writer:  # an interrupted run's: never overwritten unasked
        raise UsageError(
            f"{checkpoint} exists (an interrupted run?): continue it with --resume {checkpoint}, or remove it"
        )
    if not args.resume or Path(args.resume).resolve() != checkpoint.resolve():
        _output_target(str(checkpoint), read)
    for extra in (args.history, args.plot):
        if extra:
            _output_target(extra, read)
    recipe = Recipe(
        args.optimizer, args.momentum, args.weight_decay, args.schedule, args.step_size or 10, args.gamma,
        args.patience, device, args.amp,
    )  # fmt: skip
    preprocess = _preprocess(args, network)
    try:
        _check_weight_memory(network)
        provided = load_file(args.weights) if args.weights else None
        weights = build_weights(network, args.seed, provided)
        data = load_dataset(args.data, network.input_shape, network.output_shape[0], stream=True)
        print(
            f"training {network.name} on {device}{f' x {processes} processes' if processes > 1 else ''}: "
            f"{network.trainable_params:,} trainable and "
            f"{network.total_params - network.trainable_params:,} non-trainable params; "
            f"{len(data.y):,} examples, {args.val_split:.0%} held out for validation; "
            f"{args.optimizer}, lr {args.lr:g}, {args.schedule} schedule",
            file=sys.stderr,
        )
        print(weights.table(), file=sys.stderr)  # the plan, before anything runs

        def after_epoch(stats, outcome) -> None:
            if args.history and writer:
                from ..views.history import write_jsonl

                write_jsonl(Path(args.history), outcome.history)

        outcome = train(
            network, weights, data, args.epochs, args.lr, args.batch_size, args.val_split, args.seed,
            recipe=recipe, checkpoint=checkpoint, resume=Path(args.resume) if args.resume else None,
            on_epoch=after_epoch, preprocess=preprocess, workers=args.workers, on_bad_image=args.on_bad_image,
        )  # fmt: skip
        trained = build_weights(network, args.seed, outcome.arrays)
        metadata = preprocess.metadata()
        if data.classes != [str(i) for i in range(len(data.classes))]:  # a folder's class names
            metadata["classes"] = "\n".join(data.classes)
        if writer:
            _write_model(network, trained, args, result.sources.get(args.file), read, metadata)
        if args.plot and writer:
            from ..views.history import plot

            plot(Path(args.plot), outcome.history, f"{network.name}: {args.output}")
    except CnnspecError as exc:
        _print_error(exc)
        return EXIT_ERRORS
    if writer:
        checkpoint.unlink(missing_ok=True)  # the run finished: nothing left to resume
    if processes > 1:
        if not outcome.ranks_agree:
            _say("error", f"the {processes} processes ended with different weights (a bug: please report it)")
            return EXIT_INTERNAL
        print(
            f"{processes} processes (torchrun, {args.batch_size} examples a step each): all hold the same weights"
        )
    if outcome.stopped_early:
        print(
            f"stopped early after epoch {outcome.history[-1].epoch}: no better validation accuracy for {args.patience} epochs"
        )
    best = outcome.best
    if best.val_accuracy is not None:
        print(
            f"best epoch {best.epoch}: val_acc {best.val_accuracy:.4f} val_loss {best.val_loss:.4f} "
            f"(train acc {best.accuracy:.4f})"
        )
    else:
        print(
            f"last epoch {best.epoch}: train acc {best.accuracy:.4f} loss {best.loss:.4f} (no validation split)"
        )
    print(f"wrote {_shown(args.output)}")
    return EXIT_OK


def _preprocess(args, network):
    """--preset / --mean / --std and the augmentation options, checked against the input."""
    from ..training.data import PRESETS, Preprocess

    mean, std = args.mean, args.std
    if args.preset:
        if mean or std:
            raise UsageError("--preset sets --mean and --std: give one or the other")
        mean, std = PRESETS[args.preset]
    channels = network.input_shape[0]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise UsageError(f"{name} has {len(values)} values; the input has {channels} channels")
    if std is not None and min(std) <= 0:
        raise UsageError("--std values must be above 0")
    if (args.crop_pad or args.flip) and len(network.input_shape) != 3:
        raise UsageError("--crop-pad and --flip augment images: the network's input is a flat vector")
    if args.crop_pad is not None and not 0 <= args.crop_pad <= max(network.input_shape[1:], default=0):
        raise UsageError(
            f"--crop-pad must be between 0 and the input's size ({'x'.join(map(str, network.input_shape))})"
        )
    if not 0 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 0 and {MAX_WORKERS}")
    as_tuple = lambda v: tuple(float(x) for x in v) if v is not None else None  # noqa: E731
    return Preprocess(as_tuple(mean), as_tuple(std), args.crop_pad or 0, args.flip)


def _torch_device(choice: str) -> str:
    import torch

    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise UsageError("--device cuda: PyTorch sees no CUDA device here (available: cpu)")
    return "cuda" if choice == "cuda" or (choice == "auto" and has_cuda) else "cpu"


def cmd_evaluate(args) -> int:
    """Accuracy, per-class accuracy and the confusion matrix on labelled data."""
    import json
    import tempfile  # here, not at the top: `cnnspec check` never needs it

    from ..base.diagnostics import CnnspecError
    from ..deploy.runtime import input_shape, make_session
    from ..training.evaluate import evaluate, table
    from ..training.train import load_dataset

    path = Path(args.model)
    _readable_file(args.model, "model")
    if not Path(args.data).exists():
        raise UsageError(f"{args.data}: no such file or folder")
    scratch_dir = tempfile.TemporaryDirectory(prefix="cnnspec-evaluate-")
    try:
        if path.suffix == ".cnn":
            loaded = _weights(args, args.model)
            if loaded is None:
                return EXIT_ERRORS
            network, weights, spec_text, _ = loaded
            source: bytes | Path = _model_source(network, weights, args, spec_text, Path(scratch_dir.name))
        else:
            source = path
        session = make_session(source, "cpu")
        shape = input_shape(session)
        classes = session.get_outputs()[0].shape[-1]
        if not isinstance(classes, int) or len(session.get_outputs()[0].shape) != 2:
            raise UsageError("evaluate takes a classifier: one output of N x classes")
        data = load_dataset(args.data, shape, classes, stream=True)
        mean, std = _model_preprocessing(session) if path.suffix != ".cnn" else (None, None)
        result = evaluate(session, data, classes, mean, std)
    except CnnspecError as exc:
        _print_error(exc)
        return EXIT_ERRORS
    finally:
        scratch_dir.cleanup()
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"model: {_shown(args.model)}   data: {_shown(args.data)}")
        print(_shown(table(result)))
    return EXIT_OK


def cmd_import(args) -> int:
    """ONNX model -> NET.cnn and NET.npz (its weights, keyed by the spec's tensor names)."""
    import numpy as np

    from ..base.diagnostics import CnnspecError
    from ..importer import RESERVED, NotAModel, import_model
    from ..importer.printer import spec_name

    model = Path(args.model)
    _readable_file(args.model, "model")
    spec_out = Path(args.output)
    if spec_out.suffix != ".cnn":
        raise UsageError(f"{args.output}: the spec should end in .cnn")
    weights_out = Path(args.weights_out) if args.weights_out else spec_out.with_suffix(".npz")
    if weights_out.suffix != ".npz":
        raise UsageError(f"{weights_out}: the weights file should end in .npz")
    if not args.weights_out and weights_out.exists():  # a file the user did not name is never replaced
        raise UsageError(
            f"{weights_out} exists; name it with --weights-out {weights_out} to replace it, or choose another"
        )
    protect = (model, *model.parent.glob(f"{model.name}.*.data"))
    spec_path = _output_target(args.output, protect)
    weights_path = _output_target(str(weights_out), protect + (spec_path,))
    if spec_path == weights_path:
        raise UsageError("the spec and its weights need two different files")
    name = args.name or spec_name((spec_out.stem,)) or "imported"
    if spec_name((name,)) != name or name in RESERVED:
        raise UsageError(f"--name {_shown(name)}: not a network name (letters, digits and _, not a keyword)")
    try:
        imported = import_model(model, name, args.input_shape, args.flat, weights_out.name)
    except NotAModel as exc:
        raise UsageError(f"{args.model}: {exc}") from None
    except CnnspecError as exc:
        _print_error(exc)
        return EXIT_ERRORS
    from ..base.files import temporary

    written: list[Path] = []
    try:
        temp_weights = temporary(weights_path)
        written.append(temp_weights)
        with open(temp_weights, "wb") as stream:
            np.savez(stream, **imported.weights)  # type: ignore[arg-type]
        temp_spec = temporary(spec_path)
        written.append(temp_spec)
        temp_spec.write_text(imported.spec, encoding="utf-8")
        os.replace(temp_weights, weights_path)
        os.replace(temp_spec, spec_path)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    graph = imported.graph
    print(
        f"wrote {_shown(args.output)} ({imported.spec.count(chr(10))} lines): network {name}, "
        f"input {'x'.join(map(str, graph.input_shape))}, {len(graph.layers)} layers, "
        f"{imported.total_params:,} parameters"
    )
    print(f"wrote {_shown(str(weights_out))} ({len(imported.weights)} tensors)")
    if graph.layout == "NHWC":
        _say(
            "warning",
            "the model took NxHxWxC input; the spec takes NxCxHxW: transpose images to channels first",
        )
    return EXIT_OK


def _shape_argument(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape such as 3x224x224") from None
    if not dims or min(dims) < 1 or max(dims) > 2**20:
        raise argparse.ArgumentTypeError(f"'{text}': sizes must be between 1 and {2**20:,}")
    return dims


def _write_model(network, weights, args, spec_text, protect: tuple[Path, ...], metadata=None) -> list[Path]:
    """Build, check and write args.output atomically; a bad output path or a failed write
    (a full disk, a permission) is a usage error, and leaves nothing behind."""
    from ..base.files import BadOutput
    from ..deploy.export import write_model

    try:
        return write_model(
            network,
            weights,
            args.output,
            args.opset,
            getattr(args, "fold_bn", False),
            spec_text,
            protect,
            metadata,
        )
    except BadOutput as exc:
        raise UsageError(f"{args.output}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write: {exc.strerror or exc}") from None


def _model_source(network, weights, args, spec_text, scratch: Path) -> bytes | Path:
    """The model for `run`: bytes in memory, or a file in `scratch` above 2 GB."""
    from ..deploy.export import needs_external_data, to_onnx, write_model

    if needs_external_data(weights):
        path = scratch / f"{network.name}.onnx"
        write_model(network, weights, path, args.opset, spec_text=spec_text)
        return path
    return to_onnx(network, weights, args.opset, spec_text=spec_text).SerializeToString()


def np_printoptions():
    import numpy as np

    return np.printoptions(precision=4, suppress=True, linewidth=100)


def _save_outputs(out: str, outputs, protect: tuple[Path, ...]) -> None:
    """Write OUT.npy (one output) or OUT.npz (every output by name) atomically
    (temporary file, then rename); never over an input."""
    import numpy as np

    from ..base.files import temporary

    final = _output_target(out, protect)
    try:
        temp = temporary(final)
        try:
            with open(temp, "wb") as stream:
                if final.suffix == ".npz":
                    np.savez(stream, **dict(outputs))
                else:
                    np.save(stream, outputs[0][1])
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:  # a full disk, a folder gone read-only
        raise UsageError(f"{out}: cannot write: {exc.strerror or exc}") from None


def _finite(text: str) -> float:
    """A float option: `nan`, `inf` and `1e400` are refused by argparse with the option's name."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seeds go from 0 to {MAX_SEED} (2^63 - 1), got {text}")
    return value


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def _export_options(command, for_run: bool = False) -> None:
    """Options shared by export, run, bench, train and evaluate."""
    command.add_argument("--network", metavar="NAME", help="the network to use when the file has several")
    command.add_argument("--seed", type=_seed, default=0, help="seed of the fresh weights (default 0)")
    command.add_argument(
        "--weights",
        metavar="FILE",
        help=".npz or .onnx with tensors named like conv1.weight" + (" (only for a .cnn)" if for_run else ""),
    )
    command.add_argument("--opset", type=_count, default=17, help="ONNX opset (default 17)")
    command.add_argument("--color", choices=("auto", "always", "never"), default="auto")


def _add_check(sub) -> None:
    check = sub.add_parser(
        "check",
        help="shapes, parameters, MACs, receptive fields and every mistake",
        description="Check .cnn files: every layer's output shape, parameters, MACs and receptive "
        "field, and every mistake at its line and column. Exit 0 when clean (warnings allowed), "
        "1 on errors, 2 on usage errors.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help=".cnn spec files; - reads standard input")
    check.add_argument("--network", metavar="NAME", help="check only this network")
    check.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    check.add_argument(
        "--dense-equivalent",
        action="store_true",
        help="add what a dense layer with the same input and output sizes would cost",
    )
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    check.set_defaults(func=cmd_check, modules=("cnnspec.views.report",))


def _add_fmt(sub) -> None:
    fmt = sub.add_parser(
        "fmt",
        help="rewrite specs in the canonical layout",
        description="Format .cnn files in place: indentation, spacing, aligned trailing comments; comments "
        "and line breaks kept. --check exits 1 when a file would change (for CI); --diff shows how.",
    )
    fmt.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help=".cnn spec files; - formats standard input to standard output",
    )
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    fmt.add_argument("--diff", action="store_true", help="change nothing; print the changes as a diff")
    fmt.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    fmt.set_defaults(func=cmd_fmt, modules=("cnnspec.language.fmt", "cnnspec.language.parse"))


def _add_draw(sub) -> None:
    draw = sub.add_parser(
        "draw",
        help="draw the network: SVG, PNG or HTML",
        description="Draw a checked network top-down: one box per layer (kind, arguments, output shape, "
        "parameters), arrows labelled with tensor shapes, block instances framed, branches side by side, "
        "frozen layers grey. The output's suffix picks the format.",
    )
    draw.add_argument("file", metavar="FILE.cnn")
    draw.add_argument("-o", "--output", required=True, metavar="OUT.svg|OUT.png|OUT.html")
    draw.add_argument("--network", metavar="NAME", help="the network to draw when the file has several")
    draw.add_argument("--collapse", action="store_true", help="one box per block instance")
    draw.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    draw.set_defaults(func=cmd_draw, modules=("cnnspec.views.draw", "cnnspec.views.report"))


def _add_export(sub) -> None:
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
    export.add_argument("--mean", type=_finite, nargs="+", help="per-channel mean of the calibration images")
    export.add_argument("--std", type=_finite, nargs="+", help="per-channel std of the calibration images")
    export.add_argument("--threads", type=_threads, help="threads when timing for --int8 auto")
    export.add_argument("--optimize", action="store_true", help="write onnxruntime's offline-optimised graph")
    export.add_argument(
        "--fp16", action="store_true", help="compute in float16 (for the CUDA provider); float32 in and out"
    )
    _export_options(export)
    export.set_defaults(func=cmd_export)


def _add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run a .cnn or .onnx with onnxruntime",
        description="Run a network with onnxruntime on images (PNG/JPEG, resized and scaled to [0, 1]), "
        ".npy arrays (CxHxW or NxCxHxW) or random data; print the output, top-K classes and timing.",
    )
    run.add_argument("model", metavar="FILE.cnn|MODEL.onnx")
    run.add_argument("--input", nargs="+", default=[], metavar="PATH", help="images or .npy arrays")
    run.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    run.add_argument("--batch", type=_count, default=1, help="batch size of random input (default 1)")
    run.add_argument("--top", type=_count, default=5, help="classes to show per example (default 5)")
    run.add_argument("--labels", metavar="FILE", help="class names, one a line")
    run.add_argument("--mean", type=_finite, nargs="+", help="per-channel mean subtracted from the input")
    run.add_argument("--std", type=_finite, nargs="+", help="per-channel std the input is divided by")
    run.add_argument("--repeat", type=_count, default=10, help="timed runs (default 10)")
    run.add_argument(
        "-o", "--output", metavar="OUT.npy|OUT.npz", help="save the output (.npz: every output, by name)"
    )
    run.add_argument(
        "--threads", type=_threads, help="onnxruntime's intra-op threads (default: one per core)"
    )
    run.add_argument(
        "--activations", metavar="DIR", help="save every layer's feature maps as PNG grids and DIR/index.html"
    )
    _export_options(run, for_run=True)
    run.set_defaults(func=cmd_run)


def _add_bench(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="latency and throughput, fp32 and int8 side by side",
        description="Time a .cnn or an ONNX model with onnxruntime: p50 and p90 latency and images/s per "
        "batch size; with --int8-calibrate, the int8 model beside it, the speed-up, the top-1 agreement "
        "and which one to deploy on this machine.",
    )
    bench.add_argument("model", metavar="FILE.cnn|MODEL.onnx")
    bench.add_argument("--batch", type=_batches, default=(1, 8, 32), help="batch sizes (default 1,8,32)")
    bench.add_argument("--int8-calibrate", metavar="DATA", help="quantise with these examples and compare")
    bench.add_argument("--mean", type=_finite, nargs="+", help="per-channel mean of the calibration images")
    bench.add_argument("--std", type=_finite, nargs="+", help="per-channel std of the calibration images")
    bench.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    bench.add_argument(
        "--threads", type=_threads, help="onnxruntime's intra-op threads (default: one per core)"
    )
    bench.add_argument("--seconds", type=_finite, default=1.0, help="timing per batch size (default 1)")
    bench.add_argument("--format", choices=("table", "json"), default="table")
    _export_options(bench, for_run=True)
    bench.set_defaults(func=cmd_bench)


def _add_import(sub) -> None:
    imp = sub.add_parser(
        "import",
        help="turn an ONNX model into a .cnn spec and its weights",
        description="Import an ONNX model (from torch.onnx.export or a Keras converter): write a "
        "readable .cnn spec (repeated modules folded into blocks) and its weights as .npz, keyed by "
        "the spec's tensor names, so `cnnspec export NET.cnn --weights NET.npz` rebuilds the model. "
        "Exit 1 lists every op cnnspec cannot express; exit 2 for a file that is not a model.",
    )
    imp.add_argument("model", metavar="MODEL.onnx")
    imp.add_argument("-o", "--output", required=True, metavar="NET.cnn")
    imp.add_argument(
        "--weights-out", metavar="NET.npz", help="where the weights go (default: beside NET.cnn)"
    )
    imp.add_argument("--name", help="the network's name (default: from NET.cnn)")
    imp.add_argument("--flat", action="store_true", help="one line per layer: no combinators, no blocks")
    imp.add_argument(
        "--input-shape",
        type=_shape_argument,
        metavar="CxHxW",
        help="the input size, where the model leaves it open",
    )
    imp.set_defaults(func=cmd_import)


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train",
        help="train with PyTorch (the cnnspec[train] extra), write ONNX",
        description="Train a network on an .npz (x: NxCxHxW, y: N labels) or a folder with one "
        "subfolder of images per class. Frozen layers stay fixed; the epoch with the best "
        "validation accuracy is kept and written as ONNX.",
    )
    train.add_argument("file", metavar="SPEC.cnn")
    train.add_argument(
        "--data", required=True, metavar="DATA", help=".npz with x and y, or a folder of class folders"
    )
    train.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    train.add_argument("--epochs", type=_count, default=10)
    train.add_argument("--lr", type=_finite, default=1e-3, help="Adam learning rate (default 1e-3)")
    train.add_argument("--batch-size", type=_count, default=32)
    train.add_argument(
        "--val-split", type=_finite, default=0.2, help="share held out for validation (default 0.2)"
    )
    train.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    train.add_argument("--momentum", type=_finite, default=0.9, help="SGD's momentum (default 0.9)")
    train.add_argument("--weight-decay", type=_finite, default=0.0, help="L2 penalty (AdamW: decoupled)")
    train.add_argument("--schedule", choices=("constant", "cosine", "step"), default="constant")
    train.add_argument(
        "--step-size", type=_count, help="epochs between steps of --schedule step (default 10)"
    )
    train.add_argument("--gamma", type=_finite, default=0.1, help="factor of each step (default 0.1)")
    train.add_argument(
        "--patience", type=_count, help="stop after N epochs without a better validation accuracy"
    )
    train.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    train.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16, else fp16)")
    train.add_argument("--checkpoint", metavar="FILE", help="written after every epoch (default OUT.ckpt)")
    train.add_argument("--resume", metavar="FILE", help="continue an interrupted run from its checkpoint")
    train.add_argument("--history", metavar="FILE.jsonl", help="per-epoch figures, one JSON object a line")
    train.add_argument("--plot", metavar="FILE.png", help="loss and accuracy curves")
    train.add_argument("--preset", choices=("imagenet",), help="--mean and --std of a known preprocessing")
    train.add_argument("--mean", type=_finite, nargs="+", help="per-channel mean (kept in the model)")
    train.add_argument("--std", type=_finite, nargs="+", help="per-channel std (kept in the model)")
    train.add_argument("--crop-pad", type=_count, help="augment: pad by P zeros, then crop at random")
    train.add_argument("--flip", action="store_true", help="augment: flip images left-right at random")
    train.add_argument("--workers", type=_count, default=0, help="processes reading images (default 0)")
    train.add_argument(
        "--on-bad-image",
        choices=("fail", "skip"),
        default="fail",
        help="an unreadable image stops training, or is skipped",
    )
    _export_options(train)
    train.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="accuracy, per class, and the confusion matrix",
        description="Evaluate a classifier (ONNX, or a .cnn with --weights) on labelled data: an .npz with "
        "x and y, or a folder of class folders.",
    )
    evaluate.add_argument("model", metavar="MODEL.onnx|SPEC.cnn")
    evaluate.add_argument("--data", required=True, metavar="DATA")
    evaluate.add_argument("--format", choices=("table", "json"), default="table")
    _export_options(evaluate, for_run=True)
    evaluate.set_defaults(func=cmd_evaluate)


def _add_lsp(sub) -> None:
    lsp = sub.add_parser(
        "lsp",
        help="a language server for editors (stdio)",
        description="Speak the Language Server Protocol on stdin/stdout: diagnostics as you type, hover "
        "with shapes and costs, go to definition, completion. Needs the lsp extra (pygls).",
    )
    lsp.set_defaults(func=cmd_lsp)


# Each subcommand's options, in the order `cnnspec --help` lists them.
COMMANDS = {
    "check": _add_check,
    "fmt": _add_fmt,
    "draw": _add_draw,
    "export": _add_export,
    "run": _add_run,
    "bench": _add_bench,
    "import": _add_import,
    "train": _add_train,
    "evaluate": _add_evaluate,
    "lsp": _add_lsp,
}


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil (and with it bz2, lzma,
    fnmatch): argparse's formatter asks on every add_argument, so every command paid it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):  # stdout closed, or not a terminal
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, **options) -> None:
        if options.get("width") is None:
            options["width"] = _terminal_columns() - 2  # the margin argparse leaves
        super().__init__(prog, **options)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with the formatter above; subcommands inherit it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; given the arguments, only the subcommand they name gets its
    options (building all ten is 3% of the instructions of `cnnspec check specs/lenet5.cnn`)."""
    parser = _ArgumentParser(
        prog="cnnspec",
        description="Check, format, draw, export, run, import and train convolutional networks written as .cnn specs.",
    )
    parser.add_argument("--version", action="version", version=f"cnnspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, add_command in COMMANDS.items():
        if wanted in (None, name):
            add_command(sub)
    return parser


def _import_and_freeze(modules: tuple[str, ...]) -> None:
    """Import a command's modules, then put every object made so far out of the cyclic
    GC's reach (gc.freeze) and turn it back on. Why: importing the check path adds some
    15,000 objects the GC tracks, all alive until exit; collections while they are made,
    and the one at exit, walk them. Paused until here, then frozen, a whole `cnnspec check
    specs/lenet5.cnn` runs 9% fewer instructions (436M against 398M, valgrind), `fmt` 7%,
    `draw` 20%. (Not `export`: importing numpy and onnx this way made it no faster.)"""
    for name in modules:
        importlib.import_module(name)
    gc.freeze()
    gc.enable()


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # cnnspec is the process; a library caller's GC is left alone
    if program:
        gc.disable()  # until the command's modules are in: see _import_and_freeze
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    handlers = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            try:
                handlers[signum] = signal.signal(signum, _terminate)
            except ValueError:  # not the main thread (an embedding program): leave them
                pass
    try:
        if program:
            _import_and_freeze(getattr(args, "modules", ()))
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except UsageError as exc:
        _say("error", str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("error", "interrupted; no output was written")
        return 130
    except Terminated as exc:
        _say("error", f"stopped by signal {exc.signum}; no output was written")
        return 128 + exc.signum
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        print(
            "cnnspec: error: out of memory (is the network or the batch too large for this machine?)",
            file=sys.stderr,
        )
        return EXIT_ERRORS
    except Exception as exc:  # a bug: say so in one line; CNNSPEC_DEBUG=1 shows the traceback
        if os.environ.get("CNNSPEC_DEBUG"):
            raise
        _say(
            "internal error",
            f"{type(exc).__name__}: {str(exc)[:500]} (please report it; CNNSPEC_DEBUG=1 shows the traceback)",
        )
        return EXIT_INTERNAL
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
