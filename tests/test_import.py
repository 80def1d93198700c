"""ONNX import: models in, readable specs and weights out, equal outputs.

Proof is independent of the importer: onnxruntime runs the original model and the model
cnnspec exports from the imported spec and weights; PyTorch's own parameter counts and
outputs for the reference networks in plain PyTorch (tests/torch_models.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper, numpy_helper

import cnnspec
from cnnspec.cli import main
from cnnspec.onnx_export import build_model, save
from cnnspec.onnx_import import import_model
from tests.conftest import SPECS, check_text, net
from tests.test_export import network_text
from tests.test_graph import graph_text

EXAMPLES = sorted(p for p in SPECS.rglob("*.cnn") if not p.name.startswith("mistakes"))


def _networks(path: Path) -> list[str]:
    return [n.name for n in cnnspec.check(path).networks]


def _rows(network) -> list[tuple]:
    """What the table says of each layer; activations merge into the conv or dense line
    on import, and have no parameters or MACs of their own."""
    return [(layer.output_shape, layer.params, layer.macs) for layer in network.layers if layer.kind != "activation"]


def _outputs(model: onnx.ModelProto | str, x: np.ndarray) -> list[np.ndarray]:
    source = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def _round_trip(network, tmp_path: Path, **options):
    """export -> import -> check -> export with the imported weights."""
    model, _ = build_model(network, seed=3)
    original = tmp_path / "original.onnx"
    save(model, original)
    imported = import_model(original, "imported", **options)
    result = check_text(imported.spec)
    assert result.ok, (imported.spec, [d.message for d in result.errors])
    weights = tmp_path / "imported.npz"
    np.savez(weights, **imported.weights)
    again, _ = build_model(result.network(), weights_file=weights)
    return model, imported, result.network(), again


def _assert_same_outputs(a, b, shape, rtol=1e-5, atol=1e-6):
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    for left, right in zip(_outputs(a, x), _outputs(b, x), strict=True):
        np.testing.assert_allclose(left, right, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ every shipped spec


@pytest.mark.parametrize(
    "path, name", [(p, n) for p in EXAMPLES for n in _networks(p)], ids=lambda v: getattr(v, "name", v)
)
def test_every_example_survives_export_import_check(path: Path, name: str, tmp_path: Path):
    network = cnnspec.check(path, name).network(name)
    model, imported, again_network, again = _round_trip(network, tmp_path)
    assert _rows(again_network) == _rows(network), imported.spec
    assert again_network.total_params == network.total_params
    assert again_network.output_shapes == network.output_shapes
    _assert_same_outputs(model, again, network.input_shape)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=network_text())
def test_generated_chains_survive_the_round_trip(text, tmp_path_factory):
    result = check_text(text)
    if not result.ok:
        return  # the generator also writes networks with mistakes; those are not exported
    network = result.network()
    model, imported, again_network, again = _round_trip(network, tmp_path_factory.mktemp("chain"), flat=True)
    assert _rows(again_network) == _rows(network), imported.spec
    _assert_same_outputs(model, again, network.input_shape)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=graph_text())
def test_generated_graphs_survive_the_round_trip(text, tmp_path_factory):
    network = check_text(text).network()
    model, imported, again_network, again = _round_trip(network, tmp_path_factory.mktemp("graph"))
    assert _rows(again_network) == _rows(network), imported.spec
    _assert_same_outputs(model, again, network.input_shape)


# ------------------------------------------------------------------ models from PyTorch

torch = pytest.importorskip("torch", reason="the cnnspec[train] extra (PyTorch) is part of the test install")
from tests import torch_models as tm  # noqa: E402

TORCH_MODELS = [
    # name, factory, input shape, batch norm folded by the exporter, opset
    ("resnet18", tm.resnet18, (3, 64, 64), True, 17),
    ("resnet50", tm.resnet50, (3, 64, 64), False, 13),
    ("mobilenetv2", tm.MobileNetV2, (3, 64, 64), False, 17),
    ("squeezenet", tm.SqueezeNet, (3, 64, 64), True, 21),
    ("densenet121", tm.DenseNet, (3, 64, 64), False, 17),
    ("unet", tm.UNet, (1, 64, 64), False, 17),
    ("unet_folded", tm.UNet, (1, 64, 64), True, 14),
]


def _torch_params(model, folded: bool) -> int:
    """PyTorch's count of what the exported model carries: parameters and batch-norm running
    statistics; with batch norm folded into the conv before it, each conv gains a bias instead."""
    total = sum(p.numel() for p in model.parameters())
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not folded:
        return total + sum(2 * m.num_features for m in batchnorms)
    return total - sum(2 * m.num_features for m in batchnorms) + sum(
        m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is None
    )


@pytest.mark.parametrize("name, factory, shape, folded, opset", TORCH_MODELS, ids=[m[0] for m in TORCH_MODELS])
def test_pytorch_exports_import_with_equal_parameters_and_outputs(name, factory, shape, folded, opset, tmp_path):
    torch.manual_seed(0)
    model = tm.randomize_batchnorm(factory())
    path = tmp_path / f"{name}.onnx"
    tm.export(model, shape, path, fold=folded, opset=opset)
    spec = tmp_path / "net.cnn"
    assert main(["import", str(path), "-o", str(spec)]) == 0
    network = cnnspec.check(spec).network()
    assert network.total_params == _torch_params(model, folded)
    again = tmp_path / "again.onnx"
    assert main(["export", str(spec), "--weights", str(tmp_path / "net.npz"), "-o", str(again)]) == 0
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_outputs(str(again), x)[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_outputs(str(again), x)[0], _outputs(str(path), x)[0], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def resnet_imports(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("resnets")
    texts = {}
    for name, factory, fold in (("resnet18", tm.resnet18, True), ("resnet50", tm.resnet50, False)):
        path = folder / f"{name}.onnx"
        tm.export(factory(), (3, 64, 64), path, fold=fold)
        texts[name] = import_model(path, name).spec
    return texts


def test_imported_resnets_read_like_the_hand_written_specs(resnet_imports):
    hand_written = (SPECS / "zoo" / "resnet.cnn").read_text().count("\n")  # both networks and their blocks
    for name, text in resnet_imports.items():
        assert text.count("\n") <= hand_written, text
    resnet50 = resnet_imports["resnet50"]
    # PyTorch's module names, the bottleneck written once with its width as a parameter
    assert "conv 4*filters 1x1 bias=false as conv3; batchnorm as bn3" in resnet50
    assert re.search(r"^  layer_block\d? 256 2 as layer3_0$", resnet50, re.M)
    names = {layer.name for layer in check_text(resnet50).network().layers}
    assert {"conv1", "bn1", "layer3_1_conv2", "layer4_0_downsample_0", "fc"} <= names


def test_flat_writes_one_line_per_layer(resnet_imports, tmp_path):
    path = tmp_path / "r18.onnx"
    tm.export(tm.resnet18(), (3, 64, 64), path)
    flat = import_model(path, "r18", flat=True).spec
    network = check_text(flat).network()
    layer_lines = [line for line in flat.splitlines() if line.startswith("  ") and not line.startswith("  input")]
    assert len(layer_lines) == len(network.layers)
    assert "block" not in flat and "residual" not in flat
    assert "  add layer1_0_conv2 maxpool\n" in flat and "  add layer4_1_conv2 layer4_0_relu_1\n" in flat


def test_transfer_learning_from_an_imported_model(tmp_path):
    path = tmp_path / "r18.onnx"
    tm.export(tm.resnet18(), (3, 64, 64), path)
    assert main(["import", str(path), "-o", str(tmp_path / "imported.cnn")]) == 0
    derived = tmp_path / "mine.cnn"
    derived.write_text(
        'use "imported.cnn"\n'
        "network mine from imported {\n  drop from fc\n  freeze through layer3_1\n  dense 5 softmax\n}\n"
    )
    network = cnnspec.check(derived, "mine").network("mine")
    assert network.output_shape == (5,)
    frozen = [layer.name for layer in network.layers if layer.layer.frozen]
    assert "layer3_1_conv2" in frozen and "layer4_0_conv1" not in frozen
    out = tmp_path / "mine.onnx"
    args = ["export", str(derived), "--network", "mine", "--weights", str(tmp_path / "imported.npz")]
    assert main([*args, "-o", str(out)]) == 0
