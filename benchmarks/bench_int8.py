"""int8 next to fp32, measured in one run on this machine: when does int8 pay?

1. Speed: VGG-16 at batch 8, the CBAPD CIFAR net (specs/cifar.cnn) at batch 32 and
   LeNet-5 at batch 1, 8 and 32; fp32 and static QDQ per-channel int8 (onnxruntime's
   quantisation, as `cnnspec export --int8` writes it), p50 latency and the speed-up.
   Weights are seeded (int8 speed does not depend on their values).
2. Accuracy: a digits classifier trained with `cnnspec train` on scikit-learn's 8x8
   digits, quantised with 500 real images, then top-1 agreement with fp32 (and accuracy)
   on the other 1,297 images, none of them used for calibration.

    python benchmarks/bench_int8.py [--seconds 3] [--skip-vgg]

Needs the cnnspec[train] and [examples] extras for part 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def speed(spec: str, batches: tuple[int, ...], seconds: float, calibration: int, scratch: Path) -> None:
    import cnnspec
    from cnnspec.deploy.export import build_model, save
    from cnnspec.deploy.int8 import compare, quantize
    from cnnspec.deploy.runtime import make_session

    network = cnnspec.check(ROOT / "specs" / spec).networks[0]
    model, _ = build_model(network)
    fp32, int8 = scratch / f"{network.name}.onnx", scratch / f"{network.name}.int8.onnx"
    save(model, fp32)
    x = np.random.default_rng(0).random((calibration, *network.input_shape), dtype=np.float32)
    quantize(fp32, int8, x)
    result = compare(make_session(fp32), make_session(int8), network.input_shape, batches, seconds)
    for f, q, ratio in zip(result.fp32, result.int8, result.ratios()):
        print(
            f"   {network.name:<8} batch {f.batch:>3}   fp32 {f.p50_ms:>9.2f} ms   int8 {q.p50_ms:>9.2f} ms   "
            f"int8 speed-up {ratio:>5.2f}x"
        )
    verdict = result.verdict()
    print(f"   {network.name:<8} deploy: {'keep fp32' if verdict == 'fp32' else verdict}")


def accuracy(scratch: Path) -> None:
    from sklearn.datasets import load_digits

    from cnnspec.cli import main as cnnspec
    from cnnspec.deploy.runtime import make_session

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    np.savez(scratch / "digits.npz", x=x, y=y)
    np.savez(scratch / "cal.npz", x=x[:500])
    spec = scratch / "digits.cnn"
    spec.write_text(
        "network digits {\n  input 1x8x8\n  conv 16 3x3 pad=1; batchnorm; relu\n  conv 32 3x3 pad=1; batchnorm; relu\n"
        "  pool max 2\n  flatten\n  dense 64 relu\n  dense 10 softmax\n}\n"
    )
    trained, int8 = scratch / "digits.onnx", scratch / "digits.int8.onnx"
    quiet = open(os.devnull, "w")  # noqa: SIM115 - closed below
    stdout, stderr, sys.stdout, sys.stderr = sys.stdout, sys.stderr, quiet, quiet
    try:
        assert (
            cnnspec(
                [
                    "train",
                    str(spec),
                    "--data",
                    str(scratch / "digits.npz"),
                    "--epochs",
                    "10",
                    "-o",
                    str(trained),
                ]
            )
            == 0
        )
        args = [
            "export",
            str(spec),
            "--weights",
            str(trained),
            "--int8",
            "--calibrate",
            str(scratch / "cal.npz"),
        ]
        assert cnnspec([*args, "-o", str(int8)]) == 0
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        quiet.close()
    held_out, labels = x[500:], y[500:]
    fp32_scores = make_session(trained).run(None, {"input": held_out})[0]
    int8_scores = make_session(int8).run(None, {"input": held_out})[0]
    agreement = np.mean(fp32_scores.argmax(1) == int8_scores.argmax(1))
    print(
        f"   digits classifier, {len(held_out)} held-out real images: top-1 agreement {agreement:.2%}; "
        f"accuracy fp32 {np.mean(fp32_scores.argmax(1) == labels):.2%}, "
        f"int8 {np.mean(int8_scores.argmax(1) == labels):.2%}; "
        f"largest output difference {np.abs(fp32_scores - int8_scores).max():.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per batch size")
    parser.add_argument("--skip-vgg", action="store_true", help="leave out VGG-16 (minutes, 2 GB of memory)")
    args = parser.parse_args()
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    print(
        f"{os.cpu_count()} cores; int8 dot-product instructions (VNNI): {'yes' if vnni else 'no, AVX2 only'}"
    )
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        print("1. speed (p50 latency per batch, onnxruntime CPU)")
        if not args.skip_vgg:
            speed("vgg16.cnn", (8,), args.seconds, 8, scratch)
        speed("cifar.cnn", (32,), args.seconds, 100, scratch)
        speed("lenet5.cnn", (1, 8, 32), args.seconds, 100, scratch)
        print("2. agreement on a trained model and real images")
        accuracy(scratch)


if __name__ == "__main__":
    main()
