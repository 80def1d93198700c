"""Time and peak memory of the worst inputs cnnspec is built to refuse, next to the budget
that bounds each (issue 24: one budget per input, numbers checked where they enter).

Each case runs in a process of its own (`python -c`), so its peak resident memory is its
own; the baseline row is the same process checking LeNet-5.

    python benchmarks/bench_limits.py

Then the memory `cnnspec run` estimates before it runs a batch (and refuses when it does not
fit), next to the peak it then takes, measured the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import resource, sys, time
import cnnspec
start = time.perf_counter()
"""
REPORT = """
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{elapsed:.2f} {peak:.0f} {outcome}")
"""

CASES = [
    (
        "baseline: check LeNet-5",
        "nothing refused",
        "outcome = 'ok' if cnnspec.check('specs/lenet5.cnn').ok else 'errors'",
    ),
    (
        "100 networks of repeat 99,990 { relu }",
        "200,000 steps per input",
        """
text = "".join(f"network n{i} {{\\n  input 4\\n  repeat 99990 {{ relu }}\\n}}\\n" for i in range(100))
outcome = [d.code for d in cnnspec.check_source(text).diagnostics]
""",
    ),
    (
        "3,000 networks derived from a 19,000-layer base",
        "200,000 steps per input",
        """
text = "network base {\\n  input 8\\n  repeat 19000 { relu }\\n}\\n"
text += "".join(f"network d{i} from base {{\\n  dense 2\\n}}\\n" for i in range(3000))
outcome = [d.code for d in cnnspec.check_source(text).diagnostics]
""",
    ),
    (
        "4,000 unknown names against 4,000 layers",
        "200,000 suggestion comparisons",
        """
layers = "\\n".join(f"  relu as layer_{i}" for i in range(4000))
joins = "\\n".join(f"  add layer_{i} lyer_{i}" for i in range(4000))
result = cnnspec.check_source(f"network n {{\\n  input 4\\n{layers}\\n{joins}\\n}}\\n")
outcome = f"{len(result.diagnostics) + sum(h.errors for h in result.hidden)} errors"
""",
    ),
    (
        "350 nested residual { } bodies",
        "64 nesting levels",
        """
body = "conv 4 1x1"
for _ in range(350):
    body = f"residual {{ {body} }}"
outcome = [d.code for d in cnnspec.check_source(f"network n {{\\n  input 4x8x8\\n  {body}\\n}}\\n").diagnostics]
""",
    ),
    (
        "a 7 MB document in the language server",
        "1 MiB per spec",
        """
from cnnspec.views.lsp import analyse
text = "network n {\\n  input 4\\n" + "  relu\\n" * 1_000_000 + "}\\n"
outcome = [d.code for d in analyse(text, "big.cnn").diagnostics]
""",
    ),
    (
        "an .npz member declaring 8 GB in 16 bytes",
        "headers read first",
        """
import io, zipfile, numpy as np
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.deploy.weights import load_file
header = io.BytesIO()
np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    archive.writestr("w.npy", b"\\x93NUMPY\\x01\\x00" + header.getvalue()[8:] + bytes(16))
try:
    load_file(sys.argv[1])
    outcome = "read"
except CnnspecError as exc:
    outcome = [d.code for d in exc.diagnostics]
""",
    ),
]


# The peak resident memory of one `cnnspec run` above the process's own with the modules a
# run loads already loaded, as they are when `run` compares its estimate with the memory
# free. Prints {"code": exit code, "extra": bytes}.
RUN_PEAK = """
import json, resource, sys
import numpy, onnx, onnxruntime
import cnnspec.cli.run, cnnspec.deploy.export, cnnspec.deploy.runtime, cnnspec.inputs
from cnnspec.cli import main

def rss():
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith("VmRSS:")) * 1024

before = rss()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "extra": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before}))
"""
RUNS = [
    ("specs/zoo/resnet.cnn", "resnet50", 1),
    ("specs/zoo/resnet.cnn", "resnet18", 1),
    ("specs/zoo/resnet.cnn", "resnet18", 32),
    ("specs/zoo/mobilenetv2.cnn", "mobilenetv2", 16),
    ("specs/zoo/densenet121.cnn", "densenet121", 8),
    ("specs/zoo/unet.cnn", "unet", 2),
    ("specs/lenet5.cnn", "lenet5", 2000),
]


def measured_run_peak(spec: str, name: str, batch: int, output: Path) -> dict:
    """RUN_PEAK's answer for `cnnspec run SPEC --network NAME --batch B`, in a process of its own."""
    args = [spec, "--network", name, "--batch", str(batch), "--repeat", "1", "-o", str(output)]
    done = subprocess.run(
        [sys.executable, "-c", RUN_PEAK, "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(done.stderr.strip()[-500:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_memory_table(scratch: str) -> None:
    sys.path.insert(0, str(ROOT))
    import cnnspec
    from cnnspec.cli.common import run_memory

    print(f"\n{'cnnspec run':<30} {'batch':>6} {'estimated MiB':>14} {'measured MiB':>13} {'ratio':>6}")
    for spec, name, batch in RUNS:
        weights, per_image = run_memory(cnnspec.check(ROOT / spec, name).network(name))
        estimate = weights + batch * per_image
        extra = measured_run_peak(spec, name, batch, Path(scratch) / "out.npy")["extra"]
        print(
            f"{name:<30} {batch:>6} {estimate / 2**20:>14,.0f} {extra / 2**20:>13,.0f} {estimate / extra:>5.2f}x"
        )


def main() -> None:
    print(f"{'input':<50} {'budget':<32} {'seconds':>8} {'peak MB':>8}  outcome")
    with tempfile.TemporaryDirectory() as scratch:
        for title, budget, body in CASES:
            code = PRELUDE + textwrap.dedent(body) + REPORT
            done = subprocess.run(
                [sys.executable, "-c", code, str(Path(scratch) / "case.npz")],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                print(f"{title:<50} {budget:<32} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            seconds, peak, outcome = done.stdout.strip().splitlines()[-1].split(" ", 2)
            print(f"{title:<50} {budget:<32} {seconds:>8} {peak:>8}  {outcome[:60]}")
        run_memory_table(scratch)


if __name__ == "__main__":
    main()
