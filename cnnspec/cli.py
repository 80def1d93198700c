"""`cnnspec` command line. Thin: parse arguments, call the library, print, exit.

Exit codes, as linters use them: 0 clean (warnings allowed), 1 the spec or the data has
errors, 2 usage errors, unreadable files or a missing optional dependency.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit 2."""


def _use_color(stream, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _read_spec(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a .cnn file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (expected a .cnn spec)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None


def _check_files(paths: list[str], network: str | None):
    """Check every file; one merged result (networks and diagnostics of them all)."""
    from .infer import CheckResult, infer
    from .resolve import resolve_sources

    merged = CheckResult([], [], {})
    for path in paths:
        text = _read_spec(path)
        result = infer(resolve_sources(text, path, Path(path), network))
        merged.networks += result.networks
        merged.diagnostics += result.diagnostics
        merged.sources.update(result.sources)
        merged.resolved.update(result.resolved)
    return merged


def cmd_check(args) -> int:
    from .report import render_diagnostics, render_table, to_json

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
    return EXIT_OK if result.ok else EXIT_ERRORS


def _reject_unknown_network(result) -> None:
    """`--network NAME` naming no network is a usage error, not a spec error."""
    for d in result.diagnostics:
        if d.code == "unknown-network" and d.span is None:
            raise UsageError(d.message + (f"; {d.help}" if d.help else ""))


def _print_diagnostics(result, args) -> None:
    from .report import render_diagnostics

    print(render_diagnostics(result, _use_color(sys.stderr, getattr(args, "color", "auto"))), file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnspec",
        description="Check, export and run convolutional networks written as .cnn specs.",
    )
    parser.add_argument("--version", action="version", version=f"cnnspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="shapes, parameters, MACs, receptive fields and every mistake",
        description="Check .cnn files: every layer's output shape, parameters, MACs and receptive "
        "field, and every mistake at its line and column. Exit 0 when clean (warnings allowed), "
        "1 on errors, 2 on usage errors.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help=".cnn spec files")
    check.add_argument("--network", metavar="NAME", help="check only this network")
    check.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    check.add_argument(
        "--dense-equivalent",
        action="store_true",
        help="add what a dense layer with the same input and output sizes would cost",
    )
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"cnnspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
