"""Transfer learning in the language and in the weights: derive, drop, freeze, new head,
weights carried over by name and shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import cnnspec
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.deploy.export import build_model, save
from tests.conftest import SPECS, check_text

LENET = (SPECS / "lenet5.cnn").read_text()


def derived(body: str, base: str = LENET) -> cnnspec.CheckResult:
    lines = "\n".join(f"  {line}" for line in body.strip().splitlines())
    return check_text(f"{base}\nnetwork d from lenet5 {{\n{lines}\n}}\n", "d")


def test_letters_example_as_in_the_issue():
    net = cnnspec.check(SPECS / "letters.cnn").network("letters")
    assert [c.name for c in net.layers][-3:] == ["dense1", "dense2", "head"]
    assert net.dropped == ("dense3",) and net.base == "lenet5"
    assert net.output_shape == (26,)
    frozen = 156 + 2416 + 48120 + 10164
    assert (net.trainable_params, net.non_trainable_params) == (85 * 26, frozen)
    assert [c.layer.origin for c in net.layers][-2:] == ["base", "new"]


def test_new_unnamed_layers_number_on_from_the_base():
    net = derived("drop last 1\ndense 5\ndense 3").network("d")
    assert [c.name for c in net.layers][-3:] == ["dense2", "dense4", "dense5"]


@pytest.mark.parametrize(
    "freeze, frozen",
    [
        ("freeze all", {"conv1", "pool1", "conv2", "pool2", "flatten1", "dense1", "dense2"}),
        ("freeze through conv2", {"conv1", "pool1", "conv2"}),
        ("freeze conv2 dense1", {"conv2", "dense1"}),  # any set, not only a prefix
        ("freeze new", {"new"}),
    ],
)
def test_freeze_forms(freeze, frozen):
    net = derived(f"drop from dense3\n{freeze}\ndense 4 as new").network("d")
    assert {c.name for c in net.layers if c.layer.frozen} == frozen
    assert net.trainable_params == sum(c.params for c in net.layers if c.name not in frozen)


def test_freeze_a_block_instance_by_name():
    spec = (
        "block b(f) {\n  conv f 3x3\n  batchnorm\n}\nnetwork n {\n  input 1x8x8\n  b 4 as stem\n  b 4\n"
        "  freeze stem\n}\n"
    )
    net = check_text(spec).network()
    assert [c.name for c in net.layers if c.layer.frozen] == ["conv1", "bn1"]
    assert net.trainable_params == 4 * 9 + 4 + 4 * 2 + 4 * 36 + 4 + 4 * 2 - (4 * 9 + 4 + 4 * 2)
    assert net.non_trainable_params == (4 * 9 + 4 + 4 * 4) + 4 * 2  # frozen layer + running stats of bn2


def test_frozen_batchnorm_counts_all_four_as_non_trainable():
    net = check_text("network n {\n  input 3x4x4\n  batchnorm\n  freeze all\n}\n").network()
    assert (net.trainable_params, net.non_trainable_params) == (0, 12)


def test_changed_input_size_names_the_layer_and_both_sizes():
    result = derived("input 1x64x64\ndrop last 1\ndense 3")
    (error,) = result.errors
    assert error.code == "transfer-shape-changed" and error.span.line == 14
    assert "dense1 is kept from 'lenet5', but its input changed from 400 to 2704" in error.message
    assert "dense1.weight would be 120x2704 instead of 120x400" in error.message
    assert error.help.startswith("drop it and what follows (`drop from dense1`)")


def test_a_new_input_size_is_fine_when_the_dense_layers_are_dropped():
    result = derived("input 1x64x64\ndrop from flatten1\nglobalpool avg\nflatten\ndense 3")
    assert result.ok and result.network("d").output_shape == (3,)


@pytest.mark.parametrize("drop", ["drop from dense9", "drop last 9"])
def test_a_failed_drop_is_one_error_and_the_base_part_is_still_checked(drop):
    """The new layers would attach where the drop failed to cut: their shape errors would
    only repeat it. Their own mistakes are still reported."""
    result = derived(f"{drop}\ndense 3\nconv 4 3x3 strde=2")
    expected = "drop-too-many" if drop.startswith("drop last") else "unknown-name"
    assert sorted(d.code for d in result.errors) == sorted([expected, "unknown-option"])
    network = result.network("d")
    assert network.layers[-1].name == "dense3" and network.output_shape == (10,)


def test_dropping_a_dropped_layer_again_says_so_and_keeps_checking():
    result = derived("drop from dense2\ndrop from dense3\ndense 4")
    (error,) = result.errors
    assert error.code == "unknown-name" and error.span.line > 1
    assert error.help == "an earlier `drop` in this network already removed it"
    assert result.network("d").output_shape == (4,)  # the new layer is still checked


@pytest.mark.parametrize(
    "body, code, words",
    [
        ("drop last 9", "drop-too-many", "cannot drop 9 layers: 'lenet5' has 8 left"),
        ("drop from dense9", "unknown-name", "did you mean 'dense3'?"),
        ("freeze conv7", "unknown-name", "no layer or block named 'conv7'"),
        ("freeze through densse1", "unknown-name", "did you mean 'dense1'?"),
        ("drop last 1\ndense 3 as dense2", "duplicate-name", "'dense2' already exists"),
        ("drop last -1\ndense 3", "invalid-argument", "drop last takes a count of 0 or more, got -1"),
        # a dropped layer is not a typo: no "did you mean" another name
        (
            "drop from dense3\nfreeze through dense3\ndense 4",
            "unknown-name",
            "'dense3' is dropped in this network",
        ),
        ("freeze conv1 dense2\ndrop from dense2\ndense 4", "unknown-name", "'dense2' is dropped"),
    ],
)
def test_transfer_mistakes(body, code, words):
    result = derived(body)
    found = [d for d in result.errors if d.code == code]
    assert found and words in found[0].message + " " + (found[0].help or "")


def test_base_from_an_unknown_network():
    result = check_text("network d from lenet {\n  dense 3\n}\n" + LENET, "d")
    (error,) = result.errors
    assert error.code == "unknown-network" and "did you mean 'lenet5'?" in error.help


def test_networks_deriving_in_a_cycle():
    result = check_text("network a from b {\n  relu\n}\nnetwork b from a {\n  relu\n}\n")
    assert {d.code for d in result.errors} == {"unknown-network"}
    assert "cycle" in result.errors[0].message


def _base_model(tmp_path: Path) -> tuple[Path, dict]:
    base = cnnspec.check(SPECS / "lenet5.cnn").network()
    model, weights = build_model(base, seed=11)
    save(model, tmp_path / "lenet5.onnx")
    return tmp_path / "lenet5.onnx", weights.arrays


def test_weights_carry_over_to_kept_layers(tmp_path: Path):
    path, base = _base_model(tmp_path)
    net = cnnspec.check(SPECS / "letters.cnn").network("letters")
    model, weights = build_model(net, seed=5, weights_file=path)
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for name in ("conv1.weight", "conv2.bias", "dense1.weight", "dense2.bias"):
        assert np.array_equal(arrays[name], base[name]), name
    assert arrays["head.weight"].shape == (26, 84)
    plan = {p.name: p for p in weights.plan}
    assert plan["conv1.weight"].source == "loaded" and plan["conv1.weight"].frozen
    assert plan["head.weight"].source == "new" and not plan["head.weight"].frozen
    assert weights.unused == ("dense3.bias", "dense3.weight")
    props = {p.key: p.value for p in model.metadata_props}
    assert props["frozen_tensors"].split(",") == [
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "dense1.weight",
        "dense1.bias",
        "dense2.weight",
        "dense2.bias",
    ]
    onnx.checker.check_model(model, full_check=True)


def test_weights_with_a_mismatched_kept_tensor(tmp_path: Path):
    _, base = _base_model(tmp_path)
    base["dense2.weight"] = np.zeros((84, 100), np.float32)
    np.savez(tmp_path / "bad.npz", **base)
    net = cnnspec.check(SPECS / "letters.cnn").network("letters")
    with pytest.raises(CnnspecError) as caught:
        build_model(net, weights_file=tmp_path / "bad.npz")
    assert [d.message for d in caught.value.diagnostics] == [
        "tensor 'dense2.weight' is 84x100 in the weights, but dense2 needs 84x120"
    ]


def test_weights_missing_a_kept_tensor(tmp_path: Path):
    _, base = _base_model(tmp_path)
    del base["conv2.bias"]
    np.savez(tmp_path / "partial.npz", **base)
    net = cnnspec.check(SPECS / "letters.cnn").network("letters")
    with pytest.raises(CnnspecError) as caught:
        build_model(net, weights_file=tmp_path / "partial.npz")
    assert "no tensor 'conv2.bias' (needed: 16)" in caught.value.diagnostics[0].message


def test_check_table_shows_trainable_and_frozen(capsys, monkeypatch):
    from cnnspec.cli import main
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    assert main(["check", "specs/letters.cnn", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "network letters from lenet5" in out
    assert "params: 63,066 total · 2,210 trainable · 60,856 non-trainable" in out
    assert "frozen: 60,856 params in 4 layers" in out and "dropped from lenet5: dense3" in out
    head = next(line for line in out.splitlines() if line.startswith("head"))
    conv1 = next(line for line in out.splitlines() if line.startswith("conv1"))
    assert head.endswith("yes") and conv1.endswith("no")


def test_export_plan_lists_every_tensor(tmp_path: Path, capsys, monkeypatch):
    from cnnspec.cli import main
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    path, _ = _base_model(tmp_path)
    code = main(
        ["export", "specs/letters.cnn", "--weights", str(path), "-o", str(tmp_path / "l.onnx"), "--plan"]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if "." in line.split()[0]}
    assert rows["conv1.weight"] == ["6x1x5x5", "loaded", "frozen"]
    assert rows["head.weight"] == ["26x84", "new", "trains"]
    assert "not used (dropped layers): dense3.bias, dense3.weight" in out
