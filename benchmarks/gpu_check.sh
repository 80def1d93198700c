#!/usr/bin/env bash
# CUDA check for a machine with an NVIDIA GPU (not part of CI): exports LeNet-5 and
# VGG-16, runs both with `--provider cuda` and compares the outputs with the CPU's to
# within 1e-3; then ResNet-50 and VGG-16 exported with --fp16, timed and compared with
# fp32 on the GPU; then `cnnspec train --device cuda`, with and without --amp. Usage: bash benchmarks/gpu_check.sh  (installs into ./.gpu-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .gpu-venv
. .gpu-venv/bin/activate
python -m pip install --quiet -e '.[gpu,train]'
python -m pip uninstall --quiet -y onnxruntime || true   # the GPU build provides the module
python -m pip install --quiet --force-reinstall --no-deps 'onnxruntime-gpu>=1.17'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
out=$(mktemp -d)
python - "$out" <<'PY'
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

import cnnspec
from cnnspec.deploy.export import build_model, save
from cnnspec.deploy.runtime import make_session, run

out = Path(sys.argv[1])
print("onnxruntime", ort.__version__, "providers:", ort.get_available_providers())
worst = 0.0
for spec, batch in (("specs/lenet5.cnn", 32), ("specs/vgg16.cnn", 8)):
    network = cnnspec.check(spec).network()
    model, _ = build_model(network, seed=0)
    path = out / f"{network.name}.onnx"
    save(model, path)
    x = np.random.default_rng(0).random((batch, *network.input_shape), dtype=np.float32)
    cpu = run(make_session(path, "cpu"), x, repeat=3)
    gpu = run(make_session(path, "cuda"), x, repeat=10)
    assert gpu.providers[0] == "CUDAExecutionProvider", gpu.providers
    diff = float(np.abs(cpu.output - gpu.output).max())
    worst = max(worst, diff)
    print(f"{network.name}: batch {batch}  max |cpu - cuda| = {diff:.2e}  "
          f"cpu {cpu.images_per_second:,.0f} img/s  cuda {gpu.images_per_second:,.0f} img/s")
assert worst < 1e-3, f"CPU and CUDA differ by {worst}"

# float16 on the GPU (export --fp16): float32 in and out, close to the fp32 model
from cnnspec.deploy.export import to_fp16

for spec, batch in (("specs/zoo/resnet.cnn", 16), ("specs/vgg16.cnn", 8)):
    network = cnnspec.check(spec).networks[-1]
    model, _ = build_model(network, seed=0)
    full, half = out / f"{network.name}.onnx", out / f"{network.name}.fp16.onnx"
    save(model, full)
    save(to_fp16(model), half)
    x = np.random.default_rng(0).random((batch, *network.input_shape), dtype=np.float32)
    fp32 = run(make_session(full, "cuda"), x, repeat=10)
    fp16 = run(make_session(half, "cuda"), x, repeat=10)
    scale = float(np.abs(fp32.output).max())
    diff = float(np.abs(fp32.output - fp16.output).max())
    print(f"{network.name}: batch {batch}  fp32 {fp32.latency_ms:.2f} ms  fp16 {fp16.latency_ms:.2f} ms "
          f"({fp32.latency_ms / fp16.latency_ms:.2f}x)  max |fp32 - fp16| = {diff:.2e} of {scale:.2e}")
    assert diff <= 2e-2 * scale + 1e-3, f"fp16 differs by {diff}"
print("CUDA check passed")
PY
# training on the GPU: fp32 and mixed precision, a few epochs on random CIFAR-sized data
python - "$out" <<'PY'
import sys
from pathlib import Path

import numpy as np

from cnnspec.cli import main

out = Path(sys.argv[1])
rng = np.random.default_rng(0)
np.savez(out / "data.npz", x=rng.random((2048, 3, 32, 32), dtype=np.float32), y=rng.integers(0, 10, 2048))
for extra in ([], ["--amp"]):
    args = ["train", "specs/cifar.cnn", "--data", str(out / "data.npz"), "--epochs", "2", "--device", "cuda",
            "--batch-size", "128", *extra, "-o", str(out / "trained.onnx")]
    assert main(args) == 0, extra
print("CUDA training check passed")
PY
cnnspec run specs/lenet5.cnn --provider cuda --batch 4 | head -3
