"""Images per second of the same network and weights, three ways, side by side:

  (a) cnnspec's ONNX model on onnxruntime (CPU)
  (b) the same network as a PyTorch model (cnnspec's PyTorch backend), eager
  (c) PyTorch's own ONNX export of (b) on onnxruntime

For LeNet-5, the CIFAR CBAPD network and VGG-16 at batch 1 and 32 (VGG-16: 8). The
outputs of (a) and (b) are compared on every run. Needs the train extra (PyTorch):

    pip install torch==2.13.0 && pip install -e '.[train]'
    python benchmarks/bench_run.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import cnnspec
from cnnspec.deploy.export import build_model
from cnnspec.training.modules import build_module

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = [("lenet5.cnn", (1, 32)), ("cifar.cnn", (1, 32)), ("vgg16.cnn", (1, 8))]


def eager(module: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        module(x)


def timed(seconds: float, min_runs: int, fn, *args) -> float:
    """Median seconds of one call, over at least `min_runs` calls or `seconds` of calls."""
    fn(*args)  # warm-up
    fn(*args)
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
        if len(times) >= 200:
            break
    return statistics.median(times)


def session(model_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def torch_onnx(module: torch.nn.Module, shape) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, *shape),),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
            opset_version=17,
        )
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = parser.parse_args()
    seconds, min_runs = (0.2, 2) if args.quick else (2.0, 5)
    print(
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'network':<8} {'batch':>5} {'(a) cnnspec+ORT':>16} {'(b) PyTorch eager':>18} "
        f"{'(c) torch.onnx+ORT':>19} {'max |a-b|':>10}"
    )
    print(header)
    print("-" * len(header))
    for spec, batches in NETWORKS:
        network = cnnspec.check(ROOT / "specs" / spec).network()
        model, weights = build_model(network, seed=0)
        ours = session(model.SerializeToString())
        module = build_module(network, weights.arrays)
        theirs = session(torch_onnx(module, network.input_shape))
        for batch in batches:
            x = np.random.default_rng(0).random((batch, *network.input_shape), dtype=np.float32)
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                eager_out = module(xt).numpy()
            diff = float(np.abs(ours.run(None, {"input": x})[0] - eager_out).max())

            feeds = {"input": x}
            rates = [
                batch / timed(seconds, min_runs, ours.run, None, feeds),
                batch / timed(seconds, min_runs, eager, module, xt),
                batch / timed(seconds, min_runs, theirs.run, None, feeds),
            ]
            print(
                f"{network.name:<8} {batch:>5} {rates[0]:>12,.0f} i/s {rates[1]:>14,.0f} i/s "
                f"{rates[2]:>15,.0f} i/s {diff:>10.1e}"
            )


if __name__ == "__main__":
    main()
