"""Latency per layer: the roofline arithmetic by hand, the kernels onnxruntime fuses
(checked against its own profiler's kernel names), and a calibration's profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cnnspec.cost.latency import KERNELS, LAUNCH, ROOFLINES, load_profile, predict
from cnnspec.deploy.export import build_model
from tests.conftest import SPECS, check_text, net
from tests.helpers import cli


def test_roofline_time_and_bound_by_hand():
    """A 3x3 conv of 64 to 64 channels on 56x56 and a depthwise 3x3 on the same map, on a
    T4 (8.1 TFLOP/s, 320 GB/s: ridge 25.3 FLOPs per byte)."""
    network = check_text(
        net("conv 64 3x3 pad=1 bias=false as full\nconv 64 3x3 pad=1 groups=64 bias=false as dw", "64x56x56")
    ).network()
    t4 = load_profile("t4")
    timed = {row.name: row for row in predict(network, t4).layers}
    values = 64 * 56 * 56
    full_flops, full_bytes = 2 * 64 * 64 * 9 * 56 * 56, 4 * (2 * values + 64 * 64 * 9)
    assert (timed["full"].flops, timed["full"].nbytes) == (full_flops, full_bytes)
    assert math.isclose(timed["full"].seconds, LAUNCH + full_flops / 8.1e12)
    dw_flops, dw_bytes = 2 * 64 * 9 * 56 * 56, 4 * (2 * values + 64 * 9)
    assert math.isclose(timed["dw"].seconds, LAUNCH + dw_bytes / 320e9)
    # 9 MACs per output for the depthwise conv against 576: it waits on memory
    assert timed["full"].bound(t4) == "compute" and timed["dw"].bound(t4) == "memory"
    assert full_flops / full_bytes > t4.ridge > dw_flops / dw_bytes


def _profiled_kernels(network) -> set[str]:
    """The kernels onnxruntime runs, by its own profiler: each named after a layer."""
    import onnxruntime as ort

    model, _ = build_model(network)
    options = ort.SessionOptions()
    options.enable_profiling = True
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"input": np.zeros((1, *network.input_shape), np.float32)})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    return {
        event["name"][: -len("_kernel_time")].removesuffix("_nchwc")
        for event in events
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
    }


def test_fused_kernels_are_the_ones_onnxruntime_runs():
    network = check_text(
        net(
            "conv 16 3x3 pad=1 bias=false; batchnorm; relu\nresidual {\n  conv 16 3x3 pad=1 bias=false; batchnorm; relu\n"
            "  conv 16 3x3 pad=1 bias=false; batchnorm\n}\nrelu\npool max 2\nsigmoid\nglobalpool avg\nflatten\ndropout 0.5\ndense 10",
            "3x32x32",
        )
    ).network()
    latency = predict(network, load_profile("t4"))
    group_of = {row.name: row.group for row in latency.layers}
    kernels = {row.name for row in latency.layers if row.seconds}  # one per predicted kernel
    profiled = _profiled_kernels(network)
    layout = {name for name in profiled if name.startswith("Reorder")}  # NCHWc layout changes
    # every kernel onnxruntime ran is named after a layer of one predicted kernel, and each
    # predicted kernel ran once: batch norm, relu, the residual add and dropout fused or gone
    assert {group_of[name] for name in profiled - layout} == kernels
    assert len(profiled - layout) == len(kernels)
    fused = {row.name: row.group for row in latency.layers if row.group != row.name}
    assert fused["bn1"] == fused["relu1"] == "conv1" and fused["add1"] == fused["relu3"] == "conv3"


def test_a_calibrated_profile_is_written_loaded_and_used(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, out, _ = cli(capsys, "calibrate", "here", "--quick")
    assert code == 0 and "wrote" in out
    profile = load_profile("here")
    assert profile.calibrated and set(profile.fits) == {"1", "8"}
    network = check_text(net("conv 16 3x3 pad=1 relu\npool max 2\nflatten\ndense 10", "3x32x32")).network()
    one, eight = predict(network, profile, 1).total, predict(network, profile, 8).total
    assert 0 < one < 1 and 0 < eight < 1  # --quick: one sample per kind, a rough fit
    code, out, _ = cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--latency", "here", "--format", "json")
    data = json.loads(out)["networks"][0]
    assert data["latency"]["calibrated"] and data["latency"]["total_seconds"] > 0
    assert data["layers"][0]["latency_seconds"] > 0 and data["layers"][0]["bound"] in ("compute", "memory")


def test_check_latency_names_the_devices_it_knows(capsys):
    code, out, _ = cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--latency", "rpi5", "--batch", "4")
    assert code == 0 and "roofline estimate, not calibrated" in out and "batch 4" in out and "bound" in out
    code, _, err = cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--latency", "abacus")
    assert code == 2 and "no device 'abacus'" in err and all(name in err for name in ROOFLINES)


def test_bench_per_layer_puts_each_kernel_beside_its_prediction(capsys, tmp_path):
    spec = str(SPECS / "lenet5.cnn")
    code, out, _ = cli(
        capsys, "bench", spec, "--batch", "1", "--seconds", "0.05", "--per-layer", "--latency", "t4"
    )
    assert code == 0 and "per kernel at batch 1" in out and "predicted on t4" in out
    rows = {line.split()[0]: line for line in out.splitlines()[out.splitlines().index(next(
        line for line in out.splitlines() if line.startswith("kernel"))) + 1 :]}  # fmt: skip
    assert "total" in rows and any(name.startswith("conv1") or name.startswith("relu1") for name in rows)
    assert all("ms" in line for line in rows.values())
    code, _, err = cli(capsys, "bench", spec, "--per-layer", "--format", "json")
    assert code == 2 and "--per-layer prints a table" in err
    model = tmp_path / "m.onnx"
    assert cli(capsys, "export", spec, "-o", str(model))[0] == 0
    code, _, err = cli(capsys, "bench", str(model), "--per-layer", "--latency", "t4")
    assert code == 2 and "predicts from a .cnn spec" in err


def test_streamed_bytes_are_those_of_tensors_larger_than_a_cores_cache():
    """A 1x1 conv on a 16x128x128 map (1 MiB in, 4 MiB out) streams its output only; the
    same conv on 16x32x32 streams nothing; at batch 8 its input streams too."""
    network = check_text(net("conv 64 1x1 bias=false as wide", "16x128x128")).network()
    row = predict(network, load_profile("t4")).layers[0]
    assert row.streamed == 4 * 64 * 128 * 128 and row.nbytes == 4 * (16 + 64) * 128 * 128 + 4 * 16 * 64
    eight = predict(network, load_profile("t4"), 8).layers[0]
    assert eight.streamed == 8 * 4 * (16 + 64) * 128 * 128
    small = check_text(net("conv 64 1x1 bias=false", "16x32x32")).network()
    assert predict(small, load_profile("t4")).layers[0].streamed == 0


def test_the_fit_recovers_known_costs_and_keeps_them_non_negative():
    from cnnspec.deploy.calibrate import _fit

    rng = np.random.default_rng(0)
    truth = np.array([2e-6, 5e-12, 3e-11, 6e-11])  # 2 µs a kernel, 200 GFLOP/s, 33 GB/s, +17 GB/s
    features = np.column_stack(
        [
            rng.integers(1, 4, 40),
            rng.uniform(1e6, 1e9, 40),
            rng.uniform(1e4, 1e7, 40),
            rng.uniform(0, 1e7, 40),
        ]
    )
    rows = [(*f, float(f @ truth)) for f in features]
    assert np.allclose(_fit(rows), truth, rtol=1e-6)
    # a cost that only ever falls with more FLOPs cannot be fitted with a negative rate
    falling = [(1, flops, 1e4, 0, 1e-3 - flops * 1e-13) for flops in (1e6, 1e8, 1e9)]
    assert all(value >= 0 for value in _fit(falling))


def test_a_profile_of_the_earlier_three_term_fit_is_refused(tmp_path, monkeypatch):
    from cnnspec.cost.latency import KERNELS, UnknownDevice

    old = {"name": "old", "description": "", "calibrated": True, "peak_flops": 1e11, "bandwidth": 1e10}
    old |= {"fits": {"1": {kind: [0.0, 1e-11, 1e-10] for kind in KERNELS}}, "overhead": 0.0}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    try:
        load_profile(str(path))
    except UnknownDevice as exc:
        assert "another cnnspec version" in str(exc) and "cnnspec calibrate" in str(exc)
    else:
        raise AssertionError("a three-term profile was loaded")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"fits": {"1": "k"}}, "another cnnspec version"),
        ({"fits": {"x": None}}, "batch sizes of 1 or more"),
        ({"fits": {}}, "batch sizes of 1 or more"),
        ({"overhead": "x"}, "overhead at least 0"),
        ({"peak_flops": 0}, "positive numbers"),
        ({"bandwidth": True}, "positive numbers"),
        ({"calibrated": "yes"}, "wrong type"),
        ({"name": 3}, "not text"),
        ({"fits": {"1": {kind: ["a", 0, 0, 0] for kind in KERNELS}}}, "not a number of at least 0"),
        ({"fits": {"1": {kind: [0, -1e-11, 0, 0] for kind in KERNELS}}}, "not a number of at least 0"),
    ],
)
def test_a_crafted_profile_is_one_usage_error(change, reason, tmp_path, capsys):
    good = {"name": "p", "description": "", "calibrated": True, "peak_flops": 1e11, "bandwidth": 1e10}
    good |= {"fits": {"1": {kind: [1e-6, 1e-11, 1e-10, 0.0] for kind in KERNELS}}, "overhead": 0.0}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(good))
    assert cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--latency", str(path))[0] == 0
    path.write_text(json.dumps(good | change))
    code, _, err = cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--latency", str(path))
    assert code == 2 and reason in err and "run `cnnspec calibrate` again" in err
