"""Issue 24, rule 2: `run`, `bench`, `evaluate` and `train` estimate their peak memory from
the graph before they start, and refuse (or, for evaluate, shrink) a batch that does not
fit, instead of being killed by the kernel halfway. The estimates themselves are checked
against measured peaks in the `slow` tests here and in tests/test_cli_run.py, and printed
beside them by benchmarks/bench_limits.py."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import onnx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import cnnspec
import cnnspec.base.resources as resources
from cnnspec.cost.memory import inference_peak
from cnnspec.deploy.export import build_model, save
from cnnspec.deploy.footprint import (
    PROBE_BYTES,
    Footprint,
    Measured,
    channel_padding,
    graph_memory,
    line_through,
    probe_batches,
    read_graph,
    train_memory,
)
from tests.conftest import ROOT
from tests.helpers import cli

ZOO = [
    ("specs/zoo/resnet.cnn", "resnet18"),
    ("specs/zoo/densenet121.cnn", "densenet121"),
    ("specs/zoo/unet.cnn", "unet"),
    ("specs/zoo/mobilenetv2.cnn", "mobilenetv2"),
    ("specs/zoo/inception_v3.cnn", None),
    ("specs/zoo/video.cnn", None),  # 3-D
    ("specs/zoo/audio.cnn", None),  # 1-D
    ("specs/lenet5.cnn", None),
]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _network(spec: str, name: str | None):
    result = cnnspec.check(ROOT / spec, name)
    return result.network(name) if name else result.network()


@pytest.mark.parametrize("spec, name", ZOO)
def test_an_onnx_file_s_graph_gives_the_liveness_its_spec_gives(spec, name):
    """Two ways to one figure: the liveness over the checked layers (cost.memory) and the
    liveness over the exported file's nodes (shapes from onnx's own inference), within
    10% (the file has nodes the spec does not, a Flatten's or a bias's). The weights are
    the same bytes: the run holds onnxruntime's copy, the conv weights' repacked copy and,
    for a spec, the numpy arrays; building the session one copy more."""
    network = _network(spec, name)
    model, _ = build_model(network, seed=0)
    footprint = graph_memory(model, held_weight_copies=1)
    assert footprint is not None
    layers = inference_peak(network).peak * channel_padding([entry.output_shape for entry in network.layers])
    assert footprint.live == pytest.approx(layers, rel=0.10), (layers, footprint.live)
    conv = 4 * sum(entry.params for entry in network.layers if entry.kind in ("conv", "deconv"))
    assert footprint.resident == pytest.approx(64 * 2**20 + 2 * network.param_bytes + 2 * conv, rel=1e-3)
    assert footprint.load - footprint.resident == pytest.approx(network.param_bytes, rel=1e-3)


def _chain(path, sizes: list[int], batch="N", spatial=8):
    """A model of 1x1 convs: channels `sizes[0]` -> ... -> sizes[-1], maps `spatial` wide."""
    nodes, inits, previous = [], [], "x"
    for i, (cin, cout) in enumerate(zip(sizes, sizes[1:])):
        inits.append(onnx.numpy_helper.from_array(np.ones((cout, cin, 1, 1), np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [f"t{i}"], kernel_shape=[1, 1]))
        previous = f"t{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0], spatial, spatial])
    y = helper.make_tensor_value_info(previous, TensorProto.FLOAT, [batch, sizes[-1], spatial, spatial])
    graph = helper.make_graph(nodes, "chain", [x], [y], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([16, 32, 48, 64]), min_size=2, max_size=8), st.sampled_from([4, 8, 16]))
def test_the_graph_liveness_of_a_chain_is_its_largest_neighbouring_pair(tmp_path_factory, sizes, spatial):
    """In a chain each map lives until the next is made: the peak is the largest sum of
    two neighbours (hand-worked: input and output count again as the run's own copies)."""
    path = _chain(tmp_path_factory.mktemp("chain") / "m.onnx", sizes, spatial=spatial)
    footprint = graph_memory(read_graph(path))
    pair = max(a + b for a, b in zip(sizes, sizes[1:])) * spatial * spatial * 4
    ends = (sizes[0] + sizes[-1]) * spatial * spatial * 4
    assert (footprint.live, footprint.ends) == (pair, ends)
    weights = sum(a * b for a, b in zip(sizes, sizes[1:])) * 4
    assert footprint.resident == 64 * 2**20 + 3 * weights  # onnxruntime's copy, the conv weights two more
    assert footprint.load == footprint.resident + weights  # the file as read
    for batch in (1, 2**20):  # below the pattern's limit 4 copies of the live set, above it 2
        copies = 4 if batch * pair < 64 * 2**20 else 2
        running = footprint.resident + batch * (copies * pair + ends)
        assert footprint.peak(batch) == max(footprint.load, running)


@settings(max_examples=200, deadline=None)
@given(
    resident=st.integers(0, 2**28),
    extra=st.integers(0, 2**26),
    live=st.integers(2**16, 2**24),
    ends=st.integers(0, 2**20),
    room=st.integers(-(2**20), 2**30),
    pattern=st.sampled_from([None, True, False]),
)
@example(resident=2**20, extra=0, live=2**20, ends=0, room=2**30, pattern=None)  # 511 fit, 64 to 255 too
def test_the_largest_batch_is_the_largest_whose_peak_fits(resident, extra, live, ends, room, pattern):
    """What a refusal names (`use --batch N or smaller`) and what evaluate takes, checked
    against every batch: below the pattern's limit a batch takes 4 live sets an image,
    above it 2, so a larger batch can fit where a smaller one does not."""
    footprint = Footprint(resident + extra, resident, live, ends)
    budget = resident + extra + room
    largest = footprint.largest_batch(budget, pattern)
    beyond = budget // (2 * live) + 2  # no larger batch fits: each image takes at least 2 live sets
    fitting = [b for b in range(1, beyond) if footprint.peak(b, pattern) <= budget]
    assert largest == max(fitting, default=0)


def test_no_estimate_where_the_graph_leaves_a_size_open(tmp_path):
    """A height left open (`H`) or a file onnx cannot read: no guess, and the run goes on."""
    path = tmp_path / "open.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert graph_memory(read_graph(path)) is None
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    assert read_graph(tmp_path / "junk.onnx") is None


def _fail_if_called(*args, **kwargs):
    pytest.fail("onnxruntime was started before the memory was checked")


def test_run_and_bench_refuse_an_onnx_batch_its_graph_does_not_fit(tmp_path, capsys, monkeypatch):
    path = _chain(tmp_path / "m.onnx", [16, 64, 16], spatial=64)
    footprint = graph_memory(read_graph(path))
    monkeypatch.setattr(resources, "available_memory", lambda: int(footprint.peak(50) / 0.9) + 1)
    monkeypatch.setattr("cnnspec.deploy.runtime.make_session", _fail_if_called)
    for command, pattern in (
        (["run", str(path), "--batch", "100"], None),
        (["bench", str(path), "--batch", "100"], True),
    ):
        code, _, err = cli(capsys, *command)
        largest = footprint.largest_batch(
            footprint.peak(50), pattern
        )  # bench keeps the pattern for every batch
        assert footprint.peak(largest, pattern) <= footprint.peak(50) < footprint.peak(largest + 1, pattern)
        assert (
            code == 2
            and f"a batch of 100 through {path}" in err
            and f"use --batch {largest} or smaller" in err
        ), err


def test_evaluate_takes_the_largest_batch_that_fits(tmp_path, capsys, monkeypatch):
    """evaluate picks its own batch: with memory for about 7 images it reads 7 at a time,
    and the scores are the same; with room for none it says so."""
    import cnnspec.training.evaluate as evaluation

    network = _network("specs/lenet5.cnn", None)
    model, _ = build_model(network, seed=0)
    save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 1, 32, 32), dtype=np.float32), y=rng.integers(0, 10, 40))
    args = ["evaluate", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"), "--format", "json"]
    code, whole, _ = cli(capsys, *args)
    assert code == 0
    batches = []
    real = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda *a: batches.append(a[-1]) or real(*a))
    footprint = graph_memory(read_graph(tmp_path / "m.onnx"))
    assert footprint.peak(7) < footprint.peak(8)
    monkeypatch.setattr(resources, "available_memory", lambda: int((footprint.peak(7) + 1) / 0.9) + 1)
    code, small, _ = cli(capsys, *args)
    assert code == 0 and batches == [7] and json.loads(small) == json.loads(whole)
    monkeypatch.setattr(resources, "available_memory", lambda: int(footprint.resident / 0.9))
    code, _, err = cli(capsys, *args)
    assert code == 2 and "one image" in err and "of memory" in err, err


def test_train_refuses_a_batch_that_does_not_fit_before_the_first_step(tmp_path, capsys, monkeypatch):
    network = _network("specs/lenet5.cnn", None)
    np.savez(tmp_path / "d.npz", x=np.zeros((64, 1, 32, 32), np.float32), y=np.zeros(64, np.int64))
    fixed, per_image = train_memory(network, 32, "adam", data_bytes=64 * 4 * 32 * 32)
    monkeypatch.setattr(resources, "available_memory", lambda: int((fixed + 20 * per_image) / 0.9) + 1)
    monkeypatch.setattr(
        "cnnspec.training.train.train", lambda *a, **k: pytest.fail("trained before checking")
    )
    out = tmp_path / "m.onnx"
    args = ["train", "specs/lenet5.cnn", "--data", str(tmp_path / "d.npz"), "-o", str(out), "--batch-size"]
    code, _, err = cli(capsys, *args, "32")
    assert (
        code == 2 and "training 'lenet5' on batches of 32" in err and "use --batch-size 20 or smaller" in err
    ), err
    assert not out.exists()


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 4096), optimizer=st.sampled_from(["sgd", "momentum", "adam"]))
def test_the_training_estimate_grows_with_the_batch_and_the_optimizer(batch, optimizer):
    """Whatever the batch: the fixed part holds at least the weights, their gradients and
    the optimizer's state, and each example at least what autograd keeps for it."""
    from cnnspec.cost import training_memory

    network = _network("specs/lenet5.cnn", None)
    fixed, per_example = train_memory(network, batch, optimizer)
    kept = training_memory(network, batch, optimizer)
    assert fixed >= kept.static and per_example >= kept.saved_per_image
    assert fixed + batch * per_example >= kept.total
    assert train_memory(network, batch + 1, optimizer)[1] == per_example


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, name, batch, optimizer",
    [
        ("specs/zoo/resnet.cnn", "resnet50", 4, "adam"),
        ("specs/zoo/densenet121.cnn", "densenet121", 4, "adam"),
    ],
)
def test_train_memory_estimate_against_the_measured_peak(spec, name, batch, optimizer, tmp_path):
    """One epoch on 32 random images: the estimate is not below the peak resident memory
    `cnnspec train` takes, and within 25% of it."""
    from benchmarks.bench_limits import measured_train_peak, random_images

    network = _network(spec, name)
    data = random_images(tmp_path / "d.npz", network.input_shape, 32, network.output_shape[0])
    measured = measured_train_peak(spec, name, batch, optimizer, data, tmp_path)
    assert measured["code"] == 0
    fixed, per_example = train_memory(
        network, batch, optimizer, data_bytes=32 * 4 * math.prod(network.input_shape)
    )
    estimate = fixed + batch * per_example
    assert measured["extra"] <= estimate <= 1.25 * measured["extra"], (
        estimate / 2**20,
        measured["extra"] / 2**20,
    )


def test_odd_graphs_get_an_estimate_or_none_never_an_error(tmp_path, capsys):
    """A graph whose output is a weight, one whose output no node makes, one with a view
    and no batch dimension: graph_memory answers (or declines), and `run` says what
    onnxruntime says, in one line."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    w = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    cases = {
        "weight_out": helper.make_graph(
            [helper.make_node("Relu", ["x"], ["r"])], "g", [x],
            [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])], initializer=[w],
        ),
        "unmade_out": helper.make_graph(
            [helper.make_node("Relu", ["x"], ["r"])], "g", [x],
            [helper.make_tensor_value_info("ghost", TensorProto.FLOAT, ["N", 2])],
        ),
        "view_only": helper.make_graph(
            [helper.make_node("Flatten", ["x"], ["f"])], "g", [x],
            [helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 2])],
        ),
    }  # fmt: skip
    for name, graph in cases.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        estimate = graph_memory(model)
        assert estimate is None or (estimate.peak(1) > 0 and estimate.live >= 0), name
        onnx.save(model, tmp_path / f"{name}.onnx")
        code, _, err = cli(capsys, "run", str(tmp_path / f"{name}.onnx"), "--repeat", "1")
        assert code in (0, 1, 2) and "internal error" not in err, (name, err)


def test_large_runs_go_without_the_memory_pattern(tmp_path, capsys, monkeypatch):
    """onnxruntime's memory pattern holds more for a large batch and saves time only on
    small ones: `run` on the CPU plans it below the limit and not above; `bench` keeps it
    (one session times every batch, batch 1 among them), and so does a run on another
    provider."""
    import cnnspec.deploy.runtime as runtime

    network = _network("specs/lenet5.cnn", None)
    model, _ = build_model(network, seed=0)
    footprint = graph_memory(model, held_weight_copies=1)
    limit = -(-(64 << 20) // footprint.live)  # the first batch above the limit
    patterns = []
    real = runtime.make_session
    monkeypatch.setattr(runtime, "make_session", lambda *a, **k: patterns.append(a[3:] or k) or real(*a, **k))
    for batch in (1, limit - 1, limit):
        assert cli(capsys, "run", "specs/lenet5.cnn", "--batch", str(batch), "--repeat", "1")[0] == 0
    run_auto = ["run", "specs/lenet5.cnn", "--batch", str(limit), "--repeat", "1", "--provider", "auto"]
    assert cli(capsys, *run_auto)[0] == 0  # a GPU, if there is one, keeps it: measured on the CPU only
    assert cli(capsys, "bench", "specs/lenet5.cnn", "--batch", f"1,{limit}", "--seconds", "0.1")[0] == 0
    said = [p[0] if isinstance(p, tuple) else p.get("memory_pattern", True) for p in patterns]
    assert said == [True, True, False, True, True], said


def test_a_refused_run_of_input_files_names_how_many_fit(tmp_path, capsys, monkeypatch):
    """With input files the batch is their number: the advice is a count of files, not --batch."""
    path = _chain(tmp_path / "m.onnx", [16, 64, 16], spatial=64)
    footprint = graph_memory(read_graph(path))
    monkeypatch.setattr(resources, "available_memory", lambda: int(footprint.peak(2) / 0.9) + 1)
    inputs = [str(tmp_path / f"x{i}.npy") for i in range(3)]
    for name in inputs:
        np.save(name, np.zeros((16, 64, 64), np.float32))
    code, _, err = cli(capsys, "run", str(path), "--input", *inputs)
    assert code == 2 and "give 2 inputs or fewer at a time" in err, err


def test_a_npy_of_many_examples_is_checked_once_read(tmp_path, capsys, monkeypatch):
    """One .npy file can hold N examples: the batch is known once it is read, and checked then."""
    path = _chain(tmp_path / "m.onnx", [16, 64, 16], spatial=64)
    footprint = graph_memory(read_graph(path))
    monkeypatch.setattr(resources, "available_memory", lambda: int(footprint.peak(2) / 0.9) + 1)
    np.save(tmp_path / "x.npy", np.zeros((5, 16, 64, 64), np.float32))
    code, _, err = cli(capsys, "run", str(path), "--input", str(tmp_path / "x.npy"))
    assert code == 2 and "a batch of 5 through" in err and "give 2 examples or fewer at a time" in err, err


@settings(max_examples=200, deadline=None)
@given(
    fixed=st.integers(0, 2**26),
    per_image=st.integers(1, 2**24),
    budget=st.integers(-(2**20), 2**31),
)
def test_a_measured_line_s_largest_batch_is_the_largest_whose_peak_fits(fixed, per_image, budget):
    """What a measured refusal names: the largest batch on the line within the budget."""
    line = Measured(fixed, per_image, (1, 2))
    largest = line.largest_batch(budget)
    assert largest >= 0 and (largest == 0 or line.peak(largest) <= budget) and line.peak(largest + 1) > budget


def test_the_line_through_two_probes_takes_the_slope_a_tenth_higher():
    """Hand-worked: 6 MiB at batch 2 and 16 MiB at batch 4 is 5 MiB an image (5.5 with the
    margin); 10 MiB and 16 MiB would be 3 MiB an image over 4 that do not grow, flatter
    than 16 MiB over 4 images from nothing, so 4 MiB an image (4.4); a peak that falls
    (noise) still takes the larger batch's bytes per image."""
    mib = 2**20
    assert line_through((2, 4), (6 * mib, 16 * mib)) == Measured(0, int(5.5 * mib), (2, 4))
    assert line_through((2, 4), (10 * mib, 16 * mib)) == Measured(0, int(4.4 * mib), (2, 4))
    assert line_through((1, 2), (5 * mib, 4 * mib)) == Measured(0, int(2.2 * mib), (1, 2))


def test_probe_batches_stay_below_the_batch_and_within_the_budget(tmp_path):
    footprint = graph_memory(read_graph(_chain(tmp_path / "m.onnx", [16, 64, 16], spatial=64)))
    per_image = footprint.per_image(10**6, memory_pattern=False)
    small, large = probe_batches(footprint, 10**6, 10**15)
    assert large == PROBE_BYTES // per_image and small == large // 2  # about PROBE_BYTES by the graph
    assert probe_batches(footprint, 5, 10**15) == (2, 4)  # below the batch itself
    tight = 3 * per_image
    assert probe_batches(footprint, 10**6, tight) == (1, 3)  # their images fit by the graph's estimate
    assert probe_batches(footprint, 2, 10**15) is None and probe_batches(footprint, 10**6, tight / 2) is None


def _free_for(spec: str, name: str | None, batch: int) -> int:
    """Bytes free where the graph's estimate of `batch` images through a spec's network
    does not fit (it takes all of them; a tenth is kept back): run has to measure."""
    model, _ = build_model(_network(spec, name), seed=0)
    return graph_memory(model, held_weight_copies=1).peak(batch)


def _named(spec: str, name: str | None) -> list[str]:
    return [spec, *(["--network", name] if name else [])]


def _estimate(measured: dict, batch: int) -> int:
    fixed, per_image, _ = measured["line"]
    return fixed + batch * per_image


def test_a_batch_the_graph_refuses_is_measured_and_runs_within_the_measurement():
    """Issue 24, rule 2: where the graph's estimate (an upper bound, up to 2.2x) does not
    let a batch through, `run` measures it on two smaller batches, with onnxruntime's
    arena off and malloc handing freed blocks back, and runs it: the peak of its runs is
    then within 25% of the measurement and not above it (LeNet-5: 10% above, the margin)."""
    from benchmarks.bench_limits import measured_mode_run

    batch = 20000
    measured = measured_mode_run(
        [*_named("specs/lenet5.cnn", None), "--batch", str(batch), "--repeat", "1"],
        _free_for("specs/lenet5.cnn", None, batch),
    )
    assert measured["code"] == 0 and "line" in measured, measured
    estimate = _estimate(measured, batch)
    assert measured["run_peak"] <= estimate <= 1.25 * measured["run_peak"], (estimate, measured)


def test_a_measured_refusal_names_a_batch_that_fits():
    """With room for a fraction of the batch by measurement, the refusal names the largest
    by the measured line (the batch's input counted); that batch (less the 1-2% two
    measurements in two processes differ by), with the same memory free, is measured
    again and runs within the measurement."""
    from benchmarks.bench_limits import measured_mode_run

    args = [*_named("specs/zoo/audio.cnn", "m5"), "--repeat", "1"]  # a 1-D network
    free = _free_for("specs/zoo/audio.cnn", "m5", 64) // 3
    refused = measured_mode_run([*args, "--batch", "640"], free)
    named = re.search(
        r"measured on batches of [\d,]+ and [\d,]+\) needs .* use --batch ([\d,]+) or smaller",
        refused["stderr"],
    )
    assert refused["code"] == 2 and named, refused
    largest = int(named[1].replace(",", ""))
    fixed, per_image, _ = refused["line"]
    assert fixed + largest * (per_image + 4 * 16000) <= 0.9 * free  # (M5 takes 1x16000 samples)
    fits = largest * 97 // 100  # (measured again, in another process: 1-2% apart)
    ran = measured_mode_run([*args, "--batch", str(fits)], free)
    assert ran["code"] == 0 and "line" in ran and ran["run_peak"] <= _estimate(ran, fits), ran


def test_a_npy_of_many_examples_is_measured_once_read(tmp_path):
    """One .npy of 200 examples given as one input: the batch is known once read; where
    the graph's estimate does not let it through, it is measured then (a session without
    the arena built for it) and runs within the measurement."""
    from benchmarks.bench_limits import measured_mode_run

    path = _chain(tmp_path / "m.onnx", [16, 64, 16], spatial=64)
    footprint = graph_memory(read_graph(path))
    np.save(tmp_path / "x.npy", np.zeros((200, 16, 64, 64), np.float32))
    ran = measured_mode_run(
        [str(path), "--input", str(tmp_path / "x.npy"), "--repeat", "1"], footprint.peak(200)
    )
    assert ran["code"] == 0 and "cnnspec: note: a batch of 200 through" in ran["stderr"], ran
    assert ran["run_peak"] <= _estimate(ran, 200) <= 1.25 * ran["run_peak"], ran


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, name",
    [
        ("specs/zoo/resnet.cnn", "resnet50"),  # onnxruntime holds 0.54x the graph's live set
        ("specs/zoo/mobilenetv2.cnn", "mobilenetv2"),
        ("specs/zoo/densenet121.cnn", "densenet121"),  # concatenations
        ("specs/zoo/unet.cnn", "unet"),  # 1.48x
        ("specs/zoo/convnext.cnn", "convnext_tiny"),  # layer norms: transposes
        ("specs/zoo/unet3d.cnn", "unet3d_small"),  # 3-D
    ],
)
def test_a_measured_batch_runs_within_25_percent_of_its_measurement(spec, name):
    """Rule 2 for networks where the graph's estimate is furthest from the peak (2x to
    3.8x the arena-free peak; onnxruntime's own rewrites): a batch whose images take
    about three times the session by that estimate, with memory free for the session and
    not for the batch by it, is measured on two smaller batches, and the run's peak is at
    most the measurement and within 25% of it."""
    from benchmarks.bench_limits import measured_mode_run

    model, _ = build_model(_network(spec, name), seed=0)
    footprint = graph_memory(model, held_weight_copies=1)
    batch = max(4, math.ceil(3 * footprint.load / footprint.per_image(10**6, memory_pattern=False)))
    args = [spec, "--network", name, "--batch", str(batch), "--repeat", "1"]
    ran = measured_mode_run(args, footprint.peak(batch))
    assert ran["code"] == 0 and "line" in ran, ran
    assert ran["run_peak"] <= _estimate(ran, batch) <= 1.25 * ran["run_peak"], ran


def _train_args(
    spec: str, name: str, batch: int, optimizer: str, examples: int, scratch
) -> tuple[list[str], int]:
    """`cnnspec train` arguments for one epoch on random examples, and the bytes free
    where the estimate from the network does not let the batch through."""
    from benchmarks.bench_limits import random_images

    network = _network(spec, name)
    data = random_images(scratch / "data.npz", network.input_shape, examples, network.output_shape[0])
    fixed, per_example = train_memory(
        network, batch, optimizer, data_bytes=examples * 4 * math.prod(network.input_shape)
    )
    args = [spec, "--network", name, "--data", str(data), "--epochs", "1", "--batch-size", str(batch)]
    return [*args, "--optimizer", optimizer, "-o", str(scratch / "out.onnx")], fixed + batch * per_example


def _trained_within_its_measurement(measured: dict) -> None:
    assert measured["code"] == 0 and "estimate" in measured, measured
    peak = measured["extra"] - measured["measured_at"]  # above the process when it measured
    assert peak <= measured["estimate"] <= 1.25 * peak, (measured["estimate"] / 2**20, peak / 2**20)


def test_a_training_batch_the_estimate_refuses_is_measured_and_trains_within_it(tmp_path):
    """Rule 2 for `train`: where the estimate from the network (an upper bound, 1.1x-1.6x)
    does not let a batch through, two smaller steps are measured and the epoch's peak is
    within 25% of the measurement, not above it (LeNet-5 at batch 2,048)."""
    from benchmarks.bench_limits import measured_mode_run

    args, free = _train_args("specs/lenet5.cnn", "lenet5", 2048, "adam", 8192, tmp_path)
    measured = measured_mode_run(args, free, command="train")
    assert "measured on steps of" in measured["stderr"]
    _trained_within_its_measurement(measured)


def test_a_measured_training_refusal_names_a_batch_size_that_trains(tmp_path):
    """With room for about half the batch by measurement: the refusal names the largest
    --batch-size by the measured line, and that batch size (less the 1-2% two
    measurements in two processes differ by) trains."""
    from benchmarks.bench_limits import measured_mode_run

    args, free = _train_args("specs/lenet5.cnn", "lenet5", 4096, "adam", 8192, tmp_path)
    refused = measured_mode_run(args, free // 2, command="train")
    named = re.search(
        r"measured on steps of [\d,]+ and [\d,]+\) needs .* use --batch-size ([\d,]+) or smaller",
        refused["stderr"],
    )
    assert refused["code"] == 2 and named, refused["stderr"]
    index = args.index("--batch-size") + 1
    args[index] = str(int(named[1].replace(",", "")) * 97 // 100)  # (measured again: 1-2% apart)
    assert measured_mode_run(args, free // 2, command="train")["code"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, name, batch, optimizer",
    [
        ("specs/zoo/resnet.cnn", "resnet18", 16, "sgd"),  # the estimate from the network: 1.49x
        ("specs/zoo/mobilenetv2.cnn", "mobilenetv2", 16, "adam"),  # 1.63x
        ("specs/zoo/shufflenetv2.cnn", "shufflenetv2", 8, "adam"),
        ("specs/zoo/googlenet.cnn", "googlenet", 8, "sgd"),
    ],
)
def test_a_measured_training_batch_trains_within_25_percent_of_its_measurement(
    spec, name, batch, optimizer, tmp_path
):
    from benchmarks.bench_limits import measured_mode_run

    args, free = _train_args(spec, name, batch, optimizer, 32, tmp_path)
    _trained_within_its_measurement(measured_mode_run(args, free, command="train"))


def test_a_measured_training_run_trains_the_same_weights(tmp_path):
    """The measurement's steps go through a module of their own, with the random numbers
    put back: two epochs trained measured and not give the same weights, bit for bit."""
    from benchmarks.bench_limits import measured_mode_run

    trained = []
    for measured in (True, False):
        args, free = _train_args("specs/lenet5.cnn", "lenet5", 512, "adam", 2048, tmp_path)
        out = tmp_path / f"out-{measured}.onnx"
        args[args.index("-o") + 1] = str(out)
        ran = measured_mode_run([*args, "--epochs", "2"], free if measured else None, command="train")
        assert ran["code"] == 0 and ("line" in ran) == measured, ran
        model = onnx.load(str(out))
        trained.append({t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer})
    assert trained[0].keys() == trained[1].keys()
    assert all(np.array_equal(trained[0][name], trained[1][name]) for name in trained[0])


def test_a_network_train_cannot_fit_is_refused_as_such_when_measured(tmp_path):
    """A segmentation network (maps out, not class scores): measured or not, `train` says
    so in one line (the measurement's step once ended in an internal error here)."""
    from benchmarks.bench_limits import measured_mode_run

    args, free = _train_args("specs/zoo/unet3d.cnn", "unet3d_small", 8, "sgd", 16, tmp_path)
    for free_memory in (free, None):
        refused = measured_mode_run(args, free_memory, command="train")
        assert refused["code"] == 1 and "training needs class scores" in refused["stderr"], refused["stderr"]
        assert "internal error" not in refused["stderr"]
