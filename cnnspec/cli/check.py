"""`cnnspec check`: shapes, parameters, costs and diagnostics of specs."""

from __future__ import annotations

import sys

from .common import EXIT_ERRORS, EXIT_OK, check_files, reject_unknown_network, safe_text, use_color


def cmd_check(args) -> int:
    from ..views.report import render_diagnostics, render_table, to_json

    result = check_files(args.files, args.network)
    reject_unknown_network(result)
    if args.format == "json":
        print(to_json(result))
    else:
        table = render_table(result, use_color(sys.stdout, args.color), args.dense_equivalent)
        if table:
            print(table)
        notes = render_diagnostics(result, use_color(sys.stderr, args.color))
        if notes:
            sys.stdout.flush()
            print(("\n" if table else "") + notes, file=sys.stderr)
        if not table and not notes:  # a file of blocks only: say what was checked
            print(f"{safe_text(', '.join(args.files))}: no network to check (blocks only); no errors")
    return EXIT_OK if result.ok else EXIT_ERRORS


def add_parser(sub) -> None:
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
