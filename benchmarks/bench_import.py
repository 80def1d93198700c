"""How fast is `cnnspec import`, and how long are the specs it writes?

1. Time to import ResNet-50 exported by `torch.onnx.export` (batch norm kept, and folded),
   next to what reading the same file costs with onnx alone: `onnx.load` and
   `onnx.shape_inference.infer_shapes` (best of N, in process).
2. Lines of the imported specs next to the hand-written ones in specs/zoo: for the
   reference networks exported from PyTorch (module names tell the importer where the
   blocks are), and for the zoo specs exported by cnnspec itself (no module names: blocks
   are found from the structure alone). Lines count statements, not blanks or comments.

    python benchmarks/bench_import.py [--repeat 5]

Needs PyTorch (the cnnspec[train] extra) to export the reference networks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def statements(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import onnx

    import cnnspec
    from cnnspec.deploy.export import build_model, save
    from cnnspec.importer import import_model

    try:
        from tests import torch_models as tm
    except ImportError as exc:  # torch missing
        sys.exit(f"needs PyTorch (pip install torch==2.13.0): {exc}")

    folder = Path(tempfile.mkdtemp(prefix="bench_import."))
    print("1. import time, ResNet-50 from torch.onnx.export (3x224x224), best of", args.repeat)
    print(f"   {'model':<26} {'cnnspec import':>15} {'onnx.load':>11} {'+ infer_shapes':>15}")
    for label, fold in (("batch norm kept", False), ("batch norm folded", True)):
        path = folder / f"resnet50_{fold}.onnx"
        tm.export(tm.resnet50(), (3, 224, 224), path, fold=fold)
        ours = best_of(args.repeat, lambda p=path: import_model(p, "resnet50"))
        load = best_of(args.repeat, lambda p=path: onnx.load(p))
        infer = best_of(args.repeat, lambda p=path: onnx.shape_inference.infer_shapes(onnx.load(p)))
        print(f"   {label:<26} {ours * 1000:>12.0f} ms {load * 1000:>8.0f} ms {infer * 1000:>12.0f} ms")

    print("\n2. spec lines (statements), imported next to hand-written")
    hand = {
        "resnet18": ("resnet.cnn", "resnet18"),
        "resnet50": ("resnet.cnn", "resnet50"),
        "mobilenetv2": ("mobilenetv2.cnn", None),
        "squeezenet": ("squeezenet.cnn", None),
        "densenet121": ("densenet121.cnn", None),
        "unet": ("unet.cnn", None),
    }
    torch_models = {
        "resnet18": (tm.resnet18, (3, 224, 224)),
        "resnet50": (tm.resnet50, (3, 224, 224)),
        "mobilenetv2": (tm.MobileNetV2, (3, 224, 224)),
        "squeezenet": (tm.SqueezeNet, (3, 224, 224)),
        "densenet121": (tm.DenseNet, (3, 224, 224)),
        "unet": (tm.UNet, (1, 64, 64)),
    }
    print(f"   {'network':<13} {'hand-written file':>18} {'from PyTorch':>13} {'from cnnspec export':>20}")
    for name, (file, network_name) in hand.items():
        spec_path = ROOT / "specs" / "zoo" / file
        written = statements(spec_path.read_text())
        factory, shape = torch_models[name]
        path = folder / f"{name}.onnx"
        tm.export(factory(), shape, path, fold=False)
        from_torch = statements(import_model(path, name).spec)
        network = cnnspec.check(spec_path, network_name).networks[0]
        model, _ = build_model(network)
        ours = folder / f"{name}_cnnspec.onnx"
        save(model, ours)
        from_cnnspec = statements(import_model(ours, name).spec)
        print(f"   {name:<13} {written:>18} {from_torch:>13} {from_cnnspec:>20}")
    print("\n   (resnet.cnn holds ResNet-18 and ResNet-50 and their four blocks together)")


if __name__ == "__main__":
    main()
