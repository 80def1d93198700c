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
from cnnspec.deploy.export import build_model, save
from cnnspec.importer import import_model
from cnnspec.kinds import ACTIVATIONS
from tests.conftest import SPECS, check_text, net, slow_if
from tests.helpers import graph_text, network_text

EXAMPLES = sorted(p for p in SPECS.rglob("*.cnn") if not p.name.startswith("mistakes"))


def _networks(path: Path) -> list[str]:
    return [n.name for n in cnnspec.check(path).networks]


def _rows(network) -> list[tuple]:
    """What the table says of each layer; activations merge into the conv or dense line
    on import, and have no parameters or MACs of their own."""
    return [
        (layer.output_shape, layer.params, layer.macs)
        for layer in network.layers
        if layer.kind != "activation"
    ]


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
    "path, name",
    [pytest.param(p, n, marks=slow_if(n == "vgg16")) for p in EXAMPLES for n in _networks(p)],
    ids=lambda v: getattr(v, "name", v),
)
def test_every_example_survives_export_import_check(path: Path, name: str, tmp_path: Path):
    network = cnnspec.check(path, name).network(name)
    model, imported, again_network, again = _round_trip(network, tmp_path)
    assert _rows(again_network) == _rows(network), imported.spec
    assert again_network.total_params == network.total_params
    assert again_network.output_shapes == network.output_shapes
    _assert_same_outputs(model, again, network.input_shape)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=network_text())
def test_generated_chains_survive_the_round_trip(text, tmp_path_factory):
    result = check_text(text)
    if not result.ok:
        return  # the generator also writes networks with mistakes; those are not exported
    network = result.network()
    model, imported, again_network, again = _round_trip(network, tmp_path_factory.mktemp("chain"), flat=True)
    assert _rows(again_network) == _rows(network), imported.spec
    _assert_same_outputs(model, again, network.input_shape)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=graph_text())
def test_generated_graphs_survive_the_round_trip(text, tmp_path_factory):
    network = check_text(text).network()
    model, imported, again_network, again = _round_trip(network, tmp_path_factory.mktemp("graph"))
    assert _rows(again_network) == _rows(network), imported.spec
    _assert_same_outputs(model, again, network.input_shape)


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_every_activation_survives_export_and_import(opset, tmp_path):
    """Each function as cnnspec lowers it at this opset (Mish and Gelu native from 18 and 20,
    decomposed below) comes back as the same word, with equal outputs."""
    functions = [fn for fn in ACTIVATIONS if fn != "softmax"]
    body = "\n".join(f"conv 4 1x1 as c{i}\n{fn}" for i, fn in enumerate(functions))
    network = check_text(net(f"{body}\nflatten\ndense 3 softmax", "2x6x6")).network()
    model, _ = build_model(network, seed=3, opset=opset)
    save(model, tmp_path / "all.onnx")
    imported = import_model(tmp_path / "all.onnx", "all")
    words = {fn if fn != "swish" else "silu" for fn in functions}  # swish is silu's other name
    assert words <= set(re.findall(r"\b[a-z0-9]+\b", imported.spec)), imported.spec
    np.savez(tmp_path / "all.npz", **imported.weights)
    again, _ = build_model(check_text(imported.spec).network(), weights_file=tmp_path / "all.npz")
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(_outputs(again, x)[0], _outputs(model, x)[0], rtol=1e-5, atol=1e-6)


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
    ("opmix_13", tm.OpMix, (3, 32, 32), True, 13),
    ("opmix_18", tm.OpMix, (3, 32, 32), False, 18),
    ("opmix_21", tm.OpMix, (3, 32, 32), True, 21),
    ("shufflenet_13", tm.ShuffleNetV2, (3, 64, 64), False, 13),
    ("shufflenet_17", tm.ShuffleNetV2, (3, 64, 64), True, 17),
    ("shufflenet_21", tm.ShuffleNetV2, (3, 64, 64), False, 21),
    ("channel_ops_13", tm.ChannelOps, (3, 32, 32), True, 13),
    ("channel_ops_17", tm.ChannelOps, (3, 32, 32), False, 17),
    ("channel_ops_21", tm.ChannelOps, (3, 32, 32), True, 21),
    ("convnext_13", tm.ConvNeXtAtto, (3, 32, 32), False, 13),
    ("convnext_17", tm.ConvNeXtAtto, (3, 32, 32), True, 17),
    ("convnext_21", tm.ConvNeXtAtto, (3, 32, 32), False, 21),
    ("pads_13", tm.Pads, (3, 16, 16), True, 13),
    ("pads_21", tm.Pads, (3, 16, 16), False, 21),
    ("densenet121_lists", lambda: tm.DenseNet(feature_lists=True), (3, 64, 64), False, 13),
    ("hard_gates_13", tm.HandWrittenHardGates, (3, 16, 16), True, 13),
    ("hard_gates_21", tm.HandWrittenHardGates, (3, 16, 16), False, 21),
]


def _torch_params(model, folded: bool) -> int:
    """PyTorch's count of what the exported model carries: parameters and batch-norm running
    statistics; with batch norm folded into the conv before it, each conv gains a bias instead."""
    total = sum(p.numel() for p in model.parameters())
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not folded:
        return total + sum(2 * m.num_features for m in batchnorms)
    return (
        total
        - sum(2 * m.num_features for m in batchnorms)
        + sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is None)
    )


@pytest.mark.parametrize(
    "name, factory, shape, folded, opset", TORCH_MODELS, ids=[m[0] for m in TORCH_MODELS]
)
def test_pytorch_exports_import_with_equal_parameters_and_outputs(
    name, factory, shape, folded, opset, tmp_path
):
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
    for text in resnet_imports.values():
        assert text.count("\n") <= hand_written, text
    resnet50 = resnet_imports["resnet50"]
    # PyTorch's module names, the bottleneck written once with its width as a parameter
    assert "conv 4*filters 1x1 bias=false as conv3; batchnorm as bn3" in resnet50
    assert re.search(r"^  layer_block\d? 256 2 as layer3_0$", resnet50, re.M)
    names = {layer.name for layer in check_text(resnet50).network().layers}
    assert {"conv1", "bn1", "layer3_1_conv2", "layer4_0_downsample_0", "fc"} <= names


def _statements(text: str) -> int:
    """Statements of a spec: each `;`-separated part of a code line counts."""
    code = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return sum(len([part for part in line.split(";") if part.strip() not in ("", "}")]) for line in code)


ZOO_TWINS = [  # the plain-PyTorch model of a zoo spec's architecture (widths do not matter here)
    ("densenet121.cnn", lambda: tm.DenseNet(feature_lists=True)),  # concats of 24 inputs
    ("mobilenetv3.cnn", tm.MobileNetV3Large),
    ("shufflenetv2.cnn", lambda: tm.ShuffleNetV2((24, 116, 232, 464), (4, 8, 4), 1024, 1000)),
    ("convnext.cnn", lambda: tm.ConvNeXtAtto((8, 16, 32, 64), (3, 3, 9, 3), 1000)),
]


def _without_names(path: Path) -> None:
    """The model as an exporter that keeps no module names writes it: nodes unnamed,
    weights numbered. (PyTorch writes a tensor equal to an earlier one, a fresh batch norm's
    statistics, through an Identity node whose output keeps the parameter's name: those names
    stay, and the import must not name just those layers.)"""
    model = onnx.load(str(path))
    renamed = {tensor.name: f"w{i}" for i, tensor in enumerate(model.graph.initializer)}
    for tensor in model.graph.initializer:
        tensor.name = renamed[tensor.name]
    for node in model.graph.node:
        node.name = ""
        node.input[:] = [renamed.get(name, name) for name in node.input]
    onnx.save(model, str(path))


# Every twin with batch norm folded and kept, module names kept and not.
READABLE = [
    pytest.param(zoo, factory, fold, names, id=f"{zoo[:-4]}-{'folded' if fold else 'kept'}-{names}")
    for zoo, factory in ZOO_TWINS
    for fold in (True, False)
    for names in ("names", "no_names")
]


@pytest.mark.parametrize("zoo, factory, fold, names", READABLE)
def test_an_import_reads_like_the_hand_written_spec(zoo, factory, fold, names, tmp_path):
    """At most twice the statements of the zoo's spec of the same architecture, whether or
    not batch norm was folded and the exporter kept module names, and no line over 100
    characters."""
    path = tmp_path / "model.onnx"
    tm.export(factory(), (3, 64, 64), path, fold=fold)
    if names == "no_names":
        _without_names(path)
    text = import_model(path, "imported").spec
    hand_written = (SPECS / "zoo" / zoo).read_text()
    assert _statements(text) <= 2 * _statements(hand_written), text
    assert max(len(line) for line in text.splitlines()) <= 100, text


def test_flat_writes_one_line_per_layer(resnet_imports, tmp_path):
    path = tmp_path / "r18.onnx"
    tm.export(tm.resnet18(), (3, 64, 64), path)
    flat = import_model(path, "r18", flat=True).spec
    network = check_text(flat).network()
    layer_lines = [
        line for line in flat.splitlines() if line.startswith("  ") and not line.startswith("  input")
    ]
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


# ------------------------------------------------------------------ what cannot be imported


def _model(nodes, inputs=None, initializers=(), outputs=("y",), opset=17) -> onnx.ModelProto:
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])]
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _import(tmp_path, model_or_bytes, *extra) -> int:
    path = tmp_path / "m.onnx"
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    path.write_bytes(data)
    return main(["import", str(path), "-o", str(tmp_path / "net.cnn"), *extra])


def _conv_weight(name="w", shape=(4, 3, 3, 3)):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def test_every_unsupported_op_is_listed_with_its_nodes_and_count(tmp_path, capsys):
    model = _model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("Transpose", ["c"], ["t1"], name="swap1", perm=[0, 1, 3, 2]),
            helper.make_node("Transpose", ["c"], ["t2"], name="swap2", perm=[0, 1, 3, 2]),
            helper.make_node("Sin", ["t2"], ["s"], name="wave"),
            helper.make_node(
                "AveragePool",
                ["s"],
                ["p"],
                name="avg",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                count_include_pad=1,
            ),
            helper.make_node("Relu", ["p"], ["y"], name="act"),
        ],
        initializers=[_conv_weight()],
    )
    assert _import(tmp_path, model) == 1
    err = capsys.readouterr().err
    assert "Transpose x2 (swap1, swap2) cannot be written in cnnspec: perm=[0, 1, 3, 2]" in err
    assert "Sin x1 (wave)" in err and "[import-unsupported]" in err and "Traceback" not in err
    assert not (tmp_path / "net.cnn").exists() and not (tmp_path / "net.npz").exists()
    # an op cnnspec has, with an attribute it cannot express, says which
    model = _model(
        [
            helper.make_node(
                "AveragePool",
                ["x"],
                ["y"],
                name="avg",
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
                count_include_pad=1,
                ceil_mode=1,
            )
        ],
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    assert _import(tmp_path, model) == 1
    assert (
        "AveragePool x1 (avg) cannot be written in cnnspec: count_include_pad=1 with a ceil-mode window"
        in capsys.readouterr().err
    )
    # where ceil mode adds no window (9 = 1 + 2·4), it is the plain counted average
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 9
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 9
    assert _import(tmp_path, model) == 0
    assert "pool avg 3 stride=2 pad=1 count_pad\n" in (tmp_path / "net.cnn").read_text()
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    again, _ = build_model(cnnspec.check(tmp_path / "net.cnn").network())
    np.testing.assert_allclose(_outputs(again, x)[0], _outputs(model, x)[0], rtol=1e-5, atol=1e-6)


class _ThreeUnsupportedOps(torch.nn.Module):
    """Three ops cnnspec lacks, three of each, behind a translatable prefix and behind each
    other: Sin (no handler), Transpose of H and W (a handler that refuses the perm), Gather of
    channels (an op cnnspec folds on constants only); and a flatten whose Shape/Gather
    arithmetic reads a tensor computed after them."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(4 if i else 3, 4, 3, padding=1) for i in range(4))
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        x = torch.relu(self.convs[0](x))
        for conv in self.convs[1:]:
            x = torch.sin(x).transpose(2, 3)[:, [3, 2, 1, 0]]
            x = conv(x) + x
        return self.fc(torch.sin(x).view(x.size(0), -1))


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_import_lists_every_op_it_lacks_not_only_the_first(opset, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    tm.export(_ThreeUnsupportedOps(), (3, 8, 8), path, opset=opset)
    assert main(["import", str(path), "-o", str(tmp_path / "net.cnn")]) == 1
    err = capsys.readouterr().err
    counts = dict(re.findall(r"(\w+) x(\d+) \(", err))
    assert counts == {"Sin": "4", "Transpose": "3", "Gather": "3"}, err
    assert (
        "perm=[0, 1, 3, 2]" in err
        and "/Sin_1" in err
        and "Traceback" not in err
        and not (tmp_path / "net.cnn").exists()
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an ONNX model"),
        (b"network n {\n  input 3x8x8\n}\n", "not an ONNX model"),
        (bytes(range(256)) * 4, "not an ONNX model"),
    ],
)
def test_a_file_that_is_not_a_model_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    assert _import(tmp_path, content) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_truncated_or_corrupt_model_is_exit_2(tmp_path, capsys):
    good = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], initializers=[_conv_weight()])
    data = good.SerializeToString()
    assert _import(tmp_path, data[: len(data) // 2]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20, 3, 3], raw_data=b"")
    assert _import(tmp_path, _model([helper.make_node("Conv", ["x", "w"], ["y"])], initializers=[huge])) == 2
    assert "tensor 'w' cannot be read" in capsys.readouterr().err
    dangling = _model([helper.make_node("Relu", ["nowhere"], ["y"], name="r")])
    assert _import(tmp_path, dangling) == 2
    assert "reads 'nowhere', which no earlier node writes" in capsys.readouterr().err


def test_external_data_outside_the_model_folder_is_refused(tmp_path, capsys):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(108, np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    weight = _conv_weight()
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "432")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])], initializers=[weight])
    assert _import(folder, model) == 2
    assert "points outside the model's folder" in capsys.readouterr().err
    weight.external_data[0].value = "secret.bin"  # beside the model: allowed
    (folder / "secret.bin").write_bytes(secret.read_bytes())
    assert _import(folder, _model([helper.make_node("Conv", ["x", "w"], ["y"])], initializers=[weight])) == 0


def test_an_open_input_size_needs_input_shape(tmp_path, capsys):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], inputs, [_conv_weight()])
    assert _import(tmp_path, model) == 1
    err = capsys.readouterr().err
    assert "the input size 3xHxW is not fixed" in err and "--input-shape CxHxW" in err
    assert _import(tmp_path, model, "--input-shape", "3x16x16") == 0
    assert "input 3x16x16" in (tmp_path / "net.cnn").read_text()
    assert (
        _import(tmp_path, model, "--weights-out", str(tmp_path / "net.npz"), "--input-shape", "4x16x16") == 1
    )
    assert "--input-shape 4x16x16 does not fit the model's input 3x?x?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "inputs, message",
    [
        (
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, 8, 8]) for n in ("a", "b")],
            "the model has 2 inputs (a, b)",
        ),
        ([helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 3, 8, 8])], "input is not float32"),
        ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])], None),
    ],
)
def test_model_inputs_cnnspec_cannot_take(tmp_path, capsys, inputs, message):
    model = _model([helper.make_node("Relu", [inputs[0].name], ["y"])], inputs)
    code = _import(tmp_path, model)
    if message is None:  # a flat vector input is fine
        assert code == 0 and "input 8\n" in (tmp_path / "net.cnn").read_text()
    else:
        assert code == 1 and message in capsys.readouterr().err


def test_existing_weights_beside_the_spec_are_never_replaced_unasked(tmp_path, capsys):
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], initializers=[_conv_weight()])
    (tmp_path / "net.npz").write_bytes(b"mine")
    assert _import(tmp_path, model) == 2
    assert "--weights-out" in capsys.readouterr().err
    assert (tmp_path / "net.npz").read_bytes() == b"mine" and not (tmp_path / "net.cnn").exists()
    assert _import(tmp_path, model, "--weights-out", str(tmp_path / "net.npz")) == 0
    assert set(np.load(tmp_path / "net.npz")) == {"conv.weight"}
    # the model itself is never an output
    path = tmp_path / "m.onnx"
    assert main(["import", str(path), "-o", str(tmp_path / "n2.cnn"), "--weights-out", str(path)]) == 2
    assert onnx.load(path).graph.node[0].name == "conv"


# ------------------------------------------------------------------ Keras conversions


def _keras_like(flatten: str = "dense") -> onnx.ModelProto:
    """What tf2onnx writes for a small Keras CNN: NHWC input transposed to NCHW, `same`
    padding as auto_pad, Keras' HxWxC flatten (a Transpose before the Reshape), Dense as
    MatMul + Add, batch norm with Keras' epsilon."""
    rng = np.random.default_rng(0)
    tensors = {
        "k": rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
        "kb": rng.standard_normal(6).astype(np.float32),
        "g": rng.random(6).astype(np.float32) + 0.5,
        "b": rng.standard_normal(6).astype(np.float32),
        "m": rng.standard_normal(6).astype(np.float32) * 0.1,
        "v": rng.random(6).astype(np.float32) + 0.5,
        "w": rng.standard_normal((6 * 5 * 4, 7)).astype(np.float32),
        "wb": rng.standard_normal(7).astype(np.float32),
        "shape": np.array([-1, 6 * 5 * 4], np.int64),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node(
            "Conv", ["nchw", "k", "kb"], ["c"], name="sequential/conv2d/BiasAdd", auto_pad="SAME_UPPER"
        ),
        helper.make_node(
            "BatchNormalization",
            ["c", "g", "b", "m", "v"],
            ["n"],
            name="sequential/bn/FusedBatchNorm",
            epsilon=0.001,
        ),
        helper.make_node("Relu", ["n"], ["r"], name="sequential/conv2d/Relu"),
        helper.make_node(
            "MaxPool",
            ["r"],
            ["p"],
            name="sequential/pool/MaxPool",
            kernel_shape=[2, 2],
            strides=[2, 2],
            auto_pad="VALID",
        ),
        helper.make_node(
            "Transpose", ["p"], ["nhwc"], name="sequential/flatten/transpose", perm=[0, 2, 3, 1]
        ),
        helper.make_node("Reshape", ["nhwc", "shape"], ["f"], name="sequential/flatten/Reshape"),
    ]
    if flatten == "dense":
        nodes += [
            helper.make_node("MatMul", ["f", "w"], ["mm"], name="sequential/dense/MatMul"),
            helper.make_node("Add", ["mm", "wb"], ["a"], name="sequential/dense/BiasAdd"),
            helper.make_node("Softmax", ["a"], ["y"], name="sequential/dense/Softmax", axis=-1),
        ]
    else:
        nodes.append(helper.make_node("Relu", ["f"], ["y"], name="after"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10, 8, 3])]
    initializers = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    return _model(nodes, inputs, initializers, opset=13)


def test_a_keras_conversion_imports_with_channels_first_and_equal_outputs(tmp_path, capsys):
    model = _keras_like()
    assert _import(tmp_path, model) == 0
    assert "takes NxCxHxW: transpose images to channels first" in capsys.readouterr().err
    text = (tmp_path / "net.cnn").read_text()
    assert "input 3x10x8" in text and "conv 6 3x3 pad=same as sequential_conv2d" in text
    assert "batchnorm eps=0.001" in text and "dense 7 softmax as sequential_dense" in text
    again, _ = build_model(cnnspec.check(tmp_path / "net.cnn").network(), weights_file=tmp_path / "net.npz")
    x = np.random.default_rng(2).standard_normal((2, 10, 8, 3)).astype(np.float32)
    expected = _outputs(model, x)[0]
    np.testing.assert_allclose(_outputs(again, x.transpose(0, 3, 1, 2))[0], expected, rtol=1e-5, atol=1e-6)


def test_an_hxwxc_flatten_without_a_dense_layer_is_refused(tmp_path, capsys):
    assert _import(tmp_path, _keras_like(flatten="relu")) == 1
    assert "flattens in HxWxC order" in capsys.readouterr().err


# ------------------------------------------------------------------ hostile and odd graphs


def test_deeply_nested_branches_import_without_recursion_limits(tmp_path):
    """300 residuals each inside the next: combinators nest a few levels, the rest are
    named joins; nothing recurses per level."""
    nodes, tensor = [], "x"
    entries = []
    for i in range(300):  # going in: relu_i reads the previous level
        nodes.append(helper.make_node("Relu", [tensor], [f"r{i}"], name=f"down{i}"))
        entries.append(tensor)
        tensor = f"r{i}"
    for i in reversed(range(300)):  # coming out: each level adds its own input back
        nodes.append(helper.make_node("Add", [tensor, entries[i]], [f"a{i}"], name=f"join{i}"))
        tensor = f"a{i}"
    nodes.append(helper.make_node("Identity", [tensor], ["y"]))
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])])
    imported = import_model(_write(tmp_path, model), "deep")
    result = check_text(imported.spec)
    assert result.ok and len(result.network().layers) == 600
    again, _ = build_model(result.network())
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(_outputs(again, x)[0], _outputs(model, x)[0], rtol=1e-5, atol=1e-6)


def _write(tmp_path: Path, model: onnx.ModelProto) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_node_names_that_cnnspec_reserves_are_renamed(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="forward"),
        helper.make_node("Relu", ["c"], ["r"], name="input"),
        helper.make_node("Conv", ["r", "w2"], ["y"], name="a b/c\x1b[31m"),
    ]
    model = _model(nodes, initializers=[_conv_weight(), _conv_weight("w2", (2, 4, 1, 1))])
    imported = import_model(_write(tmp_path, model), "odd")
    names = [layer.name for layer in check_text(imported.spec).network().layers]
    assert "forward" not in names and "input" not in names and "\x1b" not in imported.spec
    assert set(imported.weights) == {f"{names[0]}.weight", f"{names[-1]}.weight"}


def test_a_network_name_must_be_a_name(tmp_path, capsys):
    model = _model([helper.make_node("Relu", ["x"], ["y"])])
    for bad in ("a-b", "input", "3d"):
        assert _import(tmp_path, model, "--name", bad) == 2
        assert "not a network name" in capsys.readouterr().err
    assert _import(tmp_path, model, "--name", "mine") == 0
    assert "network mine {" in (tmp_path / "net.cnn").read_text()


def test_a_second_output_matters_only_when_something_reads_it(tmp_path, capsys):
    pool = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    assert _import(tmp_path, _model([pool])) == 0  # the indices are written but unread
    assert "pool max 2" in (tmp_path / "net.cnn").read_text()
    (tmp_path / "net.npz").unlink()
    assert _import(tmp_path, _model([pool], outputs=("y", "idx"))) == 1
    assert "MaxPool x1 (pool) cannot be written in cnnspec: the indices output" in capsys.readouterr().err


def test_mutated_models_never_crash_the_importer(tmp_path, capsys):
    """Random damage to a real model's nodes, attributes and tensors: exit 0, 1 or 2 with
    one-line messages, never an internal error (exit 70)."""
    import random

    from cnnspec.deploy.export import build_model

    network = check_text((SPECS / "cifar.cnn").read_text(), "cifar").network("cifar")
    original, _ = build_model(network, seed=0)
    rng = random.Random(7)
    codes = []
    for trial in range(120):
        model = onnx.ModelProto.FromString(original.SerializeToString())
        nodes = model.graph.node
        node = nodes[rng.randrange(len(nodes))]
        kind = trial % 6
        if kind == 0 and node.input:
            del node.input[rng.randrange(len(node.input))]
        elif kind == 1 and node.attribute:
            attribute = node.attribute[rng.randrange(len(node.attribute))]
            if attribute.ints:
                attribute.ints[rng.randrange(len(attribute.ints))] = rng.choice([0, -1, 2**40, 3])
            else:
                attribute.i = rng.choice([0, -1, 2**40])
        elif kind == 2:
            node.op_type = rng.choice(
                ["Conv", "MaxPool", "Gemm", "Reshape", "Concat", "Add", "Resize", "Squeeze"]
            )
        elif kind == 3:
            del node.output[:]
        elif kind == 4 and model.graph.initializer:
            tensor = model.graph.initializer[rng.randrange(len(model.graph.initializer))]
            tensor.dims[:] = [rng.choice([1, 7, 2**31])] + list(tensor.dims[1:])
        else:
            data = bytearray(model.SerializeToString())
            for _ in range(5):
                data[rng.randrange(len(data))] = rng.randrange(256)
            (tmp_path / "m.onnx").write_bytes(bytes(data))
            codes.append(
                main(
                    [
                        "import",
                        str(tmp_path / "m.onnx"),
                        "-o",
                        str(tmp_path / "n.cnn"),
                        "--weights-out",
                        str(tmp_path / "n.npz"),
                    ]
                )
            )
            continue
        (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
        codes.append(
            main(
                [
                    "import",
                    str(tmp_path / "m.onnx"),
                    "-o",
                    str(tmp_path / "n.cnn"),
                    "--weights-out",
                    str(tmp_path / "n.npz"),
                ]
            )
        )
    err = capsys.readouterr().err
    assert set(codes) <= {0, 1, 2} and "internal error" not in err and "Traceback" not in err
    assert {1, 2} <= set(codes)  # the damage was seen


# model text is data: tests/test_hardening_model_text.py


def test_a_join_of_thousands_of_inputs_imports_as_wrapped_lines(tmp_path):
    """A Concat of 7,000 inputs (and a graph that lists its output twice): a spec that
    checks, its long statement continued with `\\` on lines the parser takes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="r"),
        helper.make_node("Concat", ["r"] * 7000, ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y, y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    imported = import_model(tmp_path / "m.onnx", "m")
    assert max(len(line) for line in imported.spec.splitlines()) <= 1000
    network = check_text(imported.spec).network()
    assert network.output_shapes == ((14000, 4, 4),) and len(network.outputs) == 1


@pytest.mark.parametrize("offset", ["abc", "-4", "1e3", "9" * 30, ""])
def test_an_external_data_offset_that_is_not_a_size_is_refused(offset, tmp_path, capsys):
    (tmp_path / "w.bin").write_bytes(np.ones(108, np.float32).tobytes())
    weight = _conv_weight()
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", offset)):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])], initializers=[weight])
    assert _import(tmp_path, model) == 2
    err = capsys.readouterr().err
    assert "is not a size" in err and "internal error" not in err


def test_a_per_channel_constant_product_imports_as_scale(tmp_path):
    """ConvNeXt's layer scale: x times a Cx1x1 constant is `scale` with those factors, and
    the imported spec computes what the model does; a (C,) constant on a map scales the
    last axis (ONNX broadcasting), which no cnnspec layer does: refused, not misread."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    factors = np.array([0.5, 2.0, -1.0], np.float32)
    for shape, ok in (((3, 1, 1), True), ((1, 3, 1, 1), True), ((3,), False)):
        init = numpy_helper.from_array(factors.reshape(shape), "gamma")
        graph = helper.make_graph([helper.make_node("Mul", ["x", "gamma"], ["y"])], "g", [x], [y], [init])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
        if not ok:
            with pytest.raises(cnnspec.CnnspecError, match="Mul x1"):
                import_model(tmp_path / "m.onnx", "m")
            continue
        imported = import_model(tmp_path / "m.onnx", "m")
        network = check_text(imported.spec).network()
        assert [layer.kind for layer in network.layers] == ["scale"]
        (name,) = imported.weights
        assert np.array_equal(imported.weights[name], factors)
        inputs = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
        expected = inputs * factors.reshape(3, 1, 1)
        np.savez(tmp_path / "w.npz", **imported.weights)
        ours, _ = build_model(network, weights_file=tmp_path / "w.npz")
        session = ort.InferenceSession(ours.SerializeToString(), providers=["CPUExecutionProvider"])
        assert np.allclose(session.run(None, {"input": inputs})[0], expected)


# ------------------------------------------------------------------ from PyTorch directly


def test_from_torch_gives_the_spec_weights_and_equal_outputs(tmp_path):
    model = tm.randomize_batchnorm(tm.resnet18())
    model.train()
    imported = cnnspec.from_torch(model, (3, 64, 64), "r18")
    assert model.training  # left in the mode it was in
    network = check_text(imported.spec).network()
    assert network.trainable_params == sum(p.numel() for p in model.parameters())
    assert "batchnorm" in imported.spec  # kept, with its statistics, to fine-tune
    np.savez(tmp_path / "r18.npz", **imported.weights)
    again, _ = build_model(network, weights_file=tmp_path / "r18.npz")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_outputs(again, x)[0], expected, rtol=1e-4, atol=1e-4)


def test_import_torch_factory_from_the_command_line(tmp_path, capsys, monkeypatch):
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)  # PACKAGE.MODULE is found from the current folder, as python -m finds it
    out = tmp_path / "shuffle.cnn"
    args = ["import", "torch:tests.torch_models:ShuffleNetV2", "--input-shape", "3x64x64", "-o", str(out)]
    assert main([*args, "--args", '{"classes": 3}']) == 0
    text = out.read_text()
    assert text.startswith("# Imported by cnnspec from torch:tests.torch_models:ShuffleNetV2")
    assert "shuffle 2" in text and cnnspec.check(out).network().output_shape == (3,)
    assert (tmp_path / "shuffle.npz").exists()


@pytest.mark.parametrize(
    "reference, extra, code, message",
    [
        ("torch:tests.torch_models:ShuffleNetV2", ["--args", '{"bogus": 1}'], 1, "raised TypeError"),
        ("torch:tests.torch_models:ShuffleNetV2", ["--args", "{classes: 3"], 1, "--args is not JSON"),
        ("torch:tests.no_such_module:Net", [], 1, "cannot import tests.no_such_module"),
        ("torch:tests.torch_models:NoSuchNet", [], 1, "has no 'NoSuchNet'"),
        (
            "torch:tests.torch_models:make_divisible",
            ["--args", "[3]"],
            1,
            "expected a torch.nn.Module, got int",
        ),
        ("torch:tests.torch_models", [], 1, "is not PACKAGE.MODULE:FACTORY"),
    ],
)
def test_import_torch_mistakes_are_one_line(reference, extra, code, message, tmp_path, capsys, monkeypatch):
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    out = tmp_path / "net.cnn"
    assert main(["import", reference, "--input-shape", "3x32x32", "-o", str(out), *extra]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not out.with_suffix(".npz").exists()


def test_import_torch_needs_the_input_size(tmp_path, capsys):
    assert main(["import", "torch:tests.torch_models:resnet18", "-o", str(tmp_path / "n.cnn")]) == 2
    assert "--input-shape CxHxW" in capsys.readouterr().err
