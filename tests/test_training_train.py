"""Training with the PyTorch backend: frozen stays frozen bit for bit, the same seed gives
the same model, the exported ONNX equals PyTorch, data mistakes are clear errors. Also
PyTorch as a second, independent oracle for onnxruntime on generated networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from PIL import Image

import cnnspec
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.cli import main
from cnnspec.deploy.export import build_model, save, to_onnx
from cnnspec.deploy.weights import build_weights
from cnnspec.training.modules import build_module
from cnnspec.training.train import load_dataset, train
from tests.conftest import ROOT
from tests.helpers import network_text, session, toy_data

pytestmark = pytest.mark.train

BASE = """
network base {
  input 1x8x8
  conv 4 3x3 pad=same
  batchnorm
  relu
  pool max 2
  flatten
  dense 8 relu
  dense 3 softmax
}
network head_only from base {
  drop from dense2
  freeze through dense1
  dense 2 softmax as head
}
"""


def network(name: str) -> cnnspec.CheckedNetwork:
    return cnnspec.check_source(BASE, "t.cnn").network(name)


def test_training_learns_and_the_same_seed_gives_the_same_model():
    net = network("base")
    weights = build_weights(net, seed=1)
    first = train(
        net, weights, toy_data(), epochs=8, lr=1e-2, batch_size=16, val_split=0.25, seed=3, progress=False
    )
    second = train(
        net, weights, toy_data(), epochs=8, lr=1e-2, batch_size=16, val_split=0.25, seed=3, progress=False
    )
    assert first.best.val_accuracy >= 0.9
    assert first.best_epoch == second.best_epoch
    assert all(np.array_equal(first.arrays[k], second.arrays[k]) for k in first.arrays)


def test_frozen_tensors_come_out_bit_identical():
    base = network("base")
    base_weights = build_weights(base, seed=2)
    # Give the frozen batch norm non-trivial statistics: they must not move either.
    arrays = dict(base_weights.arrays)
    arrays["bn1.running_mean"] = np.full(4, 0.3, np.float32)
    arrays["bn1.running_var"] = np.full(4, 2.0, np.float32)
    net = network("head_only")
    weights = build_weights(net, seed=4, provided=arrays)
    result = train(
        net,
        weights,
        toy_data(classes=2),
        epochs=3,
        lr=0.05,
        batch_size=8,
        val_split=0,
        seed=0,
        progress=False,
    )
    for plan in weights.plan:
        before, after = weights.arrays[plan.name], result.arrays[plan.name]
        if plan.frozen:
            assert np.array_equal(before, after), plan.name
    assert not np.array_equal(weights.arrays["head.weight"], result.arrays["head.weight"])


def test_frozen_batchnorm_stays_in_inference_mode():
    net = network("head_only")
    module = build_module(net, build_weights(net).arrays)
    module.train()
    assert not module.bn1.training and module.head.training
    assert not any(p.requires_grad for p in module.conv1.parameters())


def test_droppath_drops_whole_samples_while_training_only():
    text = "network n {\n  input 4x3x3\n  add {} { conv 4 1x1 bias=false; droppath 0.5 as drop }\n}\n"
    net = cnnspec.check_source(text).network()
    module = build_module(net, build_weights(net).arrays)
    x = torch.ones(400, 4, 3, 3)
    torch.manual_seed(0)
    module.train()
    body = module.drop(module.conv1(x))
    kept = body.flatten(1).abs().sum(1) > 0  # per sample: all of it kept, or none
    plain = module.conv1(x).flatten(1)
    torch.testing.assert_close(body.flatten(1)[kept], 2 * plain[kept])  # kept ones scaled by 1/(1-0.5)
    assert (body.flatten(1)[~kept] == 0).all() and 150 < int(kept.sum()) < 250
    module.eval()
    torch.testing.assert_close(module.drop(module.conv1(x)), module.conv1(x))
    model, _ = build_model(net)
    assert [n.op_type for n in model.graph.node if n.name == "drop"] == ["Identity"]


def test_trained_onnx_equals_pytorch():
    net = network("base")
    result = train(
        net, build_weights(net), toy_data(), epochs=2, batch_size=16, val_split=0.2, progress=False
    )
    model = to_onnx(net, build_weights(net, provided=result.arrays))
    module = build_module(net, result.arrays)
    x = toy_data(16, seed=9).x
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session(model).run(None, {"input": x})[0], expected, atol=1e-4)


def test_cli_train_then_run(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = tmp_path / "net.cnn"
    spec.write_text(BASE)
    data = toy_data()
    np.savez(tmp_path / "d.npz", x=data.x, y=data.y)
    out = tmp_path / "trained.onnx"
    code = main(
        [
            "train",
            str(spec),
            "--network",
            "base",
            "--data",
            str(tmp_path / "d.npz"),
            "-o",
            str(out),
            "--epochs",
            "3",
            "--lr",
            "0.01",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "best epoch" in captured.out and "epoch 3/3" in captured.err
    assert main(["run", str(out), "--input", str(tmp_path / "d.npz")]) == 1  # .npz is not an input format
    np.save(tmp_path / "x.npy", data.x[:4])
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy")]) == 0
    assert "output: 4x3" in capsys.readouterr().out


def test_cli_train_without_torch_extra_message(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    assert main(["train", "specs/lenet5.cnn", "--data", "x.npz", "-o", "y.onnx"]) == 2
    assert "pip install 'cnnspec[train]'" in capsys.readouterr().err


def test_image_folder_dataset(tmp_path: Path):
    for label, shade in (("cats", 0), ("dogs", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("L", (16, 16), shade).save(tmp_path / label / f"{i}.png")
    data = load_dataset(tmp_path, (1, 8, 8), 2)
    assert data.x.shape == (6, 1, 8, 8) and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.classes == ["cats", "dogs"] and data.x[3:].min() == 1.0


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (
            lambda d: _npz(d / "a.npz", x=np.zeros((4, 3, 8, 8)), y=np.zeros(4)),
            "x is 4x3x8x8, the network takes Nx1x8x8",
        ),
        (
            lambda d: _npz(d / "b.npz", x=np.zeros((4, 1, 8, 8)), y=np.array([0, 1, 2, 7])),
            "label 7 is out of range",
        ),
        (lambda d: _npz(d / "c.npz", x=np.zeros((4, 1, 8, 8)), y=np.zeros(3)), "expected 4 labels"),
        (lambda d: _npz(d / "d.npz", images=np.zeros(3)), "needs arrays 'x' and 'y' (it has: images)"),
        (lambda d: _npz(d / "e.npz", x=np.zeros((0, 1, 8, 8)), y=np.zeros(0)), "holds no examples"),
        (lambda d: d / "missing.npz", "no such file or folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no class subfolders"),
        (lambda d: (d / "f" / "cat").mkdir(parents=True) or d / "f", "class 'cat' has no images"),
    ],
)
def test_data_mistakes(tmp_path: Path, make, words):
    with pytest.raises(CnnspecError) as caught:
        load_dataset(make(tmp_path), (1, 8, 8), 3)
    assert words in caught.value.diagnostics[0].message and caught.value.diagnostics[0].code == "bad-input"


def test_cli_train_bad_data_exits_1(tmp_path: Path, capsys):
    spec = tmp_path / "net.cnn"
    spec.write_text(BASE)
    _npz(tmp_path / "bad.npz", x=np.zeros((2, 1, 4, 4)), y=np.zeros(2))
    code = main(
        [
            "train",
            str(spec),
            "--network",
            "base",
            "--data",
            str(tmp_path / "bad.npz"),
            "-o",
            str(tmp_path / "o.onnx"),
        ]
    )
    assert code == 1 and "[bad-input]" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(text=network_text())
def test_pytorch_and_onnxruntime_agree_on_generated_networks(text):
    result = cnnspec.check_source(text, "gen.cnn")
    assume(result.ok)
    net = result.network()
    model, weights = build_model(net, seed=0)
    x = np.random.default_rng(1).standard_normal((2, *net.input_shape)).astype(np.float32)
    module = build_module(net, weights.arrays)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert expected.shape == (2, *net.output_shape)
    np.testing.assert_allclose(session(model).run(None, {"input": x})[0], expected, atol=1e-4, rtol=1e-4)


def test_training_round_trip_through_a_saved_base(tmp_path: Path):
    """Pretrain, save as ONNX, derive with --weights, train the head: the whole recipe."""
    base = network("base")
    pre = train(base, build_weights(base), toy_data(), epochs=2, val_split=0, progress=False)
    save(to_onnx(base, build_weights(base, provided=pre.arrays)), tmp_path / "base.onnx")
    from cnnspec.deploy.weights import load_file

    net = network("head_only")
    weights = build_weights(net, provided=load_file(tmp_path / "base.onnx"))
    assert np.array_equal(weights.arrays["conv1.weight"], pre.arrays["conv1.weight"])
    result = train(net, weights, toy_data(classes=2), epochs=2, val_split=0, progress=False)
    assert np.array_equal(result.arrays["dense1.weight"], pre.arrays["dense1.weight"])
