"""How fast is `cnnspec check`, next to what a user would otherwise run?

1. Whole-process time of `cnnspec check` on LeNet-5, ResNet-50 and DenseNet-121 next to
   a script that builds the same network in plain PyTorch and calls torchinfo.summary
   (same machine, same run; best of N).
2. In-process time to check generated specs of 100, 1,000 and 10,000 layers, chains and
   residual graphs (it should grow linearly).

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


def best_of(command: list[str], repeat: int, env: dict | None = None) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=ROOT, env=env)  # exit 0, or 0 with warnings
        times.append(time.perf_counter() - start)
    return min(times)


def generated_spec(layers: int) -> str:
    pattern = ["conv 16 3x3 pad=same relu", "batchnorm", "dropout 0.1", "conv 16 3x3 pad=same", "relu"]
    body = "\n".join(f"  {pattern[i % len(pattern)]}" for i in range(layers))
    return f"network generated {{\n  input 16x64x64\n{body}\n}}\n"


def generated_graph(layers: int) -> str:
    """Residual blocks of 5 nodes (conv, batchnorm, relu, conv, add): `layers` nodes."""
    block = "residual { conv 16 3x3 pad=1 bias=false; batchnorm; relu; conv 16 3x3 pad=1 }"
    return f"network graph {{\n  input 16x64x64\n  repeat {layers // 5} {{ {block} }}\n}}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "cnnspec", "check", "specs/lenet5.cnn"], capture_output=True, cwd=ROOT
    )
    have_torchinfo = bool(importlib.util.find_spec("torch") and importlib.util.find_spec("torchinfo"))
    print(f"Whole process, best of {args.repeat} (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"  {'network':<14} {'cnnspec check':>14} {'PyTorch + torchinfo':>20}")
    for label, spec_args, script in NETWORKS:
        ours = best_of(
            [sys.executable, "-m", "cnnspec", "check", *spec_args, "--color", "never"], args.repeat
        )
        theirs_text = "not installed"
        if have_torchinfo:
            with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
                handle.write(script)
            theirs = best_of([sys.executable, handle.name], args.repeat)
            os.unlink(handle.name)
            theirs_text = f"{theirs * 1000:8.0f} ms ({theirs / ours:4.1f}x)"
        print(f"  {label:<14} {ours * 1000:11.0f} ms {theirs_text:>20}")
    if not have_torchinfo:
        print("  (PyTorch + torchinfo: pip install torch==2.13.0 torchinfo)")

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
    lenet = [sys.executable, "-m", "cnnspec", "check", "specs/lenet5.cnn"]
    cached = best_of(lenet, args.repeat)
    uncached = best_of(lenet, args.repeat, {**os.environ, "CNNSPEC_NO_CACHE": "1"})
    print(
        f"  {'Lark tables built, not cached':<38} {(uncached - cached) * 1000:8.0f} ms more (CNNSPEC_NO_CACHE=1)"
    )

    import cnnspec

    for title, make in (("chains", generated_spec), ("residual graphs", generated_graph)):
        print(f"\nGenerated {title}, in process (parse + resolve + check), best of 3")
        previous = None
        for layers in (100, 1_000, 10_000):
            text = make(layers)
            assert len(cnnspec.check_source(text).network().layers) == layers
            best = min(_timed(cnnspec.check_source, text) for _ in range(3))
            growth = f"   x{best / previous:.1f} for 10x the layers" if previous else ""
            print(
                f"  {layers:>6,} layers  {best * 1000:8.1f} ms  ({best / layers * 1e6:.0f} us/layer){growth}"
            )
            previous = best


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
