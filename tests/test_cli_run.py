"""`cnnspec export` and `cnnspec run` from the command line: outputs, files and every
kind of bad input (one clear line, a non-zero exit, no traceback, no partial file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

import cnnspec
from cnnspec.cli import main
from tests.conftest import ROOT, SPECS
from tests.helpers import cli


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_export_writes_a_valid_model(tmp_path, capsys):
    out = tmp_path / "lenet5.onnx"
    code, stdout, _ = cli(capsys, "export", "specs/lenet5.cnn", "-o", str(out), "--seed", "3")
    assert code == 0 and "network lenet5, input Nx1x32x32, output Nx10" in stdout
    assert "61,706 newly initialised" in stdout
    onnx.checker.check_model(str(out), full_check=True)
    assert [p.name for p in tmp_path.iterdir()] == ["lenet5.onnx"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_export_of_a_spec_with_errors_writes_nothing(tmp_path, capsys):
    out = tmp_path / "bad.onnx"
    code, _, err = cli(capsys, "export", "specs/mistakes.cnn", "--network", "shapes", "-o", str(out))
    assert code == 1 and "[shape-mismatch]" in err and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_needs_a_network_when_there_are_several(tmp_path, capsys):
    code, _, err = cli(capsys, "export", "specs/textbook.cnn", "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and "--network NAME" in err


def test_export_never_overwrites_its_input(tmp_path, capsys):
    spec = tmp_path / "net.cnn"
    spec.write_text((SPECS / "lenet5.cnn").read_text())
    code, _, err = cli(capsys, "export", str(spec), "-o", str(spec))
    assert code == 2 and "refusing to overwrite" in err
    assert spec.read_text() == (SPECS / "lenet5.cnn").read_text()


@pytest.mark.parametrize("command", ["export", "run", "bench", "train", "evaluate"])
@pytest.mark.parametrize("opset", ["12", "99", "-1"])
def test_every_command_refuses_unsupported_opsets_as_it_reads_them(tmp_path, capsys, command, opset):
    """(evaluate took any opset and failed inside the exporter: exit 70.)"""
    with pytest.raises(SystemExit) as refused:
        main([command, "specs/lenet5.cnn", "--opset", opset])
    assert refused.value.code == 2 and "argument --opset" in capsys.readouterr().err


def test_export_with_missing_weights_file(tmp_path, capsys):
    code, _, err = cli(
        capsys, "export", "specs/lenet5.cnn", "-o", str(tmp_path / "x.onnx"), "--weights", "nope.npz"
    )
    assert code == 2 and "nope.npz: no such weights file" in err


def test_export_weights_mismatch_names_the_tensor(tmp_path, capsys):
    np.savez(tmp_path / "w.npz", **{"conv1.weight": np.zeros((6, 1, 3, 3), np.float32)})
    code, _, err = cli(
        capsys,
        "export",
        "specs/lenet5.cnn",
        "-o",
        str(tmp_path / "x.onnx"),
        "--weights",
        str(tmp_path / "w.npz"),
    )
    assert code == 1
    assert "tensor 'conv1.weight' is 6x1x3x3 in the weights, but conv1 needs 6x1x5x5 [weights-file]" in err
    assert "no tensor 'dense3.bias'" in err
    assert not (tmp_path / "x.onnx").exists()


def test_run_edge_example_prints_the_feature_map(capsys):
    code, out, _ = cli(capsys, "run", "specs/edge.cnn", "--input", "specs/data/edge6x6.npy")
    assert code == 0
    assert "output: 1x1x4x4" in out and out.count("30.") == 8


def test_run_random_input_on_an_exported_model(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    assert main(["export", "specs/lenet5.cnn", "-o", str(model)]) == 0
    code, out, _ = cli(capsys, "run", str(model), "--batch", "4", "--top", "3", "-o", str(tmp_path / "o.npy"))
    assert code == 0
    assert "input: 4x1x32x32 (random)" in out and "output: 4x10" in out and "images/s" in out
    assert "provider: CPUExecutionProvider" in out
    saved = np.load(tmp_path / "o.npy")
    assert saved.shape == (4, 10) and np.allclose(saved.sum(axis=1), 1, atol=1e-5)


def test_run_images_with_labels(tmp_path, capsys):
    for i, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (64, 48), color).save(tmp_path / f"img{i}.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)))
    code, out, _ = cli(
        capsys,
        "run",
        "specs/cifar.cnn",
        "--input",
        str(tmp_path / "img0.png"),
        str(tmp_path / "img1.png"),
        "--labels",
        str(labels),
        "--top",
        "2",
        "--mean",
        "0.5",
        "0.5",
        "0.5",
        "--std",
        "0.25",
        "0.25",
        "0.25",
    )
    assert code == 0
    assert "input: 2x3x32x32" in out and "[1] class" in out


def test_image_converted_to_one_channel(tmp_path, capsys):
    Image.new("RGB", (10, 10), (255, 255, 255)).save(tmp_path / "white.png")
    code, out, _ = cli(
        capsys,
        "run",
        "specs/edge.cnn",
        "--input",
        str(tmp_path / "white.png"),
        "-o",
        str(tmp_path / "edges.npy"),
    )
    assert code == 0 and "output: 1x1x4x4" in out
    assert not np.load(tmp_path / "edges.npy").any()  # a flat image has no edges


@pytest.mark.parametrize(
    "make, words",
    [
        (
            lambda d: _write(d / "fake.png", b"not really a png"),
            "not a readable image (not a format Pillow knows",
        ),
        (
            lambda d: _write(d / "cut.png", _png_bytes()[:50]),
            "not a readable image (image file is truncated)",
        ),
        (
            lambda d: _npy(d / "a.npy", np.zeros((3, 6, 6))),
            "array is 3x6x6, expected 1x6x6 or Nx1x6x6 (it has 3 channels",
        ),
        (lambda d: _npy(d / "b.npy", np.zeros((1, 5, 5))), "array is 1x5x5"),
        (lambda d: _write(d / "c.npy", b"garbage"), "not a readable .npy"),
        (lambda d: _write(d / "d.txt", b"1 2 3"), "expected an image"),
    ],
)
def test_run_bad_inputs(tmp_path, capsys, make, words):
    path = make(tmp_path)
    code, _, err = cli(capsys, "run", "specs/edge.cnn", "--input", str(path))
    assert code == 1 and words in err and "Traceback" not in err


def test_run_corrupt_onnx(tmp_path, capsys):
    bad = _write(tmp_path / "bad.onnx", b"\x08\x07garbage protobuf")
    code, _, err = cli(capsys, "run", str(bad))
    assert code == 1 and "onnxruntime cannot load it" in err and "[onnx-file]" in err


def test_run_missing_model_is_a_usage_error(capsys):
    code, _, err = cli(capsys, "run", "nowhere.onnx")
    assert code == 2 and "no such file" in err


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA")
def test_cuda_unavailable_says_so_and_exits_2(capsys):
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "--provider", "cuda")
    assert code == 2 and "CUDA execution provider is not available" in err and "CPUExecutionProvider" in err


def test_auto_provider_says_which_ran(capsys):
    code, out, _ = cli(capsys, "run", "specs/lenet5.cnn", "--provider", "auto")
    assert code == 0 and "provider: " in out


@pytest.mark.gpu
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu and an NVIDIA GPU",
)
def test_cuda_matches_cpu(tmp_path):
    from cnnspec.deploy.runtime import make_session

    model = tmp_path / "m.onnx"
    assert main(["export", "specs/lenet5.cnn", "-o", str(model)]) == 0
    x = np.random.default_rng(0).random((8, 1, 32, 32), dtype=np.float32)
    cpu = make_session(model, "cpu").run(None, {"input": x})[0]
    gpu = make_session(model, "cuda").run(None, {"input": x})[0]
    np.testing.assert_allclose(cpu, gpu, atol=1e-3)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npy(path: Path, array) -> Path:
    np.save(path, array)
    return path


@pytest.mark.parametrize(
    "args, words",
    [
        (("--batch", "0"), "--batch must be at least 1"),
        (("--top", "0"), "--top must be at least 1"),
        (("--std", "0"), "--std values must be above 0"),
        (("--mean", "0.5"), "--mean and --std apply to --input files"),
    ],
)
def test_run_option_mistakes_exit_2(capsys, args, words):
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", *args)
    assert code == 2 and words in err


def test_mean_with_the_wrong_number_of_channels(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code, _, err = cli(
        capsys, "run", "specs/cifar.cnn", "--input", str(tmp_path / "a.png"), "--mean", "0.1", "0.2"
    )
    assert code == 1 and "--mean has 2 values; the input has 3 channels" in err


def test_an_internal_error_is_one_line(monkeypatch, capsys):
    import cnnspec.cli as cli_module
    import cnnspec.cli.check as check_command

    def broken(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(check_command, "cmd_check", broken)  # add_parser looks it up by name
    monkeypatch.delenv("CNNSPEC_DEBUG", raising=False)
    code = cli_module.main(["check", "specs/lenet5.cnn"])
    err = capsys.readouterr().err
    assert code == 70 and "internal error: ZeroDivisionError: boom" in err and "Traceback" not in err


def _png_bytes() -> bytes:
    """A real 8x8 grey PNG, to cut short."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_batch_from_npy_is_normalised_per_example_with_the_model_s_mean_and_std(tmp_path, capsys):
    """A model that records its training mean and std, run on a .npy batch: one output row
    per example, each as if run alone (the normalisation used to broadcast over the batch)."""
    from onnx import helper

    from cnnspec.deploy.export import build_model, save

    model, _ = build_model(cnnspec.check("specs/cifar.cnn").network(), seed=0)
    helper.set_model_props(model, {"preprocess_mean": "0.4,0.5,0.6", "preprocess_std": "0.2,0.25,0.3"})
    save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    batch = rng.random((2, 3, 32, 32), dtype=np.float32)
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "first.npy", batch[0])
    assert (
        cli(
            capsys,
            "run",
            str(tmp_path / "m.onnx"),
            "--input",
            str(tmp_path / "batch.npy"),
            "-o",
            str(tmp_path / "b.npy"),
        )[0]
        == 0
    )
    assert (
        cli(
            capsys,
            "run",
            str(tmp_path / "m.onnx"),
            "--input",
            str(tmp_path / "first.npy"),
            "-o",
            str(tmp_path / "f.npy"),
        )[0]
        == 0
    )
    both, alone = np.load(tmp_path / "b.npy"), np.load(tmp_path / "f.npy")
    assert both.shape == (2, 10) and np.allclose(both[0], alone[0], atol=1e-5)


def test_run_says_when_the_weights_are_random(capsys):
    """LeNet-5 without --weights: a warning that its outputs mean nothing; the edge filter
    of the tutorial, whose weights are written in the spec: no warning."""
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn")
    assert code == 0 and "10 of the 10 tensors of specs/lenet5.cnn are fresh random weights" in err
    code, _, err = cli(capsys, "run", "docs/specs/edge.cnn", "--input", "docs/specs/image6x6.npy")
    assert code == 0 and "random" not in err


def test_run_says_when_it_resizes_or_converts_an_image(tmp_path, capsys):
    Image.new("RGB", (48, 40), (200, 10, 10)).save(tmp_path / "rgb.png")
    Image.new("L", (32, 32), 100).save(tmp_path / "grey.png")
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "--input", str(tmp_path / "rgb.png"))
    assert code == 0
    assert "images are resized from 48x40 to 32x32 and converted from 3 channels (RGB) to 1" in err
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "--input", str(tmp_path / "grey.png"))
    assert code == 0 and "resized" not in err and "converted" not in err


def test_run_says_when_it_resizes_and_no_resize_refuses_instead(tmp_path, capsys):
    from PIL import Image

    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(picture)
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "--input", str(picture))
    assert code == 0 and "resized from 48x40 to 32x32 and converted from 3 channels (RGB) to 1" in err
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "--input", str(picture), "--no-resize")
    assert (
        code == 1 and "the image would be resized from 48x40 to 32x32" in err and "--no-resize refuses" in err
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, name, batch, close",
    [
        ("specs/zoo/resnet.cnn", "resnet50", 1, True),  # the weights dominate: within 25%
        ("specs/zoo/resnet.cnn", "resnet18", 1, False),
        ("specs/lenet5.cnn", "lenet5", 10000, True),  # the batch dominates, 6-channel maps padded to 16
        ("specs/zoo/mobilenetv2.cnn", "mobilenetv2", 32, False),  # the batch dominates: an upper bound
        ("specs/zoo/densenet121.cnn", "densenet121", 16, False),
        ("specs/zoo/unet.cnn", "unet", 2, False),
        ("specs/zoo/audio.cnn", "m5", 64, False),  # 1-D
    ],
)
def test_run_memory_estimate_against_the_measured_peak(spec, name, batch, close, tmp_path):
    """`run` refuses a batch whose estimated peak does not fit: the estimate must not be
    below what the run really takes (else the kernel kills it instead), and must stay
    near it where the weights dominate, or the arena holds what it can. Measured as the peak RSS of `cnnspec run` above
    the process's own with the modules a run loads already loaded, as they are when `run`
    compares its estimate with the memory free."""
    from benchmarks.bench_limits import measured_run_peak
    from cnnspec.deploy.export import build_model
    from cnnspec.deploy.footprint import graph_memory

    measured = measured_run_peak(spec, name, batch, tmp_path / "o.npz")
    assert measured["code"] == 0
    model, _ = build_model(cnnspec.check(spec, name).network(name), seed=0)
    estimate = graph_memory(model, held_weight_copies=1).peak(batch)
    assert estimate >= measured["extra"], (estimate / 2**20, measured["extra"] / 2**20)
    if close:
        assert estimate <= 1.25 * measured["extra"], (estimate / 2**20, measured["extra"] / 2**20)
