"""Predicted against measured latency: `cnnspec calibrate`'s profile of this machine, every
zoo network at batch 1 and 8, side by side with onnxruntime's own timing.

    python benchmarks/bench_cost.py                 # calibrates first (about 20 s here)
    python benchmarks/bench_cost.py --profile P.json

Prints per network and batch the predicted and measured milliseconds (median of runs
interleaved across the networks, so that a slow minute of the machine hits all alike)
and the error; then the median absolute error, the share within ±20%, and the rank
correlation (Spearman) of per-kernel times on VGG-16 and ResNet-50, measured with
onnxruntime's profiler. Names the CPU's flags: figures hold for this machine only."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cnnspec  # noqa: E402
from cnnspec.cost.latency import Profile, load_profile, predict  # noqa: E402
from cnnspec.deploy.calibrate import BATCHES, calibrate, visit  # noqa: E402
from cnnspec.deploy.export import build_model  # noqa: E402

NETWORKS = [
    ("specs/lenet5.cnn", "lenet5"),
    ("specs/vgg16.cnn", "vgg16"),
    ("specs/zoo/resnet.cnn", "resnet18"),
    ("specs/zoo/resnet.cnn", "resnet50"),
    ("specs/zoo/mobilenetv2.cnn", "mobilenetv2"),
    ("specs/zoo/mobilenetv3.cnn", "mobilenetv3_large"),
    ("specs/zoo/efficientnet_b0.cnn", "efficientnet_b0"),
    ("specs/zoo/densenet121.cnn", "densenet121"),
    ("specs/zoo/squeezenet.cnn", "squeezenet1_1"),
    ("specs/zoo/googlenet.cnn", "googlenet"),
    ("specs/zoo/shufflenetv2.cnn", "shufflenetv2"),
    ("specs/zoo/convnext.cnn", "convnext_tiny"),
    ("specs/zoo/cspresnet.cnn", "cspresnet50"),
    ("specs/zoo/inception_v3.cnn", "inception_v3"),
    ("specs/zoo/unet.cnn", "unet"),
]


def _flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return " ".join(sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))) or "none of avx/fma"


def measure(models: dict, networks: dict, rounds: int) -> dict:
    """Median seconds per (network, batch) over `rounds` visits interleaved across the
    networks, each visit in a session of its own run to its steady speed, as `cnnspec
    bench` measures it (see cnnspec/deploy/calibrate.py: `visit`)."""
    times: dict = {}
    for _ in range(rounds):
        for name, model in models.items():
            for batch, seconds in visit(model, networks[name], runs=1).items():
                times.setdefault((name, batch), []).append(seconds)
    return {key: statistics.median(values) for key, values in times.items()}


def per_kernel(network, batch: int, profile: Profile) -> tuple[list[float], list[float]]:
    """(predicted, measured) seconds per kernel onnxruntime ran, matched by node name."""
    model, _ = build_model(network, seed=0)
    options = ort.SessionOptions()
    options.enable_profiling = True
    folder = tempfile.mkdtemp(prefix="cnnspec-profile-")
    options.profile_file_prefix = str(Path(folder) / "profile")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = {"input": np.random.default_rng(0).standard_normal((batch, *network.input_shape)).astype(np.float32)}
    for _ in range(5):
        session.run(None, x)
    events = json.loads(Path(session.end_profiling()).read_text())
    measured: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")].removesuffix("_nchwc").split(".")[0]
            measured[node] = measured.get(node, 0.0) + event["dur"] * 1e-6 / 6
    predicted = predict(network, profile, batch).groups()
    pairs = [(predicted[name], seconds) for name, seconds in measured.items() if name in predicted]
    return [p for p, _ in pairs], [m for _, m in pairs]


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", help="a profile .json (default: calibrate now)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    profile = load_profile(args.profile) if args.profile else calibrate("this-cpu")
    calibration = time.perf_counter() - started
    print(f"CPU flags: {_flags()}; onnxruntime {ort.__version__}; {profile.description}")
    if not args.profile:
        print(f"calibrated in {calibration:.0f} s")
    models, networks, predicted = {}, {}, {}
    for spec, name in NETWORKS:
        networks[name] = cnnspec.check(ROOT / spec, name).network(name)
        models[name] = build_model(networks[name], seed=0)[0].SerializeToString()
        for batch in BATCHES:
            predicted[(name, batch)] = predict(networks[name], profile, batch).total
    measured = measure(models, networks, args.rounds)
    errors = []
    print(f"{'network':<20} {'batch':>5} {'predicted':>11} {'measured':>11} {'error':>8}")
    for key in predicted:
        error = predicted[key] / measured[key] - 1
        errors.append(abs(error))
        print(
            f"{key[0]:<20} {key[1]:>5} {predicted[key] * 1e3:>8.2f} ms {measured[key] * 1e3:>8.2f} ms {error:>+7.1%}"
        )
    within = sum(e <= 0.2 for e in errors) / len(errors)
    print(
        f"median absolute error {statistics.median(errors):.1%} (target 15%); within ±20%: {within:.0%} (target 70%)"
    )
    for spec, name in (("specs/vgg16.cnn", "vgg16"), ("specs/zoo/resnet.cnn", "resnet50")):
        network = cnnspec.check(ROOT / spec, name).network(name)
        p, m = per_kernel(network, 1, profile)
        print(f"{name}: per-kernel Spearman {spearman(p, m):.2f} over {len(p)} kernels (target 0.8)")


if __name__ == "__main__":
    main()
