"""Export a network above protobuf's 2 GB limit and run it: wall time and peak memory.

    python benchmarks/bench_large_export.py [--units 24000]

Writes `input N`, `dense N relu`, `dense 10` (N*N + 11*N + 10 parameters) into a
temporary folder, runs `cnnspec export` and `cnnspec run` on it as separate processes and
prints the sizes of the files, the time and the peak resident memory of each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs one command and prints its peak RSS: a fresh parent per command, because
# RUSAGE_CHILDREN reports the largest of all children a process has waited for.
PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GB, and the command's stdout."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return elapsed, peak_kb / 2**20, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=24_000)
    args = parser.parse_args()
    n = args.units
    cnnspec = [sys.executable, "-m", "cnnspec"]
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "big.cnn"
        spec.write_text(f"network big {{\n  input {n}\n  dense {n} relu\n  dense 10\n}}\n")
        model = Path(folder) / "big.onnx"
        params = n * n + n + 10 * n + 10
        print(
            f"network: input {n}, dense {n} relu, dense 10 -> {params:,} parameters ({params * 4 / 1e9:.2f} GB fp32)"
        )
        seconds, peak, _ = timed([*cnnspec, "export", str(spec), "-o", str(model)])
        sizes = ", ".join(
            f"{p.name} {p.stat().st_size:,} bytes" for p in sorted(Path(folder).glob("big.onnx*"))
        )
        print(f"  cnnspec export   {seconds:6.1f} s   peak {peak:.1f} GB   -> {sizes}")
        seconds, peak, out = timed([*cnnspec, "run", str(model), "--repeat", "1"])
        print(f"  cnnspec run      {seconds:6.1f} s   peak {peak:.1f} GB   -> {out.splitlines()[2]}")
        # What the export cannot avoid, for comparison: drawing the fresh values (seeded
        # normal numbers) and writing that many bytes to the same disk.
        largest = n * n * 4
        seconds, peak, _ = timed([sys.executable, "-c", DRAW, str(n)])
        print(f"  draw the {n}x{n} tensor alone   {seconds:6.1f} s   peak {peak:.1f} GB")
        seconds, peak, _ = timed([sys.executable, "-c", WRITE, str(Path(folder) / "bytes"), str(params * 4)])
        print(f"  write {params * 4 / 1e9:.2f} GB to this disk  {seconds:6.1f} s   peak {peak:.1f} GB")
        print(
            f"  largest tensor {largest / 2**30:.2f} GB: the export's peak divided by it is the figure to watch"
        )


DRAW = (
    "import sys\n"
    "from cnnspec.deploy.weights import fresh_tensor\n"
    "n = int(sys.argv[1])\n"
    "fresh_tensor('dense1.weight', (n, n), True, 0)\n"
)
WRITE = (
    "import sys\n"
    "chunk = bytes(1 << 26)\n"
    "left = int(sys.argv[2])\n"
    "with open(sys.argv[1], 'wb') as f:\n"
    "    while left > 0:\n"
    "        f.write(chunk[: min(left, len(chunk))])\n"
    "        left -= len(chunk)\n"
)


if __name__ == "__main__":
    main()
