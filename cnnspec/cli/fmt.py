"""`cnnspec fmt`: the canonical layout of a spec."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    STDIN,
    STDIN_NAME,
    UsageError,
    read_spec,
    safe_text,
    stdin_at_most_once,
    use_color,
)


def cmd_fmt(args) -> int:
    """Rewrite specs in the canonical layout; --check and --diff only report."""
    import difflib

    from ..base.diagnostics import CnnspecError
    from ..base.files import rewrite
    from ..language.fmt import reformat

    stdin_at_most_once(args.files)
    code = EXIT_OK
    for path in args.files:
        name = STDIN_NAME if path == STDIN else path
        text = read_spec(path)
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
                print(f"would reformat {safe_text(name)}")
            code = max(code, EXIT_ERRORS)
            continue
        path = Path(name)
        try:
            rewrite(path, formatted)  # through a symlink, and every hard link sees it
        except OSError as exc:
            raise UsageError(f"{name}: cannot write: {exc.strerror or exc}") from None
        print(f"reformatted {safe_text(name)}")
    return code


def _print_diagnostics_of(error, sources: dict[str, str], args) -> None:
    from ..base.diagnostics import render

    color = use_color(sys.stderr, getattr(args, "color", "auto"))
    for diagnostic in error.diagnostics:
        print(render(diagnostic, sources, color=color), file=sys.stderr)


def add_parser(sub) -> None:
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
