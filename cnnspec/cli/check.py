"""`cnnspec check`: shapes, parameters, costs and diagnostics of specs."""

from __future__ import annotations

import argparse
import os
import sys

from ..cost import OPTIMIZERS
from .common import (
    EXIT_ERRORS,
    EXIT_OK,
    UsageError,
    check_files,
    reject_unknown_network,
    safe_text,
    use_color,
)
from .options import batch_size, memory_size, positive_count

# Columns `--columns` adds after the output shape (views/report.py fills them): name -> what.
OPTIONAL_COLUMNS = {
    "input": "the layer's input shape",
    "kernel": "its weight tensor's shape",
    "params%": "its share of the parameters",
    "jump": "input pixels between neighbouring outputs",
}


def cmd_check(args) -> int:
    from ..views.report import Costing, Layout, render_diagnostics, render_table, to_json

    result = check_files(args.files, args.network)
    reject_unknown_network(result)
    optimizer = args.train or ("adam" if args.fit is not None else None)
    costing = Costing(args.batch, optimizer, args.amp, args.fit, _device(args.latency))
    if args.format == "json":
        print(to_json(result, costing))
    else:
        layout = Layout(_terminal_width(), args.depth, args.columns)
        table = render_table(
            result, use_color(sys.stdout, args.color), args.dense_equivalent, costing, layout
        )
        if table:
            print(table)
        notes = render_diagnostics(result, use_color(sys.stderr, args.color))
        if notes:
            sys.stdout.flush()
            print(("\n" if table else "") + notes, file=sys.stderr)
        if not table and not notes:  # a file of blocks only: say what was checked
            print(f"{safe_text(', '.join(args.files))}: no network to check (blocks only); no errors")
    return EXIT_OK if result.ok else EXIT_ERRORS


def _terminal_width() -> int | None:
    """The terminal's columns (COLUMNS first, as shells set it); None when the table goes to
    a file or a pipe, where it widens to its longest cell instead of cutting the spec text.
    (shutil.get_terminal_size would do the same, at an import `check` does not pay for.)"""
    if not sys.stdout.isatty():
        return None
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return 80


def _columns(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in OPTIONAL_COLUMNS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown column '{safe_text(unknown[0]) if unknown else text}' (columns: {', '.join(OPTIONAL_COLUMNS)})"
        )
    return names


def _device(name: str | None):
    if name is None:
        return None
    from ..cost.latency import UnknownDevice, load_profile

    try:
        return load_profile(name)
    except UnknownDevice as exc:
        raise UsageError(f"--latency {safe_text(name)}: {exc}") from None


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
    memory = check.add_argument_group("training memory (checked against what PyTorch keeps for backward)")
    memory.add_argument(
        "--train",
        nargs="?",
        const="adam",
        choices=tuple(OPTIMIZERS),
        metavar="OPTIMIZER",
        help="add the memory to train: weights, gradients, optimizer state (sgd: none, momentum: 1, "
        "adam and adamw: 2 per weight) and the activations kept for backward, per layer and in "
        "total (default optimizer: adam)",
    )
    memory.add_argument(
        "--batch", type=batch_size, default=1, help="images per batch for --train (default 1)"
    )
    memory.add_argument(
        "--amp", action="store_true", help="mixed precision: activations kept in half precision"
    )
    memory.add_argument(
        "--fit",
        type=memory_size,
        metavar="SIZE",
        help="the largest batch whose training memory fits SIZE (8GiB, 16GB, ...), 10%% kept for the framework",
    )
    check.add_argument(
        "--latency",
        metavar="DEVICE",
        help="add the predicted time per layer and whether it is bound by compute or memory: a "
        "profile `cnnspec calibrate` measured here (its name, or a .json), or a named roofline "
        "(h100, a100, l4, t4, rtx4090, jetson-orin, rpi5); --batch sets the batch",
    )
    _table_options(check.add_argument_group("the table"))
    check.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    check.set_defaults(func=cmd_check, modules=("cnnspec.views.report",))


def _fold_depth(text: str) -> int:
    """--depth N: 1 to MAX_DEPTH, the deepest blocks can nest."""
    from ..resolve import MAX_DEPTH

    depth = positive_count(text)
    if not 1 <= depth <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(
            f"'{text}': --depth runs from 1 (the network's own block calls) to {MAX_DEPTH}"
        )
    return depth


def _table_options(table) -> None:
    table.add_argument(
        "--depth",
        type=_fold_depth,
        metavar="N",
        help="fold block instances nested N deep or more into one row each (1: one row per block "
        "instance of the network, as torchinfo's depth=1)",
    )
    table.add_argument(
        "--columns",
        type=_columns,
        default=(),
        metavar="NAMES",
        help="add columns, comma-separated: "
        + ", ".join(f"{k} ({v})" for k, v in OPTIONAL_COLUMNS.items()).replace("%", "%%"),
    )
