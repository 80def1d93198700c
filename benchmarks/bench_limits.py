"""Time and peak memory of the worst inputs cnnspec is built to refuse, next to the budget
that bounds each (issue 24: one budget per input, numbers checked where they enter).

Each case runs in a process of its own (`python -c`), so its peak resident memory is its
own; the baseline row is the same process checking LeNet-5.

    python benchmarks/bench_limits.py

Then the memory `cnnspec run` and `cnnspec train` estimate before they start (and refuse a
batch that does not fit), next to the peak they then take, measured the same way; a batch
that estimate does not let through, measured on smaller ones instead, next to its peak and
time; and the time onnxruntime's memory pattern saves where `run` turns it off.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import sys, time
import cnnspec
start = time.perf_counter()
"""
REPORT = """
elapsed = time.perf_counter() - start
with open("/proc/self/status") as stream:  # VmHWM: ru_maxrss counts the parent's too
    peak = next(int(line.split()[1]) for line in stream if line.startswith("VmHWM:")) / 1024
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
    (
        "a 2 GB .npy declared in a 128-byte header",
        "free memory, from the header",
        """
import numpy as np
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.inputs import load_array
header = {"descr": "<f4", "fortran_order": False, "shape": (2**29, 1)}
with open(sys.argv[1].replace(".npz", ".npy"), "wb") as stream:
    np.lib.format.write_array_header_1_0(stream, header)
try:
    load_array(sys.argv[1].replace(".npz", ".npy"), (1,))
    outcome = "read"
except CnnspecError as exc:
    outcome = [d.code for d in exc.diagnostics]
""",
    ),
    (
        "an image of 20,000 x 20,000 pixels (a 1 MB PNG)",
        "Pillow's 89-megapixel limit",
        """
import zlib, struct
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.inputs import load_image
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
packer = zlib.compressobj(9)
rows = b"".join(packer.compress(b"\\x00" * 20_001) for _ in range(20_000)) + packer.flush()
png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0))
path = sys.argv[1].replace(".npz", ".png")
open(path, "wb").write(png + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
try:
    load_image(path, (1, 8, 8), None, None)
    outcome = "read"
except CnnspecError as exc:
    outcome = [d.code for d in exc.diagnostics]
""",
    ),
    (
        "import: a Concat of 7,000 inputs, a 30,000-character name",
        "names cleaned, joins wrapped",
        """
import onnx
from onnx import TensorProto, helper
from cnnspec.importer import import_model
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7000, 2, 2])
nodes = [helper.make_node("Relu", ["x"], [f"r{i}"], name=("n" * 30_000 if i == 0 else f"n{i}")) for i in range(7000)]
nodes.append(helper.make_node("Concat", [f"r{i}" for i in range(7000)], ["y"], axis=1))
onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), producer_name="\\n" * 1000), sys.argv[1] + ".onnx")
imported = import_model(sys.argv[1] + ".onnx", "m")
outcome = f"{len(imported.spec):,} characters of spec, {imported.spec.count(chr(10)):,} lines"
""",
    ),
]


# The peak resident memory of one `cnnspec run` above the process's own with the modules a
# run loads already loaded, as they are when `run` compares its estimate with the memory
# free. Prints {"code": exit code, "extra": bytes}. The peak is VmHWM, not getrusage's
# ru_maxrss: Linux carries ru_maxrss over from the parent that started the process (a
# parent holding 800 MB made LeNet-5's run read 510 MiB instead of 309).
RUN_PEAK = """
import json, sys
import numpy, onnx, onnxruntime
import cnnspec.cli.run, cnnspec.deploy.export, cnnspec.deploy.runtime, cnnspec.inputs
from cnnspec.cli import main

def status(key):
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith(key)) * 1024

before = status("VmRSS:")
code = main(sys.argv[1:])
print(json.dumps({"code": code, "extra": status("VmHWM:") - before}))
"""
RUNS = [  # (spec, network, batch): the weights dominate at batch 1, the batch above
    ("specs/zoo/resnet.cnn", "resnet50", 1),
    ("specs/zoo/resnet.cnn", "resnet50", 64),
    ("specs/zoo/resnet.cnn", "resnet18", 1),
    ("specs/zoo/resnet.cnn", "resnet18", 64),
    ("specs/vgg16.cnn", "vgg16", 1),
    ("specs/vgg16.cnn", "vgg16", 32),
    ("specs/zoo/mobilenetv2.cnn", "mobilenetv2", 64),
    ("specs/zoo/densenet121.cnn", "densenet121", 32),
    ("specs/zoo/squeezenet.cnn", "squeezenet1_1", 64),
    ("specs/zoo/shufflenetv2.cnn", "shufflenetv2", 64),
    ("specs/zoo/efficientnet_b0.cnn", "efficientnet_b0", 32),
    ("specs/zoo/convnext.cnn", "convnext_tiny", 32),
    ("specs/zoo/googlenet.cnn", "googlenet", 64),
    ("specs/zoo/inception_v3.cnn", "inception_v3", 32),
    ("specs/zoo/unet.cnn", "unet", 4),
    ("specs/lenet5.cnn", "lenet5", 20000),
    ("specs/zoo/audio.cnn", "m5", 512),  # 1-D
    ("specs/zoo/video.cnn", "r3d_18", 8),  # 3-D
    ("specs/zoo/unet3d.cnn", "unet3d_small", 8),
]


# One `cnnspec run` told that `argv[1]` bytes are free (less what the process takes from
# then on), so that the graph's estimate refuses the batch and it is measured instead
# (footprint.Measured); "-" leaves the memory free as it is. Prints {"code", "line":
# [fixed, per image, probes] (when measured), "run_peak": bytes the batch's runs (`run`'s
# timed loop, the inputs already read) peaked above the process's memory before them,
# "run_seconds"}.
MEASURED_RUN = """
import json, sys, time
import cnnspec.base.resources as resources
import cnnspec.deploy.runtime as runtime
from cnnspec.cli import main

def resident():
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith("VmRSS:")) * 1024

start = resident()
if sys.argv[1] != "-":
    free = int(sys.argv[1])
    resources.available_memory = lambda: free - max(resident() - start, 0)
seen = {}
measure, run = runtime.measure, runtime.run

def measured(*args, **kwargs):
    begun = time.perf_counter()
    line = measure(*args, **kwargs)
    seen["measure_seconds"] = time.perf_counter() - begun
    seen["line"] = [line.fixed, line.per_image, list(line.probes)]
    seen["measured_at"] = resident() - start  # what the estimate is above
    return line

def timed(session, batch, **kwargs):
    read, begun = resources.peak_meter()(), time.perf_counter()
    result = run(session, batch, **kwargs)
    seen["run_seconds"], seen["run_peak"] = time.perf_counter() - begun, read()
    return result

runtime.measure, runtime.run = measured, timed
begun = time.perf_counter()
code = main(sys.argv[2:])
seen["seconds"] = time.perf_counter() - begun
with open("/proc/self/status") as stream:  # the peak since the last reset (the last probe's)
    peak = next(int(line.split()[1]) for line in stream if line.startswith("VmHWM:")) * 1024
print(json.dumps({"code": code, "extra": peak - start, **seen}))
"""
# The same for `cnnspec train` (no "run_peak": "extra" is the training's peak above the
# process's memory with PyTorch loaded), its one-step measurement as "line" and the bytes
# the measured check expects above "measured_at" as "estimate".
MEASURED_TRAIN = (
    MEASURED_RUN.replace(
        "import cnnspec.deploy.runtime as runtime",
        "import torch, cnnspec.cli.train\nimport cnnspec.training.train as runtime",
    )
    .replace("measure, run = runtime.measure, runtime.run", "measure = runtime.measure_steps")
    .replace(
        "runtime.measure, runtime.run = measured, timed",
        """runtime.measure_steps = measured
check = cnnspec.cli.train.check_measured_training

def checked(*args):
    seen["estimate"] = check(*args)  # bytes above what the process held when it measured
    return seen["estimate"]

cnnspec.cli.train.check_measured_training = checked""",
    )
)


def measured_mode_run(args: list[str], free: int | None, command: str = "run") -> dict:
    """MEASURED_RUN's (or MEASURED_TRAIN's) answer for `cnnspec COMMAND ARGS` with `free`
    bytes free (None: as they are), and what it printed on stderr."""
    script = MEASURED_RUN if command == "run" else MEASURED_TRAIN
    done = subprocess.run(
        [sys.executable, "-c", script, str(free) if free is not None else "-", command, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(done.stderr.strip()[-500:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


# The same for `cnnspec train`, with PyTorch and the training modules loaded first.
TRAIN_PEAK = RUN_PEAK.replace(
    "import cnnspec.cli.run,", "import torch, cnnspec.cli.train, cnnspec.training.train, cnnspec.cli.run,"
)
TRAINS = [  # (spec, network, batch, optimizer, examples): one epoch on random 224x224 images
    ("specs/zoo/resnet.cnn", "resnet18", 4, "adam", 32),
    ("specs/zoo/resnet.cnn", "resnet18", 16, "sgd", 32),
    ("specs/zoo/resnet.cnn", "resnet50", 4, "adam", 32),
    ("specs/zoo/mobilenetv2.cnn", "mobilenetv2", 16, "adam", 32),
    ("specs/zoo/densenet121.cnn", "densenet121", 4, "adam", 32),
    ("specs/zoo/shufflenetv2.cnn", "shufflenetv2", 8, "adam", 32),
    ("specs/zoo/googlenet.cnn", "googlenet", 8, "sgd", 32),
    ("specs/lenet5.cnn", "lenet5", 512, "adam", 1024),
]


def _peak(code: str, args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(done.stderr.strip()[-500:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def measured_run_peak(model: str, name: str | None, batch: int, output: Path) -> dict:
    """RUN_PEAK's answer for `cnnspec run MODEL [--network NAME] --batch B -o OUTPUT.npz`
    (every output of the model saved), in a process of its own."""
    named = ["--network", name] if name else []
    output.unlink(missing_ok=True)
    measured = _peak(
        RUN_PEAK, ["run", model, *named, "--batch", str(batch), "--repeat", "1", "-o", str(output)]
    )
    if measured["code"] != 0:
        raise RuntimeError(f"cnnspec run {model} --batch {batch} ended with exit {measured['code']}")
    return measured


def random_images(path: Path, shape: tuple[int, ...], examples: int, classes: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((examples, *shape), dtype=np.float32)
    np.savez(path, x=x, y=rng.integers(0, classes, examples))
    return path


def measured_train_peak(spec: str, name: str, batch: int, optimizer: str, data: Path, scratch: Path) -> dict:
    """TRAIN_PEAK's answer for one epoch of `cnnspec train` on `data`, in a process of its own."""
    out = scratch / f"trained-{name}.onnx"
    out.unlink(missing_ok=True)
    out.with_suffix(".ckpt").unlink(missing_ok=True)
    args = ["--network", name, "--data", str(data), "--epochs", "1", "--batch-size", str(batch)]
    return _peak(TRAIN_PEAK, ["train", spec, *args, "--optimizer", optimizer, "-o", str(out)])


def _ratio_row(title: str, batch: int, estimate: int, measured: int) -> None:
    print(
        f"{title:<36} {batch:>6} {estimate / 2**20:>14,.0f} {measured / 2**20:>13,.0f} {estimate / measured:>5.2f}x"
    )


def run_memory_tables(scratch: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import cnnspec
    from cnnspec.deploy.export import build_model, save
    from cnnspec.deploy.footprint import file_memory, graph_memory, train_memory

    print(f"\n{'cnnspec run':<36} {'batch':>6} {'estimated MiB':>14} {'measured MiB':>13} {'ratio':>6}")
    for spec, name, batch in RUNS:
        network = cnnspec.check(ROOT / spec, name).network(name)
        model, _ = build_model(network, seed=0)
        extra = measured_run_peak(spec, name, batch, scratch / "out.npz")["extra"]
        _ratio_row(name, batch, graph_memory(model, held_weight_copies=1).peak(batch), extra)
        if batch > 1:  # the same network as an ONNX file: estimated from the file
            save(model, scratch / f"{name}.onnx")
            extra = measured_run_peak(str(scratch / f"{name}.onnx"), None, batch, scratch / "out.npz")[
                "extra"
            ]
            _ratio_row(f"{name}.onnx", batch, file_memory(scratch / f"{name}.onnx").peak(batch), extra)
    print(
        f"\n{'cnnspec train, 1 epoch':<36} {'batch':>6} {'estimated MiB':>14} {'measured MiB':>13} {'ratio':>6}"
    )
    for spec, name, batch, optimizer, examples in TRAINS:
        network = cnnspec.check(ROOT / spec, name).network(name)
        data = random_images(scratch / "data.npz", network.input_shape, examples, network.output_shape[0])
        fixed, per_example = train_memory(
            network, batch, optimizer, data_bytes=examples * 4 * math.prod(network.input_shape)
        )
        extra = measured_train_peak(spec, name, batch, optimizer, data, scratch)["extra"]
        _ratio_row(f"{name} ({optimizer}, {examples} examples)", batch, fixed + batch * per_example, extra)


MEASURED_RUNS = [(spec, name) for spec, name, batch in RUNS if batch > 1]


def measured_mode_table() -> None:
    """`run` of a batch the graph's estimate does not let through: each network at a batch
    whose images take about three times the session by that estimate, told that the
    estimate's bytes are free (so it refuses by the estimate and measures instead); the
    measured line's bytes for the batch against the peak of its runs, and the time of those
    runs against the same run with the memory free as it is (onnxruntime's arena on). The
    graph's estimate is of the whole run (the session too), the line's of the batch, above
    the session and the inputs already in memory, as is the peak."""
    import cnnspec
    from cnnspec.deploy.export import build_model
    from cnnspec.deploy.footprint import graph_memory

    print(
        f"\n{'run, measured':<20} {'batch':>6} {'graph: all MiB':>15} {'line: batch MiB':>16} "
        f"{'peak MiB':>9} {'ratio':>6} {'time, arena on s':>17} {'off s':>6} {'ratio':>6}"
    )
    for spec, name in MEASURED_RUNS:
        model, _ = build_model(cnnspec.check(ROOT / spec, name).network(name), seed=0)
        footprint = graph_memory(model, held_weight_copies=1)
        batch = max(4, math.ceil(3 * footprint.load / footprint.per_image(10**6, memory_pattern=False)))
        args = [spec, "--network", name, "--batch", str(batch), "--repeat", "1"]
        measured = measured_mode_run(args, footprint.peak(batch))
        if "line" not in measured:
            print(f"{name:<20} {batch:>6} not measured: {measured['stderr'].strip().splitlines()[-1][:80]}")
            continue
        plain = measured_mode_run(args, None)
        fixed, per_image, _ = measured["line"]
        estimate, peak = fixed + batch * per_image, measured["run_peak"]
        on, off = plain["run_seconds"], measured["run_seconds"]
        print(
            f"{name:<20} {batch:>6} {footprint.peak(batch) / 2**20:>15,.0f} {estimate / 2**20:>16,.0f} "
            f"{peak / 2**20:>9,.0f} {estimate / peak:>5.2f}x {on:>17.2f} {off:>6.2f} {off / on:>5.2f}x"
        )


def measured_train_table(scratch: Path) -> None:
    """`train` of a batch the estimate from the network does not let through, as
    measured_mode_table for `run`: one epoch, told that the estimate's bytes are free (8%
    more where the measured batch does not fit in that); the
    bytes the measured check expects against the epoch's peak above the process when it
    measured, and the command's time against the same command with the memory free as it
    is (the measurement and exact allocation against neither)."""
    import cnnspec
    from cnnspec.deploy.footprint import train_memory

    print(
        f"\n{'train, measured':<36} {'batch':>6} {'estimate MiB':>13} {'peak MiB':>9} {'ratio':>6} "
        f"{'time s':>7} {'measured s':>11} {'of which measuring':>19} {'ratio, the rest':>16}"
    )
    for spec, name, batch, optimizer, examples in [
        *TRAINS,
        ("specs/zoo/resnet.cnn", "resnet50", 16, "adam", 32),
    ]:
        network = cnnspec.check(ROOT / spec, name).network(name)
        data = random_images(scratch / "data.npz", network.input_shape, examples, network.output_shape[0])
        fixed, per_example = train_memory(
            network, batch, optimizer, data_bytes=examples * 4 * math.prod(network.input_shape)
        )
        out = scratch / "trained.onnx"
        args = [spec, "--network", name, "--data", str(data), "--epochs", "1", "--batch-size", str(batch)]
        args += ["--optimizer", optimizer, "-o", str(out)]
        title = f"{name} ({optimizer}, {examples} examples)"
        runs = []
        for free in (fixed + batch * per_example, int(1.08 * (fixed + batch * per_example)), None):
            out.unlink(missing_ok=True)
            out.with_suffix(".ckpt").unlink(missing_ok=True)
            runs.append(measured_mode_run(args, free, command="train"))
        measured = next((run for run in runs[:2] if "estimate" in run), None)
        if measured is None:
            reason = runs[0]["stderr"].strip().splitlines()[-1] if runs[0]["code"] else "the estimate fits"
            print(f"{title:<36} {batch:>6} not measured: {reason[:90]}")
            continue
        peak = measured["extra"] - measured["measured_at"]
        plain, timed, probing = runs[2]["seconds"], measured["seconds"], measured["measure_seconds"]
        print(
            f"{title:<36} {batch:>6} {measured['estimate'] / 2**20:>13,.0f} {peak / 2**20:>9,.0f} "
            f"{measured['estimate'] / peak:>5.2f}x {plain:>7.1f} {timed:>11.1f} {probing:>19.1f} "
            f"{(timed - probing) / plain:>15.2f}x"
        )


PATTERN_RUNS = [  # networks timed at the first batch run without onnxruntime's memory pattern
    ("specs/lenet5.cnn", "lenet5"),
    ("specs/zoo/resnet.cnn", "resnet18"),
    ("specs/zoo/mobilenetv2.cnn", "mobilenetv2"),
    ("specs/zoo/densenet121.cnn", "densenet121"),
    ("specs/zoo/squeezenet.cnn", "squeezenet1_1"),
    ("specs/zoo/shufflenetv2.cnn", "shufflenetv2"),
    ("specs/zoo/efficientnet_b0.cnn", "efficientnet_b0"),
    ("specs/zoo/unet.cnn", "unet"),
]


def pattern_time_table(rounds: int = 5) -> None:
    """What turning the memory pattern off costs in time where `run` turns it off: the
    median of `rounds` interleaved timings each way (a fresh session each), at the first
    batch above footprint.PATTERN_LIMIT."""
    import gc
    import statistics
    import time

    import numpy as np
    import onnxruntime as ort

    import cnnspec
    from cnnspec.deploy.export import build_model
    from cnnspec.deploy.footprint import PATTERN_LIMIT, graph_memory

    def seconds(model: bytes, x, pattern: bool) -> float:
        options = ort.SessionOptions()
        options.enable_mem_pattern = pattern
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feeds = {session.get_inputs()[0].name: x}
        for _ in range(3):
            session.run(None, feeds)
        start, runs = time.perf_counter(), 0
        while runs < 5 or time.perf_counter() - start < 0.5:
            session.run(None, feeds)
            runs += 1
        elapsed = (time.perf_counter() - start) / runs
        del session
        gc.collect()
        return elapsed

    print(
        f"\n{'memory pattern: time per batch':<36} {'batch':>6} {'with ms':>10} {'without ms':>11} {'ratio':>6}"
    )
    for spec, name in PATTERN_RUNS:
        network = cnnspec.check(ROOT / spec, name).network(name)
        model, _ = build_model(network, seed=0)
        batch = -(-PATTERN_LIMIT // graph_memory(model).live)
        x = np.random.default_rng(0).random((batch, *network.input_shape), dtype=np.float32)
        data = model.SerializeToString()
        times: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(rounds):
            for pattern in (True, False) if round_ % 2 else (False, True):
                times[pattern].append(seconds(data, x, pattern))
        with_, without = statistics.median(times[True]), statistics.median(times[False])
        print(f"{name:<36} {batch:>6} {with_ * 1e3:>10.2f} {without * 1e3:>11.2f} {without / with_:>5.2f}x")


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
        run_memory_tables(Path(scratch))
        measured_train_table(Path(scratch))
    measured_mode_table()
    pattern_time_table()


if __name__ == "__main__":
    main()
