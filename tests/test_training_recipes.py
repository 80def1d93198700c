"""Training recipes: optimisers and schedules, early stopping, checkpoints and resume,
history and curves, devices; and `cnnspec evaluate`."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

import cnnspec
from cnnspec.base.diagnostics import CnnspecError
from cnnspec.cli import main
from cnnspec.deploy.weights import build_weights
from cnnspec.training.train import Recipe, train
from tests.helpers import RECIPE_SPEC, recipe_network, toy_data, train_toy

pytestmark = pytest.mark.train


@pytest.mark.parametrize(
    "recipe", [Recipe(), Recipe("sgd", momentum=0.9, weight_decay=1e-4, schedule="cosine")]
)
def test_a_run_stopped_after_epoch_2_and_resumed_ends_exactly_as_an_uninterrupted_one(tmp_path, recipe):
    whole = train_toy(recipe=recipe, checkpoint=tmp_path / "whole.ckpt")
    part = tmp_path / "part.ckpt"
    first = train_toy(recipe=recipe, checkpoint=part, stop_after=2)
    assert [h.epoch for h in first.history] == [1, 2] and part.exists()
    resumed = train_toy(recipe=recipe, checkpoint=part, resume=part)
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    assert resumed.arrays.keys() == whole.arrays.keys()
    for name in whole.arrays:
        assert np.array_equal(resumed.arrays[name], whole.arrays[name]), name  # bit for bit


def test_cosine_and_step_schedules_set_the_learning_rate_per_epoch(tmp_path):
    cosine = train_toy(epochs=5, lr=0.1, recipe=Recipe("sgd", schedule="cosine"))
    expected = [0.1 * (1 + math.cos(math.pi * k / 5)) / 2 for k in range(5)]
    assert [h.lr for h in cosine.history] == pytest.approx(expected)
    step = train_toy(
        epochs=5,
        lr=0.1,
        recipe=Recipe("adamw", weight_decay=0.01, schedule="step", step_size=2, gamma=0.5),
    )
    assert [h.lr for h in step.history] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    result = train_toy(epochs=20, lr=1e-9, recipe=Recipe(patience=3))  # it cannot improve
    assert result.stopped_early and len(result.history) == 4 and result.best_epoch == 1
    with pytest.raises(CnnspecError, match="needs --val-split above 0"):
        train_toy(val_split=0, recipe=Recipe(patience=3))


def test_a_checkpoint_is_never_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))

    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"version": 1, "x": Evil()}))
    with pytest.raises(CnnspecError, match="not a cnnspec checkpoint"):
        train_toy(resume=bad)
    other = tmp_path / "other.ckpt"
    train_toy(checkpoint=other, stop_after=1)
    changed = cnnspec.check_source(RECIPE_SPEC.replace("dense 8 relu", "dense 9 relu"), "t.cnn").network(
        "net"
    )
    with pytest.raises(
        CnnspecError, match=r"these changed: the network \(its layers\)"
    ):  # said before loading
        train(changed, build_weights(changed), toy_data(48), epochs=2, progress=False, resume=other)


# ------------------------------------------------------------------ the command line


@pytest.fixture
def files(tmp_path):
    spec = tmp_path / "net.cnn"
    spec.write_text(RECIPE_SPEC)
    data = toy_data(60)
    np.savez(tmp_path / "data.npz", x=data.x, y=data.y)
    return spec, tmp_path / "data.npz"


def _tensors(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_resume_from_the_command_line(tmp_path, files, capsys):
    spec, data = files
    common = ["train", str(spec), "--data", str(data), "--epochs", "4", "--lr", "0.05", "--seed", "4"]
    assert main([*common, "-o", str(tmp_path / "whole.onnx")]) == 0
    assert not (tmp_path / "whole.ckpt").exists()  # a finished run leaves no checkpoint
    net = recipe_network()
    weights = build_weights(net, seed=4)
    from cnnspec.training.train import load_dataset

    dataset = load_dataset(data, net.input_shape, 3)
    train(
        net,
        weights,
        dataset,
        epochs=4,
        lr=0.05,
        seed=4,
        progress=False,
        checkpoint=tmp_path / "cut.ckpt",
        stop_after=2,
    )
    assert (
        main([*common, "-o", str(tmp_path / "cut.onnx")]) == 2
    )  # its checkpoint is there: never overwritten
    assert "--resume" in capsys.readouterr().err
    assert main([*common, "--resume", str(tmp_path / "cut.ckpt"), "-o", str(tmp_path / "cut.onnx")]) == 0
    whole, cut = _tensors(tmp_path / "whole.onnx"), _tensors(tmp_path / "cut.onnx")
    assert whole.keys() == cut.keys() and all(np.array_equal(whole[k], cut[k]) for k in whole)


def test_history_and_plot(tmp_path, files):
    spec, data = files
    args = [
        "train",
        str(spec),
        "--data",
        str(data),
        "--epochs",
        "3",
        "--schedule",
        "cosine",
        "--optimizer",
        "sgd",
    ]
    history, plot = tmp_path / "h.jsonl", tmp_path / "curves.png"
    assert main([*args, "--history", str(history), "--plot", str(plot), "-o", str(tmp_path / "m.onnx")]) == 0
    rows = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= rows[0].keys()
    image = np.asarray(Image.open(plot).convert("RGB")).astype(int)
    blue = (np.abs(image - [0x1F, 0x6F, 0xB2]).sum(axis=2) < 40).sum()
    orange = (np.abs(image - [0xC0, 0x5A, 0x00]).sum(axis=2) < 40).sum()
    assert image.shape[:2] == (340, 900) and blue > 50 and orange > 50  # training and validation curves


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "cuda"], "no CUDA device here (available: cpu)"),
        (["--amp"], "--amp (mixed precision) runs on CUDA"),
        (["--patience", "0"], "--patience must be at least 1"),
        (["--momentum", "1.5"], "--momentum in [0, 1)"),
    ],
)
def test_recipe_mistakes(tmp_path, files, capsys, extra, message):
    import torch

    if extra == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec, data = files
    assert main(["train", str(spec), "--data", str(data), *extra, "-o", str(tmp_path / "m.onnx")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_auto_says_which_device_ran(tmp_path, files, capsys):
    spec, data = files
    assert (
        main(
            [
                "train",
                str(spec),
                "--data",
                str(data),
                "--epochs",
                "1",
                "--device",
                "auto",
                "-o",
                str(tmp_path / "m.onnx"),
            ]
        )
        == 0
    )
    assert (
        "training net on cpu" in capsys.readouterr().err or "training net on cuda" in capsys.readouterr().err
    )


def test_evaluate_prints_accuracy_per_class_and_the_confusion_matrix(tmp_path, files, capsys):
    spec, data = files
    model = tmp_path / "m.onnx"
    assert (
        main(["train", str(spec), "--data", str(data), "--epochs", "6", "--lr", "0.05", "-o", str(model)])
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(data), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    import onnxruntime as ort

    arrays = np.load(data)
    predicted = ort.InferenceSession(str(model)).run(None, {"input": arrays["x"]})[0].argmax(1)
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (arrays["y"], predicted), 1)
    assert report["confusion"] == confusion.tolist() and report["examples"] == 60
    assert report["accuracy"] == pytest.approx(np.mean(predicted == arrays["y"]))
    assert [c["examples"] for c in report["classes"]] == np.bincount(arrays["y"], minlength=3).tolist()
    assert main(["evaluate", str(model), "--data", str(data)]) == 0
    table = capsys.readouterr().out
    assert (
        f"accuracy: {report['accuracy']:.4f}" in table
        and "confusion (rows: true class, columns: predicted)" in table
    )


def test_evaluate_on_a_class_folder_and_its_mistakes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(
                tmp_path / "data" / name / f"{i}.png"
            )
    spec = tmp_path / "two.cnn"
    spec.write_text("network two {\n  input 1x8x8\n  flatten\n  dense 2 softmax\n}\n")
    assert main(["evaluate", str(spec), "--data", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "accuracy:" in out and "cats" in out and "dogs" in out and "of 6)" in out
    seg = tmp_path / "seg.cnn"
    seg.write_text("network seg {\n  input 1x8x8\n  conv 2 1x1\n}\n")
    assert main(["evaluate", str(seg), "--data", str(tmp_path / "data")]) == 2
    assert "evaluate takes a classifier" in capsys.readouterr().err


def test_two_processes_started_by_torchrun_train_one_model(tmp_path, files):
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a free port for the processes to meet on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec, data = files
    out = tmp_path / "ddp.onnx"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
        "-m", "cnnspec", "train", str(spec), "--data", str(data), "--epochs", "2", "--batch-size", "8",
        "--history", str(tmp_path / "h.jsonl"), "-o", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes (torchrun, 8 examples a step each): all hold the same weights" in done.stdout
    assert done.stdout.count("wrote ") == 1 and done.stderr.count("epoch 1/2") == 1  # only the first speaks
    assert "training net on cpu x 2 processes" in done.stderr
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 2 and out.exists()
    assert not (tmp_path / "ddp.ckpt").exists()
