"""Options several commands take, as argparse types and groups."""

from __future__ import annotations

import argparse
import math
import re

MAX_SEED = 2**63 - 1  # numpy takes any size, PyTorch 64 bits


def thread_count(text: str) -> int:
    value = positive_count(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"'{text}': threads run from 1 to 1,024")
    return value


def finite_number(text: str) -> float:
    """A float option: `nan`, `inf` and `1e400` are refused by argparse with the option's name."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def seed_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seeds go from 0 to {MAX_SEED} (2^63 - 1), got {text}")
    return value


UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
MAX_BUDGET = 2**60  # bytes: an exabyte; beyond any device


def memory_size(text: str) -> int:
    """`8GiB`, `16GB`, `512MiB`, `1.5GiB`: bytes."""
    found = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", text)
    number, unit = (found.group(1), found.group(2).lower() or "b") if found else (text, "?")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size such as 8GiB or 512MiB") from None
    if unit not in UNITS or not math.isfinite(value) or not 0 < value * UNITS[unit] <= MAX_BUDGET:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a memory size such as 8GiB, 16GB or 512MiB (units: B, KB, MB, GB, KiB, MiB, GiB, TiB)"
        )
    return int(value * UNITS[unit])


def batch_size(text: str) -> int:
    value = positive_count(text)
    if not 1 <= value <= 2**31:
        raise argparse.ArgumentTypeError(f"'{text}': a batch holds 1 to 2,147,483,648 images")
    return value


def positive_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None


def opset_number(text: str) -> int:
    """--opset N: an opset cnnspec exports, refused while the options are read (every
    command that builds a model takes it; none may meet an opset it cannot write)."""
    import onnx

    from ..deploy.export import MIN_OPSET

    opset, newest = positive_count(text), onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise argparse.ArgumentTypeError(f"'{text}': cnnspec exports opsets {MIN_OPSET} to {newest}")
    return opset


def export_options(command, for_run: bool = False) -> None:
    """Options shared by export, run, bench, train and evaluate."""
    command.add_argument("--network", metavar="NAME", help="the network to use when the file has several")
    command.add_argument("--seed", type=seed_number, default=0, help="seed of the fresh weights (default 0)")
    command.add_argument(
        "--weights",
        metavar="FILE",
        help=".npz or .onnx with tensors named like conv1.weight" + (" (only for a .cnn)" if for_run else ""),
    )
    command.add_argument("--opset", type=opset_number, default=17, help="ONNX opset (default 17)")
    command.add_argument("--color", choices=("auto", "always", "never"), default="auto")
