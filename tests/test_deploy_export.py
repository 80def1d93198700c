"""The checker tells the truth: every predicted shape == what onnxruntime produces ==
ONNX shape inference, on many generated networks; plus hand-worked numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import cnnspec
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.base.files import BadOutput
from cnnspec.deploy.export import build_model, save, write_model
from cnnspec.deploy.weights import build_weights
from tests.conftest import SPECS, net, slow_if
from tests.helpers import checked, inferred_shapes, network_text, run_all_layers, session

# ------------------------------------------------------------------ generated networks


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(text=network_text(), batch=st.integers(1, 3))
def test_predicted_shapes_equal_onnxruntime_and_shape_inference(text, batch):
    result = cnnspec.check_source(text, "gen.cnn")
    assume(result.ok)
    network = result.network()
    x = np.random.default_rng(0).standard_normal((batch, *network.input_shape)).astype(np.float32)
    model, weights, outputs = run_all_layers(network, x)
    shapes = inferred_shapes(model)
    for layer in network.layers:
        assert outputs[layer.name].shape == (batch, *layer.output_shape), (text, layer.name)
        assert shapes[layer.name] == layer.output_shape, (text, layer.name)
        assert np.isfinite(outputs[layer.name]).all()
    initializer_total = sum(
        math.prod(i.dims)
        for i in model.graph.initializer
        if "." in i.name and not i.name.split(".")[-1].startswith("c_")
    )
    assert initializer_total == network.total_params


# ------------------------------------------------------------------ hand-worked numbers


def test_vertical_edge_detection_gives_30s_in_the_middle():
    network = cnnspec.check(SPECS / "edge.cnn").network()
    image = np.load(SPECS / "data" / "edge6x6.npy")[None]
    assert image[0, 0, 0].tolist() == [10, 10, 10, 0, 0, 0]
    _, _, outputs = run_all_layers(network, image)
    assert outputs["output"][0, 0].tolist() == [[0, 30, 30, 0]] * 4


def test_hand_worked_max_and_average_pooling():
    x = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], np.float32).reshape(1, 1, 4, 4)
    network = checked(net("pool max 2 as m", "1x4x4"))
    assert run_all_layers(network, x)[2]["m"][0, 0].tolist() == [[9, 2], [6, 3]]
    network = checked(net("pool avg 2 as a", "1x4x4"))
    assert run_all_layers(network, x)[2]["a"][0, 0].tolist() == [[3.75, 1.25], [3.75, 2.0]]
    # Padding is left out of the average (count_include_pad=0): a corner window of 1x1 real pixel.
    network = checked(net("pool avg 2 stride=2 pad=1 as p", "1x4x4"))
    assert run_all_layers(network, x)[2]["p"][0, 0, 0, 0] == 1.0
    # count_pad counts the padding's zeros (PyTorch's default): the same corner is 1/4.
    network = checked(net("pool avg 2 stride=2 pad=1 count_pad as p", "1x4x4"))
    assert run_all_layers(network, x)[2]["p"][0, 0].tolist() == [
        [0.25, 1.25, 0.25],
        [0.75, 3.75, 1.0],
        [1.25, 1.75, 0.5],
    ]


def test_fresh_weights_start_where_the_kind_says():
    import torch

    network = checked(net("conv 4 3x3\nscale init=1e-6\nprelu\nprelu shared", "1x6x6"))
    arrays = build_weights(network, seed=0).arrays
    assert (arrays["scale1.weight"] == np.float32(1e-6)).all() and arrays["scale1.weight"].shape == (4,)
    assert np.array_equal(arrays["prelu1.weight"], torch.nn.PReLU(4).weight.detach().numpy())
    assert np.array_equal(arrays["prelu2.weight"], torch.nn.PReLU().weight.detach().numpy())
    _, _, outputs = run_all_layers(network, -np.ones((1, 1, 6, 6), np.float32))
    np.testing.assert_allclose(
        outputs["prelu1"], 0.25 * np.minimum(outputs["scale1"], 0) + np.maximum(outputs["scale1"], 0)
    )


@pytest.mark.parametrize("opset", [13, 17])  # plain ops below 17, LayerNormalization from it
def test_hand_worked_layernorm_over_the_channels(opset):
    """Channels (1, 2, 3) at a position: mean 2, variance 2/3, so (x - 2)/sqrt(2/3 + eps)."""
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1) * np.ones((1, 3, 2, 2), np.float32)
    x[0, :, 1, 1] = [5, 5, 5]  # a position of equal channels normalises to 0
    network = checked(net("layernorm eps=1e-6 as ln", "3x2x2"))
    _, _, outputs = run_all_layers(network, x, opset=opset)
    expected = (np.array([1, 2, 3]) - 2) / np.sqrt(2 / 3 + 1e-6)
    np.testing.assert_allclose(outputs["ln"][0, :, 0, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(outputs["ln"][0, :, 1, 1], 0, atol=1e-6)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_deconv_same_is_the_gradient_of_a_same_conv(kernel):
    """A transposed conv is the gradient of the forward conv with the same weights. With
    pad=same it must be the gradient of a stride-2 `same` conv (the odd pad at the end, as
    TensorFlow and Keras pad): the independent check, computed by PyTorch's autograd."""
    import torch

    network = checked(net(f"deconv 2 {kernel}x{kernel} stride=2 pad=same bias=false as d", "3x4x4"))
    assert network.output_shape == (2, 8, 8)
    g = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    _, weights, outputs = run_all_layers(network, g)
    w = torch.from_numpy(weights.arrays["d.weight"])  # (3, 2, k, k): conv from 2 to 3 channels
    x = torch.zeros(1, 2, 8, 8, requires_grad=True)
    total = max(kernel - 2, 0)  # the forward conv's same padding of 8 at stride 2
    padded = torch.nn.functional.pad(x, (total // 2, total - total // 2) * 2)
    y = torch.nn.functional.conv2d(padded, w, stride=2)
    (gradient,) = torch.autograd.grad((y * torch.from_numpy(g)).sum(), x)
    np.testing.assert_allclose(outputs["d"], gradient.numpy(), rtol=1e-5, atol=1e-5)


def test_hand_worked_pads():
    x = np.array([[1, 2, 3]], np.float32).reshape(1, 1, 1, 3)
    network = checked(net("pad (0,0,2,1) as z\npad (0,0,2,1) edge from input as e\n"
                          "pad (0,0,2,1) reflect from input as r\noutput z e r", "1x1x3"))  # fmt: skip
    _, _, outputs = run_all_layers(network, x)
    assert outputs["z"][0, 0, 0].tolist() == [0, 0, 1, 2, 3, 0]
    assert outputs["e"][0, 0, 0].tolist() == [1, 1, 1, 2, 3, 3]  # the border repeated
    assert outputs["r"][0, 0, 0].tolist() == [3, 2, 1, 2, 3, 2]  # mirrored, the border not repeated


def test_hand_worked_channel_shuffle_slice_and_split():
    """Channel c holds the value c, so each output lists which channels it took, in order."""
    x = np.broadcast_to(np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1), (1, 6, 2, 2)).copy()
    network = checked(
        net("shuffle 2 as two\nshuffle 3 from input as three\nslice 1:-1 from input as mid\n"
            "split (2, 4) from input as low high\noutput two three mid low high", "6x2x2")
    )  # fmt: skip
    _, _, outputs = run_all_layers(network, x)
    taken = {name: outputs[name][0, :, 0, 0].tolist() for name in ("two", "three", "mid", "low", "high")}
    # groups of 3 (0 1 2 | 3 4 5) interleaved: 0 3 1 4 2 5; groups of 2 (0 1 | 2 3 | 4 5): 0 2 4 1 3 5
    assert taken == {
        "two": [0, 3, 1, 4, 2, 5],
        "three": [0, 2, 4, 1, 3, 5],
        "mid": [1, 2, 3, 4],
        "low": [0, 1],
        "high": [2, 3, 4, 5],
    }


def test_dense_with_known_weights(tmp_path: Path):
    network = checked(net("dense 2 as d", "3"))
    weights = {
        "d.weight": np.array([[1, 2, 3], [0, -1, 1]], np.float32),
        "d.bias": np.array([0.5, -1], np.float32),
    }
    np.savez(tmp_path / "w.npz", **weights)
    _, plan, outputs = run_all_layers(
        network, np.array([[1, 1, 2]], np.float32), weights_file=tmp_path / "w.npz"
    )
    assert outputs["d"].tolist() == [[1 + 2 + 6 + 0.5, 0 - 1 + 2 - 1]]
    assert {p.source for p in plan.plan} == {"loaded"}


def test_fold_bn_gives_the_same_outputs(tmp_path: Path):
    network = checked(net("conv 4 3x3 pad=same\nbatchnorm\nrelu\nflatten\ndense 3\nbatchnorm", "2x6x6"))
    rng = np.random.default_rng(1)
    model, weights = build_model(network, seed=3)
    arrays = dict(weights.arrays)
    for name in ("bn1", "bn2"):  # non-trivial statistics so that folding has work to do
        n = arrays[f"{name}.weight"].shape[0]
        arrays[f"{name}.weight"] = rng.uniform(0.5, 2, n).astype(np.float32)
        arrays[f"{name}.bias"] = rng.standard_normal(n).astype(np.float32)
        arrays[f"{name}.running_mean"] = rng.standard_normal(n).astype(np.float32)
        arrays[f"{name}.running_var"] = rng.uniform(0.5, 2, n).astype(np.float32)
    np.savez(tmp_path / "w.npz", **arrays)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    plain, _ = build_model(network, weights_file=tmp_path / "w.npz")
    folded, _ = build_model(network, weights_file=tmp_path / "w.npz", fold_bn=True)
    assert "BatchNormalization" in {n.op_type for n in plain.graph.node}
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    a = session(plain).run(None, {"input": x})[0]
    b = session(folded).run(None, {"input": x})[0]
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_model_names_metadata_and_dynamic_batch():
    network = cnnspec.check(SPECS / "lenet5.cnn").network()
    model, _ = build_model(network, spec_text=(SPECS / "lenet5.cnn").read_text())
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert graph.input[0].name == "input" and graph.output[0].name == "output"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    names = {i.name for i in graph.initializer}
    assert {"conv1.weight", "conv1.bias", "dense3.weight", "dense3.bias"} <= names
    conv1 = next(n for n in graph.node if n.name == "conv1")
    assert conv1.doc_string.endswith(":4: conv 6 5x5 relu")
    props = {p.key: p.value for p in model.metadata_props}
    assert props["network"] == "lenet5" and "network lenet5" in props["spec"] and props["cnnspec_version"]
    assert model.opset_import[0].version == 17
    for batch in (1, 5):
        out = session(model).run(None, {"input": np.zeros((batch, 1, 32, 32), np.float32)})[0]
        assert out.shape == (batch, 10)


def test_batchnorm_names_follow_pytorch():
    network = checked(net("conv 4 3x3\nbatchnorm", "1x8x8"))
    model, _ = build_model(network)
    assert {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"} <= {
        i.name for i in model.graph.initializer
    }


def test_seeded_weights_are_deterministic_and_he_or_glorot():
    network = checked(net("conv 64 3x3 relu\nconv 64 3x3\nflatten\ndense 10 softmax", "16x12x12"))
    _, a = build_model(network, seed=7)
    _, b = build_model(network, seed=7)
    _, c = build_model(network, seed=8)
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    assert not np.array_equal(a.arrays["conv1.weight"], c.arrays["conv1.weight"])
    he_std = math.sqrt(2 / (16 * 9))
    assert abs(a.arrays["conv1.weight"].std() - he_std) < 0.05 * he_std
    glorot_limit = math.sqrt(6 / (64 * 9 + 64 * 9))
    assert np.abs(a.arrays["conv2.weight"]).max() <= glorot_limit
    assert not a.arrays["conv1.bias"].any()


def test_gelu_is_decomposed_below_opset_20_and_native_from_20():
    network = checked(net("gelu", "4"))
    x = np.linspace(-3, 3, 4, dtype=np.float32).reshape(1, 4)
    old, _ = build_model(network, opset=17)
    new, _ = build_model(network, opset=20)
    assert "Gelu" not in {n.op_type for n in old.graph.node} and "Gelu" in {n.op_type for n in new.graph.node}
    expected = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(session(old).run(None, {"input": x})[0], expected, atol=1e-6)
    np.testing.assert_allclose(session(new).run(None, {"input": x})[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(name, marks=slow_if(name == "vgg16.cnn"))
        for name in sorted(p.name for p in SPECS.glob("*.cnn") if not p.stem.startswith("mistakes"))
    ],
)
def test_every_example_exports_and_runs(spec):
    result = cnnspec.check(SPECS / spec)
    for network in result.networks:
        model, _ = build_model(network)
        onnx.checker.check_model(model, full_check=True)
        batch = 2 if network.total_params < 10_000_000 else 1
        out = session(model).run(None, {"input": np.zeros((batch, *network.input_shape), np.float32)})[0]
        assert out.shape == (batch, *network.output_shape)


# ------------------------------------------------------------------ weights errors and files


def _save(tmp_path, **arrays):
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    return path


def test_weights_missing_extra_and_misshapen_are_all_named(tmp_path: Path):
    network = checked(net("dense 2 as d", "3"))
    path = _save(
        tmp_path, **{"d.weight": np.zeros((3, 2), np.float32), "other.weight": np.zeros(1, np.float32)}
    )
    with pytest.raises(CnnspecError) as caught:
        build_model(network, weights_file=path)
    messages = [d.message for d in caught.value.diagnostics]
    assert {d.code for d in caught.value.diagnostics} == {"weights-file"}
    assert "tensor 'd.weight' is 3x2 in the weights, but d needs 2x3" in messages
    assert "the weights have no tensor 'd.bias' (needed: 2)" in messages
    assert "the weights have a tensor 'other.weight' that no layer of 't' uses" in messages


def test_weights_from_another_onnx_model(tmp_path: Path):
    network = cnnspec.check(SPECS / "lenet5.cnn").network()
    model, first = build_model(network, seed=1)
    save(model, tmp_path / "a.onnx")
    again, second = build_model(network, seed=99, weights_file=tmp_path / "a.onnx")
    assert all(np.array_equal(first.arrays[k], second.arrays[k]) for k in first.arrays)
    loaded = {i.name: numpy_helper.to_array(i) for i in again.graph.initializer}
    assert np.array_equal(loaded["conv1.weight"], first.arrays["conv1.weight"])


@pytest.mark.parametrize("content", [b"", b"not an npz at all", b"PK\x03\x04broken zip"])
def test_unreadable_weights_file(tmp_path: Path, content: bytes):
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    with pytest.raises(CnnspecError) as caught:
        build_model(checked(net("dense 2", "3")), weights_file=path)
    assert caught.value.diagnostics[0].code == "weights-file"


def test_save_is_atomic_and_never_overwrites_an_input(tmp_path: Path):
    network = checked(net("dense 2", "3"))
    model, _ = build_model(network)
    spec = tmp_path / "net.cnn"
    spec.write_text("x")
    with pytest.raises(BadOutput):
        save(model, spec, protect=(spec,))
    assert spec.read_text() == "x"
    save(model, tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)


def test_large_models_stream_their_weights_beside_the_model(tmp_path: Path, monkeypatch):
    import cnnspec.deploy.export as export

    monkeypatch.setattr(export, "EXTERNAL_DATA_THRESHOLD", 1000)  # pretend 2 GB is small
    network = checked(net("dense 300", "100"))
    weights = build_weights(network, seed=0)
    with pytest.raises(CnnspecError):  # too large to hold in memory as one protobuf message
        build_model(network)
    written = write_model(network, weights, tmp_path / "big.onnx")
    data = written[1]
    assert written[0].name == "big.onnx" and re.fullmatch(r"big\.onnx\.[0-9a-f]{16}\.data", data.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", data.name]
    assert data.stat().st_size == 300 * 100 * 4 + 300 * 4
    onnx.checker.check_model(str(tmp_path / "big.onnx"), full_check=True)
    out = ort.InferenceSession(str(tmp_path / "big.onnx")).run(
        None, {"input": np.ones((1, 100), np.float32)}
    )[0]
    expected = (
        np.ones((1, 100), np.float32) @ weights.arrays["dense1.weight"].T + weights.arrays["dense1.bias"]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_run_exports_large_models_to_a_scratch_file(tmp_path: Path, monkeypatch, capsys):
    import cnnspec.deploy.export as export
    from cnnspec.cli import main

    monkeypatch.setattr(export, "EXTERNAL_DATA_THRESHOLD", 1000)
    spec = tmp_path / "big.cnn"
    spec.write_text(net("dense 300", "100"))
    assert main(["run", str(spec)]) == 0
    assert "output: 1x300" in capsys.readouterr().out
