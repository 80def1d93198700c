"""Networks with branches (issue 7): the design notes' syntax as written, published
parameter totals of the zoo, predicted shapes against onnxruntime on every layer of the
zoo and of generated graphs, PyTorch against onnxruntime, transfer on graphs."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings

import cnnspec
from cnnspec.deploy.export import LOWERINGS, build_model
from cnnspec.kinds import ACTIVATIONS, KINDS
from tests.conftest import SPECS, check_text, net
from tests.helpers import graph_text, run_all_layers, session

ZOO = SPECS / "zoo"

# Published totals (torchvision / the papers): trainable parameters, as torchvision counts
# them (batch norm's running statistics are buffers, not parameters).
PUBLISHED = [
    ("resnet.cnn", "resnet18", 11_689_512),
    ("resnet.cnn", "resnet50", 25_557_032),
    ("mobilenetv2.cnn", "mobilenetv2", 3_504_872),
    ("densenet121.cnn", "densenet121", 7_978_856),
    ("squeezenet.cnn", "squeezenet1_1", 1_235_496),
    ("efficientnet_b0.cnn", "efficientnet_b0", 5_288_548),
    ("googlenet.cnn", "googlenet", 6_624_904),
    ("mobilenetv3.cnn", "mobilenetv3_large", 5_483_032),
    ("shufflenetv2.cnn", "shufflenetv2", 2_278_604),
    ("convnext.cnn", "convnext_tiny", 28_589_128),
    ("cspresnet.cnn", "cspresnet50", 21_616_168),  # timm
    ("inception_v3.cnn", "inception_v3", 27_161_264),  # with the auxiliary classifier
]


@pytest.mark.parametrize("spec, name, total", PUBLISHED, ids=[p[1] for p in PUBLISHED])
def test_zoo_matches_published_parameter_totals(spec, name, total):
    result = cnnspec.check(ZOO / spec, name)
    assert result.ok, [d.message for d in result.errors]
    network = result.network(name)
    assert network.trainable_params == total
    assert set(network.output_shapes) == {(1000,)}


@pytest.mark.parametrize(
    "spec, name, gmacs",
    [
        ("resnet.cnn", "resnet18", 1.81),
        ("resnet.cnn", "resnet50", 4.09),
        ("mobilenetv2.cnn", "mobilenetv2", 0.30),
        ("densenet121.cnn", "densenet121", 2.83),
        ("squeezenet.cnn", "squeezenet1_1", 0.35),
        ("efficientnet_b0.cnn", "efficientnet_b0", 0.39),
        ("googlenet.cnn", "googlenet", 1.50),
        ("mobilenetv3.cnn", "mobilenetv3_large", 0.22),
        ("shufflenetv2.cnn", "shufflenetv2", 0.14),
        ("convnext.cnn", "convnext_tiny", 4.46),
    ],
)
def test_zoo_macs_match_published_figures(spec, name, gmacs):
    # torchvision's model table ("GFLOPS", which are multiply-accumulates of conv and dense)
    assert round(cnnspec.check(ZOO / spec, name).network(name).macs / 1e9, 2) == gmacs


def test_every_example_of_the_design_notes_checks_as_written():
    result = cnnspec.check(SPECS / "branches.cnn")
    assert result.ok, [d.message for d in result.errors]
    unet = result.network("unet_small")
    assert unet.outputs == ("mask", "aux")
    assert unet.output_shapes == ((2, 64, 64), (1, 64, 64))
    assert unet.layer("concat1").inputs == ("enc1", "up1")
    assert unet.layer("concat1").output_shape == (32, 64, 64)
    assert unet.layer("aux").inputs == ("enc1",)
    blocks = result.network("blocks")
    assert blocks.output_shape == (224, 8, 8)  # 128 + 32 (dense_layer), +32 +32 (repeat 2)


def _layer_graph_shapes(network, batch=1):
    x = np.random.default_rng(0).standard_normal((batch, *network.input_shape)).astype(np.float32)
    _, _, outputs = run_all_layers(network, x)
    for layer in network.layers:
        assert outputs[layer.name].shape == (batch, *layer.output_shape), layer.name
    return outputs


@pytest.mark.parametrize(
    "spec, name",
    [
        ("resnet.cnn", "resnet18"),
        ("mobilenetv2.cnn", "mobilenetv2"),
        ("squeezenet.cnn", "squeezenet1_1"),
        ("densenet121.cnn", "densenet121"),
        ("unet.cnn", "unet"),
        ("efficientnet_b0.cnn", "efficientnet_b0"),
        ("googlenet.cnn", "googlenet"),
        ("mobilenetv3.cnn", "mobilenetv3_large"),
        ("shufflenetv2.cnn", "shufflenetv2"),
        ("convnext.cnn", "convnext_tiny"),
        ("cspresnet.cnn", "cspresnet50"),
        ("inception_v3.cnn", "inception_v3"),
    ],
)
def test_zoo_shapes_equal_onnxruntime_on_every_layer(spec, name):
    _layer_graph_shapes(cnnspec.check(ZOO / spec, name).network(name))


def test_design_networks_run_and_give_every_output():
    for network in cnnspec.check(SPECS / "branches.cnn").networks:
        outputs = _layer_graph_shapes(network, batch=2)
        for name, shape in zip(network.outputs, network.output_shapes):
            assert outputs[name].shape == (2, *shape)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_every_kind_has_an_onnx_lowering_and_a_pytorch_factory(opset):
    from cnnspec.training.modules import _core

    for word, cls in KINDS.items():
        config_kind = cls.kind
        assert config_kind in LOWERINGS or cls.kind == "activation", word
    # one network with every kind, through both back ends
    activations = "\n".join(fn for fn in ACTIVATIONS if fn != "softmax")  # softmax ends the network
    spec = net(
        "conv 4 3x3 pad=1 as a\ndeconv 4 3x3 stride=2 pad=same relu\npool max 2 as p\nadd a p\nconcat a p\n"
        "pad (1,0,0,1) reflect\npad 1 edge\npad 1\nconv 8 3x3 stride=2\nbatchnorm\nlayernorm eps=1e-6\nscale init=0.5\nprelu\ndroppath 0.2\nsplit (3, 5) as s1 s2\nconcat s2 s1\nshuffle 4\nslice 1:-1\nconv 8 1x1\nupsample 2\npool avg 2\nmultiply { globalpool max; conv 8 1x1 hardsigmoid }\n"
        f"{activations}\nleakyrelu 0.2\ndropout 0.1\nflatten\nprelu shared\ndense 3 softmax",
        "2x6x6",
    )
    network = check_text(spec).network()
    kinds = {layer.layer.config.kind for layer in network.layers}
    assert {cls.kind for cls in KINDS.values()} <= kinds
    for layer in network.layers:
        assert _core(layer) is not None
    _compare_backends(network, opset=opset)


def _compare_backends(network, atol=1e-4, opset=17):
    import torch

    from cnnspec.training.modules import build_module

    model, weights = build_model(network, seed=3, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(1).standard_normal((2, *network.input_shape)).astype(np.float32)
    module = build_module(network, weights.arrays)
    with torch.no_grad():
        expected = [t.numpy() for t in module.forward_all(torch.from_numpy(x))]
    got = session(model).run(None, {"input": x})
    assert len(got) == len(expected) == max(len(network.outputs), 1)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=atol, rtol=atol)


@pytest.mark.train
@pytest.mark.parametrize("spec, name", [("resnet.cnn", "resnet18"), ("branches.cnn", "unet_small")])
def test_pytorch_equals_onnxruntime_on_graphs(spec, name):
    path = ZOO / spec if (ZOO / spec).exists() else SPECS / spec
    _compare_backends(cnnspec.check(path, name).network(name), atol=2e-4)


# ------------------------------------------------------------------ language details


@pytest.mark.parametrize(
    "text, shape",
    [
        ("block b(c) {\n  conv (c + 7)//8*8 1x1\n}\n" + net("b 9", "1x4x4"), (16, 4, 4)),
        ("block b(k) {\n  conv 4 k pad=k//2\n}\n" + net("b 5", "1x8x8"), (4, 8, 8)),
        (net("repeat 3 { conv 2 1x1; relu }", "1x4x4"), (2, 4, 4)),
        (net("conv 4 1x1 as a; conv 4 1x1 as b; add a b", "4x4x4"), (4, 4, 4)),
        (net("conv 4 3x3 pad=1 as a\nconv 4 3x3 pad=1\nresidual {}\nconcat a in", "4x4x4"), (8, 4, 4)),
    ],
)
def test_arithmetic_semicolons_and_references(text, shape):
    result = check_text(text)
    assert result.ok, [d.message for d in result.errors]
    assert result.network().output_shape == shape


def test_names_are_unique_at_every_level_of_nesting():
    spec = "block inner() {\n  conv 2 1x1 as c\n}\nblock outer() {\n  inner\n  inner\n}\n" + net(
        "outer\nouter", "1x4x4"
    )
    result = check_text(spec)
    assert result.ok, [d.message for d in result.errors]
    names = [layer.name for layer in result.network().layers]
    assert names == ["outer1_inner1_c", "outer1_inner2_c", "outer2_inner3_c", "outer2_inner4_c"]


def test_layers_are_readable_by_the_names_the_table_shows():
    spec = "block b() {\n  conv 3 1x1 as c\n}\n" + net("conv 3 1x1\nb\nrelu\nadd conv1 b1_c relu1", "3x4x4")
    network = check_text(spec).network()
    assert network.layers[-1].inputs == ("conv1", "b1_c", "relu1")


def test_input_names_the_network_input_at_the_top_level_only():
    network = check_text(net("conv 3 1x1\nadd input conv1", "3x4x4")).network()
    assert network.layers[-1].inputs == ("input", "conv1")
    result = check_text("block b() {\n  add input in\n}\n" + net("b", "3x4x4"))
    assert [d.code for d in result.errors] == ["unknown-reference"]


def test_a_shape_assertion_on_a_block_call_checks_its_output():
    result = check_text("block b() {\n  conv 4 1x1\n}\n" + net("b -> 5x8x8\nb -> 4x8x8", "3x8x8"))
    (d,) = result.errors
    assert d.code == "shape-mismatch" and d.span.line == 6 and "gives 4x8x8, not 5x8x8" in d.message


def test_a_block_instance_name_refers_to_its_output():
    spec = "block b() {\n  conv 3 1x1\n  relu\n}\n" + net("b as first\nconv 3 1x1\nadd first in", "3x4x4")
    network = check_text(spec).network()
    assert network.layers[-1].inputs == ("relu1", "input")


def test_a_shape_error_stops_only_what_depends_on_it():
    spec = net(
        "conv 4 1x1 as a\npool max 8 as bad\nconv 2 1x1 from bad\nconv 3 1x1 from a as good\noutput good",
        "1x4x4",
    )
    result = check_text(spec)
    assert [d.code for d in result.errors] == ["kernel-too-large"]
    network = result.network()
    assert not network.complete
    assert network.layer("good").output_shape == (3, 4, 4)


def test_receptive_field_is_the_largest_over_all_paths():
    spec = net("conv 2 7x7 pad=3 as wide\nconv 2 1x1 from in as narrow\nadd wide narrow", "1x16x16")
    network = check_text(spec).network()
    assert network.layer("narrow").receptive_field == (1, 1)
    assert network.layer("add1").receptive_field == (7, 7)


def test_json_lists_inputs_and_outputs_with_schema_2():
    document = cnnspec.check(SPECS / "branches.cnn").to_json()
    assert document["schema"] == 2
    unet = next(n for n in document["networks"] if n["name"] == "unet_small")
    assert unet["outputs"] == [{"name": "mask", "shape": [2, 64, 64]}, {"name": "aux", "shape": [1, 64, 64]}]
    concat = next(layer for layer in unet["layers"] if layer["name"] == "concat1")
    assert concat["inputs"] == ["enc1", "up1"]


def test_table_shows_inputs_and_groups_block_instances():
    from cnnspec.views.report import render_table

    text = render_table(cnnspec.check(SPECS / "branches.cnn"))
    assert "concat ← enc1, up1" in text and "conv 1 1x1 ← enc1" in text
    assert "\nbasic1:\n" in text and "outputs: mask 2x64x64, aux 1x64x64" in text


def test_deconv_formulas_by_hand():
    # out = (n-1)·s - p_begin - p_end + d·(f-1) + output_pad + 1; params (C_in/g)·C_out·f·f + bias
    layer = check_text(net("deconv 6 3x3 stride=2 pad=1 output_pad=1", "4x5x5")).network().layers[0]
    assert layer.output_shape == (6, 10, 10)  # 4·2 - 2 + 2 + 1 + 1
    assert layer.params == 4 * 6 * 9 + 6
    assert layer.macs == 4 * 5 * 5 * 6 * 9


def test_fold_bn_only_folds_a_batch_norm_that_is_its_layers_only_reader():
    import cnnspec.deploy.export as export

    spec = net("conv 4 3x3 pad=1 as c\nbatchnorm as n\nadd c n", "4x6x6")
    network = check_text(spec).network()
    _, weights = build_model(network)
    folded, folded_bn = export._fold_batchnorm(network, weights)
    assert folded_bn == set()
    model, _ = build_model(network, fold_bn=True)
    x = np.ones((1, 4, 6, 6), np.float32)
    plain, _ = build_model(network)
    np.testing.assert_allclose(
        session(model).run(None, {"input": x})[0], session(plain).run(None, {"input": x})[0]
    )


# ------------------------------------------------------------------ transfer on graphs

GRAPH_BASE = """
network base {
  input 3x16x16
  conv 8 3x3 pad=1 relu as stem
  residual { conv 8 3x3 pad=1; relu } as block1
  conv 8 1x1 from stem as side
  concat block1 side as joined
  globalpool avg
  flatten
  dense 10 softmax as head
}
"""


def test_drop_from_removes_what_depends_on_it_and_freeze_through_its_ancestors():
    spec = (
        GRAPH_BASE
        + "network tuned from base {\n  drop from head\n  freeze through block1\n  dense 3 softmax\n}\n"
    )
    network = check_text(spec).network("tuned")
    frozen = {layer.name for layer in network.layers if layer.layer.frozen}
    assert frozen == {"stem", "conv2", "relu1", "block1"}  # not `side` (conv3), a parallel branch
    assert network.layers[-1].inputs == ("flatten1",)
    assert network.output_shape == (3,)
    spec = GRAPH_BASE + "network cut from base {\n  drop from stem\n}\n"
    assert check_text(spec).network("cut").layers == ()


def test_drop_and_freeze_take_block_instance_names():
    spec = (
        "block unit() {\n  conv 4 3x3 pad=1\n  relu\n}\n"
        + net("unit as first\nunit as second\nflatten\ndense 2", "1x4x4").replace("network t", "network base")
        + "network tuned from base {\n  drop from second\n  freeze through first\n  dense 3\n}\n"
    )
    network = check_text(spec).network("tuned")
    assert [layer.name for layer in network.layers] == ["conv1", "relu1", "dense2"]
    assert [layer.layer.frozen for layer in network.layers] == [True, True, False]
    assert network.dropped == ("conv2", "relu2", "flatten1", "dense1")


def test_new_layers_need_one_end_to_attach_to():
    spec = GRAPH_BASE + "network two from base {\n  drop from joined\n  dense 3\n}\n"
    result = check_text(spec)
    (d,) = [d for d in result.errors if d.code == "unknown-reference"]
    assert "block1, side" in d.message and "from NAME" in d.help
    spec = GRAPH_BASE + "network two from base {\n  drop from joined\n  conv 2 1x1 from side\n}\n"
    assert check_text(spec).ok


# ------------------------------------------------------------------ generated graphs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=graph_text())
def test_generated_graphs_predicted_shapes_equal_onnxruntime_and_pytorch(text):
    result = check_text(text)
    assert result.ok, (text, [d.message for d in result.errors])
    network = result.network()
    _layer_graph_shapes(network, batch=2)
    _compare_backends(network)


# ------------------------------------------------------------------ run and train


def test_run_prints_and_saves_every_output(capsys, tmp_path):
    from cnnspec.cli import main

    spec = str(SPECS / "branches.cnn")
    assert main(["run", spec, "--network", "unet_small", "-o", str(tmp_path / "o.npz")]) == 0
    out = capsys.readouterr().out
    assert "output: mask: 1x2x64x64   aux: 1x1x64x64" in out and "\nmask:\n" in out and "\naux:\n" in out
    saved = np.load(tmp_path / "o.npz")
    assert saved["mask"].shape == (1, 2, 64, 64) and saved["aux"].shape == (1, 1, 64, 64)
    assert main(["run", spec, "--network", "unet_small", "-o", str(tmp_path / "o.npy")]) == 2
    assert "-o OUT.npz" in capsys.readouterr().err and not (tmp_path / "o.npy").exists()
    assert main(["export", spec, "--network", "unet_small", "-o", str(tmp_path / "u.onnx")]) == 0
    assert "output mask Nx2x64x64, output aux Nx1x64x64" in capsys.readouterr().out


@pytest.mark.train
def test_training_a_residual_network_keeps_frozen_batch_norm_bit_identical():
    from cnnspec.deploy.weights import build_weights
    from cnnspec.training.train import Dataset, train

    spec = (
        "network base {\n  input 1x8x8\n  conv 4 3x3 pad=1 bias=false\n  batchnorm\n  relu\n"
        "  residual { conv 4 3x3 pad=1 bias=false; batchnorm; relu } as res\n"
        "  globalpool avg\n  flatten\n  dense 2 softmax\n}\n"
        "network tuned from base {\n  freeze through res\n}\n"
    )
    network = check_text(spec).network("tuned")
    rng = np.random.default_rng(0)
    arrays = build_weights(network, seed=0).arrays
    arrays = {
        k: (v + rng.random(v.shape).astype(np.float32) * 0.1) if "running" in k else v
        for k, v in arrays.items()
    }
    weights = build_weights(network, 0, arrays)
    y = rng.integers(0, 2, 32)
    x = (rng.random((32, 1, 8, 8)) + y[:, None, None, None]).astype(np.float32)
    outcome = train(
        network, weights, Dataset(x, y.astype(np.int64), ["0", "1"]), epochs=2, val_split=0, progress=False
    )
    for name, value in weights.arrays.items():
        if name.startswith(("conv", "bn")):  # the frozen residual block and the stem
            np.testing.assert_array_equal(outcome.arrays[name], value, err_msg=name)
    assert not np.array_equal(outcome.arrays["dense1.weight"], weights.arrays["dense1.weight"])


@pytest.mark.train
def test_training_needs_exactly_one_output():
    from cnnspec.base.diagnostics import CnnspecError
    from cnnspec.deploy.weights import build_weights
    from cnnspec.training.train import Dataset, train

    network = cnnspec.check(SPECS / "branches.cnn", "unet_small").network("unet_small")
    data = Dataset(np.zeros((2, 1, 64, 64), np.float32), np.zeros(2, np.int64), ["0"])
    with pytest.raises(CnnspecError) as caught:
        train(network, build_weights(network), data, epochs=1, progress=False)
    assert "training needs one output" in caught.value.diagnostics[0].message


@pytest.mark.train
@pytest.mark.parametrize(
    "layer",
    [
        "deconv 3 3x3 stride=2 pad=1 output_pad=1",
        "deconv 4 3x3 stride=2 pad=(1,0,0,1)",
        "deconv 4 2x3 stride=(2,1) dilation=2 groups=2 bias=false",
        "upsample 3 bilinear",
        "upsample 2",
    ],
)
def test_upsampling_layers_agree_between_onnxruntime_and_pytorch(layer):
    network = check_text(net(layer, "4x5x6")).network()
    _layer_graph_shapes(network, batch=2)
    _compare_backends(network)


def test_the_flatten_footer_follows_the_graph():
    from cnnspec.views.report import render_table

    spec = net("conv 4 3x3 as a\nflatten as f\nconv 2 1x1 from a\ndense 3 from f", "1x8x8")
    assert render_table(check_text(spec)).splitlines()[-1] == "dense1 takes 144 inputs from f (4x6x6)"


def test_a_name_taken_twice_in_a_graph_is_reported_not_a_crash():
    # found by fuzzing: `upsample` is auto-named up1, which the deconv already took
    result = check_text(net("deconv 2 2x2 stride=2 as up1\nupsample 1\ndropout 0.1 from up1", "1x8x8"))
    assert "duplicate-name" in [d.code for d in result.errors]


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("dilation", [1, 2])
def test_deconv_pad_same_multiplies_the_size_and_suggests_pads_that_do(kernel, stride, dilation):
    line = f"deconv 4 {kernel}x{kernel} stride={stride} dilation={dilation}"
    same = check_text(net(f"{line} pad=same", "2x9x9"))
    assert same.ok and same.network().output_shape == (4, 9 * stride, 9 * stride)
    result = check_text(net(f"{line} pad=same output_pad=1", "2x9x9"))  # same leaves nothing to add
    (problem,) = [d for d in result.errors if d.code == "invalid-argument"]
    suggested = re.search(r"pad=(\d+)(?: output_pad=(\d+))?", problem.help or "")
    if suggested is None:  # a window narrower than the stride cannot fill the gaps
        assert dilation * (kernel - 1) + 1 < stride or "no padding multiplies" in (problem.help or "")
        return
    pad, output_pad = suggested.group(1), suggested.group(2) or "0"
    fixed = check_text(net(f"{line} pad={pad} output_pad={output_pad}", "2x9x9"))
    assert fixed.ok and fixed.network().output_shape == (4, 9 * stride, 9 * stride)


def test_output_may_come_before_the_layers_it_names():
    """Keras declares a model's outputs up front; `output` resolves after the whole body."""
    text = net(
        "output mask aux\nconv 8 3x3 pad=1 as enc\nconv 2 1x1 as mask\nconv 1 1x1 from enc as aux", "1x16x16"
    )
    network = check_text(text).network()
    assert network.outputs == ("mask", "aux")
    assert network.output_shapes == ((2, 16, 16), (1, 16, 16))
