"""int8 export, --optimize, bench and --threads. Times are printed, never asserted; what is
asserted is what the files hold and how the models compare with fp32 in onnxruntime."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cnnspec.cli import main
from tests.conftest import SPECS

CIFAR = str(SPECS / "cifar.cnn")


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cal") / "cal.npz"
    np.savez(path, x=np.random.default_rng(0).random((60, 3, 32, 32), dtype=np.float32))
    return path


def test_int8_export_writes_a_per_channel_qdq_model_and_reports_agreement(tmp_path, calibration, capsys):
    out = tmp_path / "c8.onnx"
    assert main(["export", CIFAR, "--int8", "--calibrate", str(calibration), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    match = re.search(r"top-1 agreement with fp32 (\d+\.\d)% on (\d+) held-out examples", text)
    assert match and int(match.group(2)) == 12  # every fifth of 60, never calibrated on
    model = onnx.load(out)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(out)
    weights = {init.name: init for init in model.graph.initializer}
    per_channel = [
        node
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and weights.get(node.input[1]) is not None
        and weights[node.input[1]].dims
    ]
    assert per_channel and any(weights[n.input[1]].dims[0] == 32 for n in per_channel)  # a scale per filter
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert int8 and out.stat().st_size < 0.4 * 621_258 * 4  # int8 weights: about a quarter of fp32
    x = np.random.default_rng(1).random((4, 3, 32, 32), dtype=np.float32)
    assert _run(out, x).shape == (4, 10)


def test_a_trained_model_keeps_its_answers_in_int8(tmp_path, capsys):
    """LeNet-style digits classifier trained on scikit-learn's digits: int8 agrees with fp32
    on held-out real images."""
    pytest.importorskip("torch", reason="training is the cnnspec[train] extra")
    sklearn = pytest.importorskip("sklearn.datasets", reason="the digits are the cnnspec[examples] extra")
    digits = sklearn.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    np.savez(tmp_path / "digits.npz", x=x, y=digits.target)
    spec = tmp_path / "d.cnn"
    spec.write_text(
        "network d {\n  input 1x8x8\n  conv 16 3x3 pad=1 relu\n  conv 32 3x3 pad=1 relu\n  pool max 2\n"
        "  flatten\n  dense 64 relu\n  dense 10 softmax\n}\n"
    )
    trained = tmp_path / "d.onnx"
    args = ["train", str(spec), "--data", str(tmp_path / "digits.npz"), "--epochs", "4", "-o", str(trained)]
    assert main(args) == 0
    np.savez(tmp_path / "cal.npz", x=x[:500])
    out = tmp_path / "d8.onnx"
    args = [
        "export",
        str(spec),
        "--weights",
        str(trained),
        "--int8",
        "--calibrate",
        str(tmp_path / "cal.npz"),
    ]
    assert main([*args, "-o", str(out)]) == 0
    reported = float(re.search(r"agreement with fp32 (\d+\.\d)%", capsys.readouterr().out).group(1))
    held_out = x[500:]  # not one of them was calibrated on
    fp32, int8 = _run(trained, held_out), _run(out, held_out)
    agreement = float(np.mean(fp32.argmax(1) == int8.argmax(1)))
    assert agreement >= 0.98 and reported >= 98.0
    assert float(np.mean(fp32.argmax(1) == digits.target[500:])) > 0.8  # it did learn


def test_int8_auto_writes_the_model_it_says_it_kept(tmp_path, calibration, capsys):
    out = tmp_path / "auto.onnx"
    assert main(["export", CIFAR, "--int8", "auto", "--calibrate", str(calibration), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert re.search(
        r"measured here: batch 1: [\d.]+ ms fp32, [\d.]+ ms int8 \([\d.]+x\), batch 8", captured.out
    )
    kept_fp32 = "wrote the fp32 model (--int8 auto)" in captured.err
    assert kept_fp32 != ("int8 is faster here: wrote the int8 model" in captured.out)
    assert ("QuantizeLinear" in _ops(out)) is not kept_fp32


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--int8"], 2, "--int8 needs --calibrate DATA"),
        (["--calibrate", "x.npz"], 2, "--calibrate goes with --int8"),
        (["--int8", "--calibrate", "CAL", "--optimize"], 2, "--optimize applies to fp32 models"),
        (["--mean", "0.5"], 2, "--mean and --std apply to the --calibrate examples"),
        (["--int8", "--calibrate", "nowhere.npz"], 2, "nowhere.npz: no such calibration data"),
        (["--int8", "--calibrate", "ONE"], 1, "needs at least 2 examples"),
        (["--int8", "--calibrate", "WRONG"], 1, "the network takes Nx3x32x32"),
    ],
)
def test_int8_mistakes(tmp_path, calibration, capsys, extra, code, message):
    np.savez(tmp_path / "one.npz", x=np.zeros((1, 3, 32, 32), np.float32))
    np.savez(tmp_path / "wrong.npz", x=np.zeros((5, 1, 32, 32), np.float32))
    names = {"CAL": str(calibration), "ONE": str(tmp_path / "one.npz"), "WRONG": str(tmp_path / "wrong.npz")}
    out = tmp_path / "m.onnx"
    assert main(["export", CIFAR, *[names.get(e, e) for e in extra], "-o", str(out)]) == code
    assert message in capsys.readouterr().err and not out.exists()


def test_int8_from_an_image_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    args = [
        "export",
        CIFAR,
        "--int8",
        "--calibrate",
        str(tmp_path / "imgs"),
        "--mean",
        "0.5",
        "--std",
        "0.25",
    ]
    assert main([*args, "-o", str(tmp_path / "f.onnx")]) == 0
    assert "on 2 held-out examples" in capsys.readouterr().out


def test_optimize_writes_onnxruntimes_graph_with_equal_outputs(tmp_path, capsys):
    plain, optimized = tmp_path / "plain.onnx", tmp_path / "opt.onnx"
    assert main(["export", CIFAR, "-o", str(plain)]) == 0
    assert main(["export", CIFAR, "--optimize", "-o", str(optimized)]) == 0
    assert "optimised offline" in capsys.readouterr().out
    assert "BatchNormalization" in _ops(plain) and "BatchNormalization" not in _ops(optimized)  # fused
    x = np.random.default_rng(2).random((3, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(_run(optimized, x), _run(plain, x), rtol=1e-4, atol=1e-6)


def test_bench_prints_fp32_and_int8_side_by_side(tmp_path, calibration, capsys):
    args = ["bench", CIFAR, "--batch", "1,4", "--seconds", "0.05", "--threads", "1"]
    assert main([*args, "--int8-calibrate", str(calibration)]) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider, 1 threads" in out
    rows = re.findall(
        r"^\s+(\d+)\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d,]+\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d,]+\s+([\d.]+)x$", out, re.M
    )
    assert [r[0] for r in rows] == ["1", "4"]
    assert re.search(r"^deploy: (int8|fp32|int8 for batch sizes [\d, ]+; fp32 otherwise)", out, re.M)
    assert "int8 top-1 agreement with fp32" in out
    assert main([*args, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [t["batch"] for t in document["fp32"]] == [1, 4] and document["int8"] == []
    assert document["threads"] == 1 and document["input"] == [3, 32, 32]
    assert all(t["p50_ms"] <= t["p90_ms"] for t in document["fp32"])


def test_bench_takes_an_onnx_model_and_refuses_spec_options(tmp_path, capsys):
    model = tmp_path / "c.onnx"
    assert main(["export", CIFAR, "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["bench", str(model), "--batch", "2", "--seconds", "0.05"]) == 0
    assert re.search(r"^\s+2\s+[\d.]+ ms", capsys.readouterr().out, re.M)
    assert main(["bench", str(model), "--weights", "w.npz"]) == 2
    for bad in (["--batch", "0"], ["--batch", "1,x"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(["bench", str(model), *bad])
        assert exit_.value.code == 2


def test_run_takes_threads(capsys):
    assert main(["run", CIFAR, "--threads", "1", "--repeat", "1"]) == 0
    assert "latency:" in capsys.readouterr().out


# ------------------------------------------------------------------ float16


@pytest.mark.parametrize(
    "spec, network",
    [
        ("cifar.cnn", None),
        ("lenet5.cnn", None),
        ("branches.cnn", "unet_small"),
        ("zoo/mobilenetv2.cnn", None),
    ],
)
def test_fp16_export_takes_and_gives_float32_and_stays_close(tmp_path, spec, network, capsys):
    plain, half = tmp_path / "plain.onnx", tmp_path / "half.onnx"
    options = ["--network", network] if network else []
    assert main(["export", str(SPECS / spec), *options, "-o", str(plain)]) == 0
    assert main(["export", str(SPECS / spec), *options, "--fp16", "-o", str(half)]) == 0
    assert "float16 inside" in capsys.readouterr().out
    model = onnx.load(half)
    kinds = {init.data_type for init in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds
    assert model.graph.node[0].op_type == "Cast" and model.graph.node[-1].op_type == "Cast"
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"
    session = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    assert all(o.type == "tensor(float)" for o in session.get_outputs())
    shape = session.get_inputs()[0].shape[1:]
    x = np.random.default_rng(3).random((2, *shape), dtype=np.float32)
    reference = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    for a, b in zip(reference, session.run(None, {"input": x}), strict=True):
        assert np.abs(a - b).max() <= 2e-2 * np.abs(a).max() + 1e-3


def test_fp16_refuses_values_beyond_its_range(tmp_path, capsys):
    spec = tmp_path / "s.cnn"
    spec.write_text("network s {\n  input 1x4x4\n  conv 1 1x1\n}\n")
    np.savez(
        tmp_path / "w.npz",
        **{"conv1.weight": np.full((1, 1, 1, 1), 1e6, np.float32), "conv1.bias": np.zeros(1, np.float32)},
    )
    out = tmp_path / "s.onnx"
    assert main(["export", str(spec), "--weights", str(tmp_path / "w.npz"), "--fp16", "-o", str(out)]) == 1
    assert (
        "values above float16's range (65,504) in conv1.weight" in capsys.readouterr().err
        and not out.exists()
    )
    assert main(["export", str(spec), "--fp16", "--optimize", "-o", str(out)]) == 2


def test_bench_and_export_share_one_agreement_rule():
    """int8 that is faster everywhere but agrees with fp32 on 95% of held-out examples:
    export warns, and bench no longer says deploy int8."""
    from types import SimpleNamespace

    from cnnspec.cli.bench import _deploy, _Measured
    from cnnspec.deploy.int8 import AGREEMENT_WARNING, agreement_problem

    faster = SimpleNamespace(verdict=lambda: "int8")
    for top1, expected in ((0.95, "fp32"), (AGREEMENT_WARNING, "int8"), (1.0, "int8")):
        agreement = SimpleNamespace(top1=top1)
        measured = _Measured("m", (1, 8, 8), "CPU", faster, agreement, quantized=True)
        assert _deploy(measured) == expected
        assert (agreement_problem(agreement) is None) == (expected == "int8")


def test_the_calibration_reader_fills_a_model_s_fixed_batch():
    """A model exported for batches of 2 gets 2 examples at a time; the last batch is filled
    with the first examples again, not zeros (which would skew the ranges)."""
    from cnnspec.deploy.int8 import _Reader

    x = np.arange(5, dtype=np.float32).reshape(5, 1)
    reader = _Reader("x", x, 2)
    batches = []
    while (feed := reader.get_next()) is not None:
        batches.append(feed["x"].ravel().tolist())
    assert batches == [[0, 1], [2, 3], [4, 0]]
    one = _Reader("x", x)
    assert one.x is x and [one.get_next()["x"].ravel().tolist() for _ in range(5)] == [[i] for i in range(5)]
