"""1-D and 3-D networks (issue 21): the rank comes from the input, sizes are read per axis,
and every stage (check, ONNX, onnxruntime, PyTorch, import, inputs) works in every rank.
Checked against ONNX's own conformance node cases, PyTorch's modules and published totals."""

from __future__ import annotations

import importlib
import math
import wave

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.base.diagnostics import CODES
from cnnspec.cli import main
from cnnspec.deploy.export import build_model
from tests.conftest import SPECS, check_text, net
from tests.helpers import cli, inferred_shapes, ranked_network_text, run_all_layers, session

ZOO = SPECS / "zoo"


# ------------------------------------------------------------------ the arithmetic per axis


def test_a_1d_network_by_hand():
    # floor((n + 2p - d(k-1) - 1) / s) + 1 along the one axis
    network = check_text(
        net("conv 8 5 stride=2 pad=1\npool max 3 stride=2\nconv 4 3 dilation=2", "2x101")
    ).network()
    conv1, pool1, conv2 = network.layers
    assert conv1.output_shape == (8, (101 + 2 - 5) // 2 + 1)  # 50
    assert pool1.output_shape == (8, (50 - 3) // 2 + 1)  # 24
    assert conv2.output_shape == (4, (24 - 5) // 1 + 1)  # 20
    assert conv1.params == 8 * 2 * 5 + 8 and conv2.params == 4 * 8 * 3 + 4
    assert conv1.macs == 8 * 50 * 2 * 5 and conv2.macs == 4 * 20 * 8 * 3
    # receptive field and jump along the axis: 5; 5 + 2*2 = 9 (jump 4); 9 + 4*4 = 25
    assert [layer.receptive_field for layer in network.layers] == [(5,), (9,), (25,)]
    assert [layer.jump for layer in network.layers] == [(2,), (4,), (4,)]


def test_a_3d_network_by_hand_with_sizes_per_axis():
    spec = net(
        "conv 4 1x3x3 stride=1x2x2 pad=0x1x1\nconv 6 3x1x1 pad=(1,0,0,0,0,0)\npool avg 2x2x2", "3x8x16x16"
    )
    network = check_text(spec).network()
    conv1, conv2, pool = network.layers
    assert conv1.output_shape == (4, 8, 8, 8)
    assert conv2.output_shape == (6, 8 + 1 - 3 + 1, 8, 8)  # one frame of padding before, none after
    assert pool.output_shape == (6, 3, 4, 4)
    assert conv1.tensors["weight"] == (4, 3, 1, 3, 3)
    assert conv1.macs == 4 * (8 * 8 * 8) * 3 * 9
    assert conv2.receptive_field == (3, 3, 3) and conv2.jump == (1, 2, 2)
    assert pool.receptive_field == (4, 5, 5)


@pytest.mark.parametrize(
    "shape, line, words",
    [
        ("1x100", "conv 8 3x3", "gives 2 axes, but this network has 1 (length)"),
        ("3x8x32x32", "pool max 2x2", "the input 3x8x32x32 is CxDxHxW"),
        ("3x8x32x32", "conv 8 3 stride=1x2", "gives 2 axes, but this network has 3"),
        ("3x8x32x32", "upsample 2x2", "gives 2 axes"),
        ("3x32x32", "pad (1,1,1,1,1,1)", "gives 6 values; this network's 2 axes (height x width) take 2"),
        ("1x32", "conv 4 3 pad=(1,1,1)", "gives 3 values; this network's 1 axis (length) takes 2"),
        ("1x100", "deconv 8 2x2", "gives 2 axes"),
    ],
)
def test_a_size_with_the_wrong_number_of_axes_says_how_many_and_why(shape, line, words):
    result = check_text(net(line, shape))
    assert [d.code for d in result.errors] == ["invalid-argument"]
    assert words in result.errors[0].message


def test_one_block_serves_networks_of_every_rank():
    spec = (
        "block unit(c, k=3) {\n  residual { conv c k pad=same; batchnorm; relu; conv c k pad=same }\n"
        "  relu\n  pool max 2\n}\n"
        "network a {\n  input 4x32\n  unit 4\n}\nnetwork b {\n  input 4x32x32\n  unit 4 5\n}\n"
        "network c {\n  input 4x8x32x32\n  unit 4\n}\n"
    )
    result = check_text(spec)
    assert result.ok, [d.message for d in result.errors]
    assert [n.output_shape for n in result.networks] == [(4, 16), (4, 16, 16), (4, 4, 16, 16)]
    assert [n.layers[0].tensors["weight"] for n in result.networks] == [
        (4, 4, 3),
        (4, 4, 5, 5),
        (4, 4, 3, 3, 3),
    ]


def test_a_join_of_a_map_and_a_vector_is_an_error_in_every_rank():
    for shape in ("4x16", "4x8x8", "4x4x8x8"):
        result = check_text(net("conv 4 1 as a\nflatten as f\nadd a f", shape))
        assert [d.code for d in result.errors] == ["merge-shape-mismatch"]


def test_a_spatial_error_names_the_axis_and_its_arithmetic():
    result = check_text(net("conv 4 3x5x5", "1x2x16x16"))
    message = result.errors[0].message
    assert "along the depth (2 + 0 padding)" in message
    assert "floor((2 + 0 - 3) / 1) + 1 = 0" in message
    warning = check_text(net("pool max 2", "1x5")).diagnostics[0]
    assert warning.code == "dropped-pixels" and "last 1 position of the 1x5 input is" in warning.message


def test_uneven_same_padding_names_each_axis_and_its_sides():
    (d,) = check_text(net("conv 4 2x3x4 pad=same", "1x6x6x6")).diagnostics
    assert d.code == "asymmetric-same"
    assert "front/back 0/1, top/bottom 1/1, left/right 1/2" in d.message and "the extra one" in d.message
    (d,) = check_text(net("conv 4 4 pad=same", "1x33")).diagnostics
    assert "begin/end 1/2" in d.message


def test_hover_draw_and_json_speak_every_axis(tmp_path, capsys):
    from cnnspec.views.lsp import analyse, hover

    text = net("conv 4 3x5x5 pad=1x2x2 as a\npool max 1x2x2", "2x4x8x8")
    analysis = analyse(text, str(tmp_path / "v.cnn"))
    shown = hover(analysis, 2, 4)  # (0-based: the conv line)
    assert "2x4x8x8 → **4x4x8x8**" in shown and "receptive field 3x5x5" in shown
    spec = tmp_path / "v.cnn"
    spec.write_text(text)
    code, out, _ = cli(capsys, "check", str(spec), "--format", "json")
    layer = __import__("json").loads(out)["networks"][0]["layers"][1]
    assert layer["output"] == [4, 4, 4, 4] and layer["receptive_field"] == [3, 6, 6]
    code, _, err = cli(capsys, "draw", str(spec), "-o", str(tmp_path / "v.svg"))
    assert code == 0, err
    assert "4x4x4x4" in (tmp_path / "v.svg").read_text()


# ------------------------------------------------------------------ ONNX's own node cases


def _onnx_cases():
    """ONNX's conformance node cases of Conv, ConvTranspose, MaxPool and AveragePool (the
    onnx package builds them, with inputs and reference outputs, when these modules load)."""
    import onnx.backend.test.case.node as node_cases

    for module in ("conv", "convtranspose", "maxpool", "averagepool"):
        importlib.import_module(f"onnx.backend.test.case.node.{module}")
    return [case for case in node_cases._NodeTestCases if case.model.graph.node[0].op_type in KINDS_OF]


KINDS_OF = {"Conv": "conv", "ConvTranspose": "deconv", "MaxPool": "pool max", "AveragePool": "pool avg"}


def _spec_line(node, inputs) -> str | None:
    """The case's node as one cnnspec line (`as layer`), or None where cnnspec has no words
    for an attribute (pooling dilations, output_shape, SAME_LOWER on a transposed conv, ...)."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = inputs[0]
    rank = x.ndim - 2
    if x.dtype != np.float32 or len(node.output) > 1 or attrs.get("storage_order"):
        return None
    if node.op_type in ("MaxPool", "AveragePool") and set(attrs.get("dilations", [1])) != {1}:
        return None
    if node.op_type == "ConvTranspose" and ({"output_shape", "auto_pad"} & set(attrs)):
        return None
    if attrs.get("count_include_pad") and attrs.get("ceil_mode"):  # refused: runtimes disagree
        return None
    kernel = attrs.get("kernel_shape") or list(inputs[1].shape[2:])
    parts = [KINDS_OF[node.op_type]]
    if node.op_type == "Conv":
        parts.append(str(inputs[1].shape[0]))
    if node.op_type == "ConvTranspose":
        parts.append(str(inputs[1].shape[1] * attrs.get("group", 1)))
    parts.append("x".join(map(str, kernel)))
    if node.op_type in ("MaxPool", "AveragePool"):  # ONNX's stride defaults to 1, cnnspec's to the window
        attrs.setdefault("strides", [1] * rank)
    for key, word in (("strides", "stride"), ("dilations", "dilation"), ("output_padding", "output_pad")):
        if key in attrs:
            parts.append(f"{word}=" + "x".join(map(str, attrs[key])))
    parts.append(_pads(attrs, x.shape[2:], kernel, rank))
    if attrs.get("group", 1) != 1:
        parts.append(f"groups={attrs['group']}")
    if attrs.get("ceil_mode"):
        parts.append("ceil")
    if attrs.get("count_include_pad"):
        parts.append("count_pad")
    if node.op_type in ("Conv", "ConvTranspose") and len(inputs) < 3:
        parts.append("bias=false")
    return " ".join(p for p in parts if p) + " as layer"


def _pads(attrs, sizes, kernel, rank) -> str:
    auto = attrs.get("auto_pad", b"NOTSET").decode()
    if auto == "SAME_UPPER":
        return "pad=same"
    if auto == "SAME_LOWER":  # written out: the larger half at the beginning
        strides, pads = attrs.get("strides", [1] * rank), []
        for n, k, s in zip(sizes, kernel, strides):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total - total // 2, total // 2]
        return "pad=(" + ",".join(map(str, pads)) + ")"
    onnx_pads = attrs.get("pads", [0] * 2 * rank)
    ours = [v for axis in range(rank) for v in (onnx_pads[axis], onnx_pads[rank + axis])]
    return (
        "pad=(" + ",".join(map(str, ours)) + ")"
        if any(ours) and rank > 1
        else (f"pad=({ours[0]},{ours[1]})" if any(ours) else "")
    )


def test_onnx_conformance_cases_are_reproduced_in_every_rank(tmp_path):
    reproduced: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for case in _onnx_cases():
        node = case.model.graph.node[0]
        inputs, (expected,) = case.data_sets[0][0], case.data_sets[0][1][:1]
        line = _spec_line(node, inputs)
        if line is None:
            continue
        x = inputs[0]
        shape = "x".join(map(str, x.shape[1:]))
        result = cnnspec.check_source(net(line, shape), f"{case.name}.cnn")
        assert result.ok, (case.name, line, [d.message for d in result.errors])
        network = result.network()
        assert network.output_shape == expected.shape[1:], (case.name, line)
        arrays = {}
        if node.op_type in ("Conv", "ConvTranspose"):
            arrays["layer.weight"] = inputs[1]
            if len(inputs) > 2:
                arrays["layer.bias"] = inputs[2]
        weights = tmp_path / f"{case.name}.npz"
        np.savez(weights, **arrays)
        model, _ = build_model(network, weights_file=weights if arrays else None)
        got = session(model).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"{case.name}: {line}")
        reproduced[x.ndim - 2].append(case.name)
    assert {"test_convtranspose_1d", "test_maxpool_1d_default", "test_averagepool_1d_default"} <= set(
        reproduced[1]
    )
    assert {"test_convtranspose_3d", "test_maxpool_3d_default", "test_averagepool_3d_default"} <= set(
        reproduced[3]
    )
    assert len(reproduced[2]) >= 30  # and the 2-D ones next to them


# ------------------------------------------------------------------ every kind in every rank


EVERY_KIND = """conv 4 3 pad=1 as a
deconv 4 3 stride=2 pad=same relu
pool max 2 as p
add a p
concat a p
pad (1,0) reflect
pad 1 edge
conv 8 3 stride=2
batchnorm
layernorm eps=1e-6
scale init=0.5
prelu
droppath 0.2
split (3, 5) as s1 s2
concat s2 s1
shuffle 4
slice 1:-1
conv 8 1
upsample 2 bilinear
pool avg 3 stride=1 pad=1 count_pad
multiply { globalpool max; conv 8 1 hardsigmoid }
globalpool avg
flatten
dense 3 softmax"""


def _per_rank(text: str, rank: int) -> str:
    """The 1-D spec with its explicit pads written for `rank` axes."""
    return text.replace("pad (1,0)", "pad (" + ",".join(["1", "0"] * rank) + ")")


@pytest.mark.train
@pytest.mark.parametrize("shape", ["2x12", "2x12x10", "2x6x12x10"])
def test_every_kind_runs_alike_in_onnxruntime_and_pytorch_in_every_rank(shape):
    import torch

    from cnnspec.training.modules import build_module

    rank = shape.count("x")
    network = check_text(net(_per_rank(EVERY_KIND, rank), shape)).network()
    assert all(len(layer.output_shape) in (1, rank + 1) for layer in network.layers)
    model, weights = build_model(network, seed=3)
    x = np.random.default_rng(1).standard_normal((2, *network.input_shape)).astype(np.float32)
    _, _, outputs = run_all_layers(network, x, seed=3)
    for layer in network.layers:  # predicted shapes are what onnxruntime computes
        assert outputs[layer.name].shape == (2, *layer.output_shape), layer.name
    module = build_module(network, weights.arrays)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session(model).run(None, {"input": x})[0], expected, rtol=1e-4, atol=1e-5)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(data=st.data(), rank=st.sampled_from([1, 3]))
def test_generated_1d_and_3d_networks_are_predicted_as_onnxruntime_runs_them(data, rank):
    """Sizes written per axis or once, every pad form: a network that checks runs in
    onnxruntime with the predicted shape on every layer (and ONNX's shape inference agrees);
    one that does not is refused with a diagnostic, never an exception."""
    text = data.draw(ranked_network_text(rank))
    result = cnnspec.check_source(text, "gen.cnn")
    if not result.ok:
        assert all(d.code in CODES for d in result.errors), text
        return
    network = result.network()
    x = np.random.default_rng(0).standard_normal((2, *network.input_shape)).astype(np.float32)
    model, _, outputs = run_all_layers(network, x)
    shapes = inferred_shapes(model)
    for layer in network.layers:
        assert outputs[layer.name].shape == (2, *layer.output_shape), (text, layer.name)
        assert shapes[layer.name] == layer.output_shape, (text, layer.name)


# ------------------------------------------------------------------ the zoo against PyTorch


def _torch_zoo():
    from tests import torch_models as tm

    return [
        ("audio.cnn", "m5", tm.M5, (1, 2000)),
        ("audio.cnn", "tcn", tm.TCN, (1, 300)),
        ("video.cnn", "r3d_18", lambda: tm.VideoResNet(False), (3, 4, 32, 32)),
        ("video.cnn", "r2plus1d_18", lambda: tm.VideoResNet(True), (3, 4, 32, 32)),
        ("unet3d.cnn", "unet3d_small", tm.UNet3D, (1, 8, 16, 16)),
    ]


ZOO_NETWORKS = [("audio.cnn", "m5"), ("audio.cnn", "tcn"), ("video.cnn", "r3d_18"),
                ("video.cnn", "r2plus1d_18"), ("unet3d.cnn", "unet3d_small")]  # fmt: skip


def _torch_counts(model, shape) -> tuple[int, int, int]:
    """(parameters, batch-norm statistics, MACs as torchinfo counts them) of a PyTorch
    model, the MACs from its modules' output shapes on the meta device (nothing computed)."""
    import torch
    from torch import nn

    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
            per_output = math.prod(module.kernel_size) * module.in_channels // module.groups
            macs += output[0].numel() * per_output
        elif isinstance(module, nn.modules.conv._ConvNd):  # a transposed conv: per input element
            macs += (
                inputs[0][0].numel() * math.prod(module.kernel_size) * module.out_channels // module.groups
            )
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.to("meta")(torch.empty(1, *shape, device="meta"))
    for hook in hooks:
        hook.remove()
    params = sum(p.numel() for p in model.parameters())
    stats = sum(
        b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))
    )
    return params, stats, macs


@pytest.mark.train
@pytest.mark.parametrize("spec, name", ZOO_NETWORKS, ids=[n for _, n in ZOO_NETWORKS])
def test_zoo_totals_and_macs_equal_pytorchs_own_modules(spec, name):
    network = cnnspec.check(ZOO / spec, name).network(name)
    factory = {n: f for _, n, f, _ in _torch_zoo()}[name]
    params, stats, macs = _torch_counts(factory(), network.input_shape)
    assert (network.trainable_params, network.non_trainable_params) == (params, stats)
    assert network.macs == macs


def test_video_resnets_match_the_published_totals():
    # torchvision's r3d_18 and r2plus1d_18, batch-norm statistics counted as Keras counts them
    for name, total, gmacs in (("r3d_18", 33_381_072, 40.70), ("r2plus1d_18", 31_530_675, 40.52)):
        network = cnnspec.check(ZOO / "video.cnn", name).network(name)
        assert network.total_params == total
        assert round(network.macs / 1e9, 2) == gmacs  # torchvision's table ("GFLOPS": MACs)


@pytest.mark.train
@pytest.mark.parametrize("spec, name", ZOO_NETWORKS, ids=[n for _, n in ZOO_NETWORKS])
def test_zoo_imports_from_pytorch_exports_with_equal_totals_and_outputs(spec, name, tmp_path):
    import torch

    from tests import torch_models as tm

    _, _, factory, shape = next(z for z in _torch_zoo() if z[1] == name)
    torch.manual_seed(0)
    model = tm.randomize_batchnorm(factory()).eval()
    path = tmp_path / f"{name}.onnx"
    tm.export(model, shape, path, fold=False)
    imported = tmp_path / "net.cnn"
    assert main(["import", str(path), "-o", str(imported)]) == 0
    network = cnnspec.check(imported).network()
    written = cnnspec.check(ZOO / spec, name).network(name)
    assert (network.trainable_params, network.total_params) == (
        written.trainable_params,
        written.total_params,
    )
    again = tmp_path / "again.onnx"
    assert main(["export", str(imported), "--weights", str(tmp_path / "net.npz"), "-o", str(again)]) == 0
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    import onnxruntime as ort

    got = ort.InferenceSession(str(again), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec, name", ZOO_NETWORKS, ids=[n for _, n in ZOO_NETWORKS])
def test_zoo_shapes_equal_onnxruntime_on_every_layer_at_a_small_input(spec, name):
    small = dict((n, s) for n, s in (("m5", "1x2000"), ("tcn", "1x300"), ("r3d_18", "3x4x32x32"),
                                     ("r2plus1d_18", "3x4x32x32"), ("unet3d_small", "1x8x16x16")))  # fmt: skip
    text = (ZOO / spec).read_text() + f"\nnetwork small from {name} {{\n  input {small[name]}\n}}\n"
    network = cnnspec.check_source(text, str(ZOO / spec), "small").network("small")
    x = np.random.default_rng(0).standard_normal((1, *network.input_shape)).astype(np.float32)
    _, _, outputs = run_all_layers(network, x)
    for layer in network.layers:
        assert outputs[layer.name].shape == (1, *layer.output_shape), layer.name


# ------------------------------------------------------------------ inputs


def _write_wav(path, samples: np.ndarray, rate: int = 8000) -> None:
    """samples: C x L in [-1, 1), written as 16-bit PCM."""
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(samples.shape[0])
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes((samples.T * 32768).astype("<i2").tobytes())


def test_run_reads_a_wav_one_channel_per_input_channel(tmp_path, capsys):
    spec = tmp_path / "a.cnn"
    spec.write_text(net("conv 1 1 bias=false weights=[[[1],[0]]] as pick", "2x64"))
    samples = np.stack([np.linspace(-0.5, 0.5, 64), np.zeros(64)])
    _write_wav(tmp_path / "clip.wav", samples)
    out = tmp_path / "y.npy"
    code, _, err = cli(capsys, "run", str(spec), "--input", str(tmp_path / "clip.wav"), "-o", str(out))
    assert code == 0, err
    np.testing.assert_allclose(np.load(out)[0, 0], samples[0], atol=1 / 32768)


def test_a_wav_of_another_length_is_refused_or_resampled_when_asked(tmp_path, capsys):
    spec = tmp_path / "a.cnn"
    spec.write_text(net("globalpool avg", "1x50"))
    _write_wav(tmp_path / "clip.wav", np.full((1, 100), 0.25))
    code, _, err = cli(capsys, "run", str(spec), "--input", str(tmp_path / "clip.wav"))
    assert code == 1 and "100 samples (0.0125 s at 8,000 Hz), the network takes 50" in err
    assert "--resample" in err
    out = tmp_path / "y.npy"
    code, _, err = cli(
        capsys, "run", str(spec), "--input", str(tmp_path / "clip.wav"), "--resample", "-o", str(out)
    )
    assert code == 0 and "resampled from 100 to 50 samples (8,000 Hz to 4,000 Hz" in err
    np.testing.assert_allclose(np.load(out).reshape(-1), [0.25], atol=1e-4)
    _write_wav(tmp_path / "stereo.wav", np.zeros((2, 50)))
    code, _, err = cli(capsys, "run", str(spec), "--input", str(tmp_path / "stereo.wav"))
    assert code == 1 and "the clip has 2 channels, the network takes 1" in err


def test_an_empty_or_truncated_wav_is_a_one_line_error(tmp_path, capsys):
    spec = tmp_path / "a.cnn"
    spec.write_text(net("globalpool avg", "1x50"))
    _write_wav(tmp_path / "empty.wav", np.zeros((1, 0)))
    code, _, err = cli(capsys, "run", str(spec), "--input", str(tmp_path / "empty.wav"), "--resample")
    assert code == 1 and "the clip holds no samples" in err
    (tmp_path / "cut.wav").write_bytes(b"RIFF")
    code, _, err = cli(capsys, "run", str(spec), "--input", str(tmp_path / "cut.wav"))
    assert code == 1 and "not a readable PCM WAV file (" in err and "()" not in err


def test_run_reads_a_folder_of_frames_as_a_volume(tmp_path, capsys):
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):  # frame i is grey level 50 * i
        Image.fromarray(np.full((8, 8), 50 * i, np.uint8)).save(frames / f"{i:03d}.png")
    spec = tmp_path / "v.cnn"
    spec.write_text(net("pool avg 1x8x8", "1x3x8x8"))
    out = tmp_path / "y.npy"
    code, _, err = cli(capsys, "run", str(spec), "--input", str(frames), "-o", str(out))
    assert code == 0, err
    np.testing.assert_allclose(np.load(out).reshape(-1), [0, 50 / 255, 100 / 255], atol=1e-6)
    code, _, err = cli(capsys, "run", str(spec), "--input", str(frames / "000.png"))
    assert (
        code == 1 and "a volume of 1x3x8x8 (CxDxHxW), not an image" in err and "a folder of its frames" in err
    )


def test_mean_and_std_apply_per_channel_in_every_rank(tmp_path, capsys):
    spec = tmp_path / "v.cnn"
    spec.write_text(net("globalpool avg", "2x3x4x4"))
    np.save(tmp_path / "x.npy", np.ones((1, 2, 3, 4, 4), np.float32))
    out = tmp_path / "y.npy"
    args = ["run", str(spec), "--input", str(tmp_path / "x.npy"), "--mean", "1", "0", "--std", "1", "2"]
    code, _, err = cli(capsys, *args, "-o", str(out))
    assert code == 0, err
    np.testing.assert_allclose(np.load(out).reshape(-1), [0.0, 0.5])


@pytest.mark.train
def test_a_1d_network_trains_from_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 32)).astype(np.float32)
    y = (x.mean(axis=(1, 2)) > 0).astype(np.int64)
    x[y == 1] += 0.5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    spec = tmp_path / "a.cnn"
    spec.write_text(net("conv 4 3 pad=1 relu\nglobalpool avg\nflatten\ndense 2 softmax", "1x32"))
    out = tmp_path / "a.onnx"
    code, _, err = cli(
        capsys, "train", str(spec), "--data", str(tmp_path / "d.npz"), "--epochs", "3", "-o", str(out)
    )
    assert code == 0, err
    assert out.exists()
