"""How fast is `cnnspec check`, next to what a user would otherwise run?

1. Whole-process time of `cnnspec check` on LeNet-5, ResNet-50 and DenseNet-121 next to
   a script that builds the same network in plain PyTorch and calls torchinfo.summary
   (same machine, same run; best of N).
2. Where the start-up goes: python itself, importing pydantic-core, importing cnnspec's
   check path, building the parser, the check.
3. With `--against REV`: the same whole-process check, this tree next to an older
   commit (a temporary git worktree), interleaved; how start-up targets set on another
   machine are judged here.
4. `check_source` in process, as a program checking thousands of candidate networks
   calls it: microseconds per expanded layer (`repeat 6000 { conv }`) and per written
   line (6,000 lines), beside REV's with `--against`, and the targets (15 and 40).
5. In-process time to check generated specs of 100, 1,000 and 10,000 layers, chains and
   residual graphs (it should grow linearly).
6. The same 1,000-layer chain and residual graph as 1-D, 2-D and 3-D networks: us per
   layer per rank, next to 2-D's (a 3-D check should cost what a 2-D one does).

    python benchmarks/bench_check.py [--repeat 7] [--instructions] [--against dbeadf0]

Wall time on a shared or throttled machine drifts (the same loop took 258-514 ms from one
minute to the next on the one the README's figures come from), so `--instructions` adds
instruction counts from valgrind (cachegrind, no cache simulation): deterministic, and
what start-up work and linear growth are judged by. The PyTorch column needs
`pip install torch==2.13.0 torchinfo`; without them it says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import statistics
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

# Plain PyTorch, as a user would write them (torchvision does not import against the CPU
# build of torch here).
RESNET50_SCRIPT = """
import torch
from torch import nn
from torchinfo import summary

class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width))
        self.short = (nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width))
                      if stride != 1 or cin != 4 * width else nn.Identity())
    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))

layers, cin = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
    for i in range(blocks):
        layers.append(Bottleneck(cin, width, stride if i == 0 else 1)); cin = 4 * width
model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))
summary(model, input_size=(1, 3, 224, 224))
"""

DENSENET_SCRIPT = """
import torch
from torch import nn
from torchinfo import summary

class DenseLayer(nn.Module):
    def __init__(self, cin, growth=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False))
    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)

layers, c = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
for i, blocks in enumerate((6, 12, 24, 16)):
    for _ in range(blocks):
        layers.append(DenseLayer(c)); c += 32
    if i < 3:
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]; c //= 2
model = nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000))
summary(model, input_size=(1, 3, 224, 224))
"""

NETWORKS = (
    ("LeNet-5", ["specs/lenet5.cnn"], TORCHINFO_SCRIPT),
    ("ResNet-50", ["specs/zoo/resnet.cnn", "--network", "resnet50"], RESNET50_SCRIPT),
    ("DenseNet-121", ["specs/zoo/densenet121.cnn"], DENSENET_SCRIPT),
)


def timings(command: list[str], repeat: int, env: dict | None = None, cwd: Path = ROOT) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=cwd, env=env)  # exit 0, or 0 with warnings
        times.append(time.perf_counter() - start)
    return times


def instructions(command: list[str]) -> int:
    """Instructions the whole process executes (valgrind's cachegrind, no cache simulation)."""
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise SystemExit(f"bench_check: valgrind printed no instruction count:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def millions(count: int) -> str:
    return f"{count / 1e6:,.0f}M"


def generated_spec(layers: int) -> str:
    pattern = ["conv 16 3x3 pad=same relu", "batchnorm", "dropout 0.1", "conv 16 3x3 pad=same", "relu"]
    body = "\n".join(f"  {pattern[i % len(pattern)]}" for i in range(layers))
    return f"network generated {{\n  input 16x64x64\n{body}\n}}\n"


RANK_INPUTS = {1: "16x4096", 2: "16x64x64", 3: "16x16x64x64"}


def ranked(text: str, rank: int) -> str:
    """A generated 2-D spec as a `rank`-D one: its input, and kernels of one number."""
    return text.replace("input 16x64x64", f"input {RANK_INPUTS[rank]}").replace("3x3", "3")


def generated_graph(layers: int) -> str:
    """Residual blocks of 5 nodes (conv, batchnorm, relu, conv, add): `layers` nodes."""
    block = "residual { conv 16 3x3 pad=1 bias=false; batchnorm; relu; conv 16 3x3 pad=1 }"
    return f"network graph {{\n  input 16x64x64\n  repeat {layers // 5} {{ {block} }}\n}}\n"


CHECK = [sys.executable, "-m", "cnnspec", "check"]
# Cumulative steps of a `cnnspec check specs/lenet5.cnn`, each a python -c of its own.
STARTUP_STEPS = (
    ("python itself", "pass"),
    ("+ typing, dataclasses, re, argparse, pathlib", "import typing, dataclasses, re, argparse, pathlib"),
    ("+ pydantic-core", "import pydantic_core"),
    ("+ cnnspec's check path (modules)", "import cnnspec.cli, cnnspec.views.report"),
    ("+ the parser built", "cnnspec.language.parse._parser()"),
    ("+ check specs/lenet5.cnn, table printed", "cnnspec.cli.main(['check', 'specs/lenet5.cnn'])"),
    # main([...]) from python -c is a library call; as the program, main() pauses the GC
    # while importing and freezes what it imported (cnnspec/cli.py, _import_and_freeze).
    ("+ as the program (GC paused, then frozen)", ""),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--instructions", action="store_true", help="add valgrind instruction counts")
    parser.add_argument("--against", metavar="REV", help="also time this tree against an older commit")
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    subprocess.run([*CHECK, "specs/lenet5.cnn"], capture_output=True, cwd=ROOT)  # .pyc files written
    have_torchinfo = bool(importlib.util.find_spec("torch") and importlib.util.find_spec("torchinfo"))
    print(
        f"Whole process, best and median of {args.repeat}, runs interleaved "
        f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    header = f"  {'network':<14} {'cnnspec check':>20} {'PyTorch + torchinfo':>22} {'ratio':>6}"
    print(header + (f" {'instructions':>13}" if args.instructions else ""))
    for label, spec_args, script in NETWORKS:
        ours_command = [*CHECK, *spec_args, "--color", "never"]
        ours: list[float] = []
        theirs: list[float] = []
        script_path = None
        if have_torchinfo:
            with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
                handle.write(script)
            script_path = handle.name
        for _ in range(args.repeat):  # interleaved: both sides see the same machine speed
            ours += timings(ours_command, 1)
            if script_path:
                theirs += timings([sys.executable, script_path], 1)
        if script_path:
            os.unlink(script_path)
        ours_text = f"{min(ours) * 1000:5.0f} ms ({statistics.median(ours) * 1000:4.0f})"
        theirs_text, ratio = "not installed", ""
        if theirs:
            theirs_text = f"{min(theirs) * 1000:5.0f} ms ({statistics.median(theirs) * 1000:4.0f})"
            ratio = f"{statistics.median(theirs) / statistics.median(ours):5.1f}x"
        line = f"  {label:<14} {ours_text:>20} {theirs_text:>22} {ratio:>6}"
        if args.instructions:
            line += f" {millions(instructions(ours_command)):>13}"
        print(line)
    if not have_torchinfo:
        print("  (PyTorch + torchinfo: pip install torch==2.13.0 torchinfo)")
    print("  ms: best (median); ratio: of the medians")

    print("\nWhere the start-up of `cnnspec check specs/lenet5.cnn` goes (whole process)")
    code, previous, before = "", 0.0, 0
    for label, step in STARTUP_STEPS:
        code = f"{code}; {step}" if code else step
        command = [sys.executable, "-c", code] if step else [*CHECK, "specs/lenet5.cnn"]
        spent = statistics.median(timings(command, args.repeat))
        line = f"  {label:<44} {(spent - previous) * 1000:+6.0f} ms"
        previous = spent
        if args.instructions:
            count = instructions(command)
            line += f"  {(count - before) / 1e6:>+6,.0f}M instructions"
            before = count
        print(line)
    print("  (medians of separate runs: a step's ms may come out negative in the noise)")
    if args.against:
        against(args.against, args.repeat)
    else:
        in_process(args.repeat)

    import cnnspec

    for title, make in (("chains", generated_spec), ("residual graphs", generated_graph)):
        print(f"\nGenerated {title}, in process (parse + resolve + check), best of 3")
        previous_time, previous_count = None, None
        for layers in (100, 1_000, 10_000):
            text = make(layers)
            assert len(cnnspec.check_source(text).network().layers) == layers
            best = min(_timed(cnnspec.check_source, text) for _ in range(3))
            growth = f"  x{best / previous_time:4.1f}" if previous_time else "       "
            line = (
                f"  {layers:>6,} layers  {best * 1000:8.1f} ms  ({best / layers * 1e6:4.0f} us/layer){growth}"
            )
            previous_time = best
            if args.instructions:
                counts = [
                    instructions(
                        [sys.executable, "-c", _SCALING.format(kind=title, layers=layers, check=check)]
                    )
                    for check in (True, False)
                ]
                count = counts[0] - counts[1]
                line += f"   {millions(count):>7} instructions ({count / layers / 1e3:4.0f}K/layer)"
                if previous_count:
                    line += f" x{count / previous_count:4.1f}"
                previous_count = count
            print(line)
        print("  (x: growth for 10x the layers)")
    per_rank()


def per_rank(layers: int = 1_000) -> None:
    """Section 6: us per layer of the same network in each rank, best of 5."""
    import cnnspec

    print(f"\nThe same {layers:,} layers in each rank, in process, best of 5 (us per layer)")
    print(f"  {'':<18} {'1-D':>8} {'2-D':>8} {'3-D':>8}   3-D / 2-D")
    for title, make in (("chain", generated_spec), ("residual graph", generated_graph)):
        cost = {}
        for rank in (1, 2, 3):
            text = ranked(make(layers), rank)
            assert cnnspec.check_source(text).ok
            cost[rank] = min(_timed(cnnspec.check_source, text) for _ in range(5)) / layers * 1e6
        print(f"  {title:<18} {cost[1]:8.1f} {cost[2]:8.1f} {cost[3]:8.1f}   {cost[3] / cost[2]:.2f}x")


# One process per size for the instruction counts; the same process without the check
# (imports and the spec text only) is subtracted.
_SCALING = """
import sys; sys.path.insert(0, "benchmarks")
import cnnspec, cnnspec.infer, cnnspec.language.parse
from bench_check import generated_graph, generated_spec
text = (generated_graph if "{kind}" == "residual graphs" else generated_spec)({layers})
cnnspec.language.parse._parser()
if {check}: cnnspec.check_source(text)
"""


def against(rev: str, repeat: int) -> None:
    """Whole-process check of this tree next to REV's, run from a temporary git worktree."""
    print(f"\nThis tree against {rev} (whole process, best and median of {repeat}, interleaved)")
    print(f"  {'network':<14} {rev:>20} {'this tree':>16} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        made = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, capture_output=True, text=True
        )
        if made.returncode != 0:
            raise SystemExit(f"bench_check: git worktree add {rev} failed: {made.stderr.strip()}")
        try:
            old_env = dict(os.environ, PYTHONPATH=str(tree))  # its cnnspec, this environment's packages
            subprocess.run([*CHECK, "specs/lenet5.cnn"], cwd=tree, env=old_env, capture_output=True)  # .pyc
            for label, spec_args, _ in NETWORKS:
                if not (tree / spec_args[0]).exists():
                    print(f"  {label:<14} {'(no ' + spec_args[0] + ')':>20}")
                    continue
                old: list[float] = []
                new: list[float] = []
                for _ in range(repeat):
                    old += timings([*CHECK, *spec_args], 1, env=old_env, cwd=tree)
                    new += timings([*CHECK, *spec_args], 1)
                old_text = f"{min(old) * 1000:5.0f} ms ({statistics.median(old) * 1000:4.0f})"
                new_text = f"{min(new) * 1000:5.0f} ms ({statistics.median(new) * 1000:4.0f})"
                ratio = statistics.median(new) / statistics.median(old)
                print(f"  {label:<14} {old_text:>20} {new_text:>16} {ratio:5.2f}x")
            print("  ms: best (median); ratio: this tree's median over the older one's")
            in_process(repeat, rev, old_env, tree)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)


# In process, as a program checking many candidate networks calls it: check_source on a
# `repeat 6000` of one conv (per expanded layer) and on 6,000 written lines (per line).
_PER_LAYER = r"""
import time
import cnnspec

def best_of_3(text):
    cnnspec.check_source(text)  # warm: the parser built
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cnnspec.check_source(text)
        times.append(time.perf_counter() - start)
    return min(times)

repeat = "network r {\n  input 16x32x32\n  repeat 6000 { conv 16 3x3 pad=1 }\n}\n"
pattern = ["conv 16 3x3 pad=same relu", "batchnorm", "dropout 0.1", "conv 16 3x3 pad=same", "relu"]
body = "\n".join("  " + pattern[i % 5] for i in range(6000))
lines = "network generated {\n  input 16x64x64\n" + body + "\n}\n"
for text in (repeat, lines):
    print(best_of_3(text) / 6000 * 1e6)
"""

TARGETS = {"per expanded layer (repeat 6000 { conv })": 15.0, "per written line (6,000 lines)": 40.0}


def in_process(
    repeat: int, rev: str | None = None, old_env: dict | None = None, tree: Path | None = None
) -> None:
    """µs per expanded layer and per written line, this tree (and REV's, interleaved)."""
    code = _PER_LAYER
    runs: dict[str, list[list[float]]] = {"this tree": [], rev or "": []}
    for _ in range(max(repeat // 3, 1)):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        runs["this tree"].append([float(x) for x in done.stdout.split()])
        if rev:
            done = subprocess.run(
                [sys.executable, "-c", code],
                cwd=tree,
                env=old_env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs[rev].append([float(x) for x in done.stdout.split()])
    print("\ncheck_source in process, us (best of 3 in each of the interleaved runs, then the best)")
    print(f"  {'':<44} {rev or '':>10} {'this tree':>10} {'target':>7}")
    for i, (label, target) in enumerate(TARGETS.items()):
        ours = min(r[i] for r in runs["this tree"])
        old = f"{min(r[i] for r in runs[rev]):10.1f}" if rev else " " * 10
        print(f"  {label:<44} {old} {ours:10.1f} {target:7.0f}")


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
