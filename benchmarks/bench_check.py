"""How fast is `cnnspec check`, next to what a user would otherwise run?

1. Whole-process time of `cnnspec check specs/lenet5.cnn` next to a script that builds
   LeNet-5 in PyTorch and calls torchinfo.summary (same machine, same run; best of N).
2. In-process time to check generated specs of 100, 1,000 and 10,000 layers (it should
   grow linearly).

    python benchmarks/bench_check.py [--repeat 7]

The PyTorch column needs `pip install torch==2.13.0 torchinfo`; without them it says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TORCHINFO_SCRIPT = """
import torch
from torch import nn
from torchinfo import summary

model = nn.Sequential(
    nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(400, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(),
    nn.Linear(84, 10), nn.Softmax(dim=1),
)
summary(model, input_size=(1, 1, 32, 32))
"""


def best_of(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return min(times)


def generated_spec(layers: int) -> str:
    pattern = ["conv 16 3x3 pad=same relu", "batchnorm", "dropout 0.1", "conv 16 3x3 pad=same", "relu"]
    body = "\n".join(f"  {pattern[i % len(pattern)]}" for i in range(layers))
    return f"network generated {{\n  input 16x64x64\n{body}\n}}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cnnspec_cmd = [sys.executable, "-m", "cnnspec", "check", "specs/lenet5.cnn", "--color", "never"]
    subprocess.run(cnnspec_cmd, check=True, capture_output=True, cwd=ROOT)  # warm Lark's table cache

    print(
        f"LeNet-5, whole process, best of {args.repeat} (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    ours = best_of(cnnspec_cmd, args.repeat)
    print(f"  cnnspec check specs/lenet5.cnn         {ours * 1000:8.0f} ms")
    if importlib.util.find_spec("torch") and importlib.util.find_spec("torchinfo"):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
            handle.write(TORCHINFO_SCRIPT)
        theirs = best_of([sys.executable, handle.name], args.repeat)
        os.unlink(handle.name)
        print(
            f"  PyTorch model + torchinfo.summary      {theirs * 1000:8.0f} ms   ({theirs / ours:.1f}x slower)"
        )
    else:
        print("  PyTorch + torchinfo: not installed (pip install torch==2.13.0 torchinfo)")

    print("\nWhere the start-up goes (whole process, best of the same runs)")
    bare = best_of([sys.executable, "-c", "pass"], args.repeat)
    for label, code in (
        ("python itself", None),
        ("+ import lark", "import lark"),
        ("+ import pydantic_core", "import pydantic_core"),
    ):
        if code is None:
            print(f"  {label:<38} {bare * 1000:8.0f} ms")
        else:
            spent = best_of([sys.executable, "-c", code], args.repeat) - bare
            print(f"  {label:<38} {spent * 1000:8.0f} ms")

    import cnnspec

    print("\nGenerated specs, in process (parse + resolve + check), best of 3")
    previous = None
    for layers in (100, 1_000, 10_000):
        text = generated_spec(layers)
        cnnspec.check_source(text)
        best = min(_timed(cnnspec.check_source, text) for _ in range(3))
        growth = f"   x{best / previous:.1f} for 10x the layers" if previous else ""
        print(f"  {layers:>6,} layers  {best * 1000:8.1f} ms  ({best / layers * 1e6:.0f} us/layer){growth}")
        previous = best


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
