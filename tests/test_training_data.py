"""Training data: class folders streamed image by image (with workers), broken images,
memory-mapped .npz, preprocessing kept in the model and applied by `run`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from cnnspec.cli import main
from cnnspec.training.data import FolderData, Preprocess, npz_array
from cnnspec.training.train import load_dataset

pytestmark = pytest.mark.train

SPEC = (
    "network rgb {\n  input 3x8x8\n  conv 4 3x3 pad=1 relu\n  pool max 2\n  flatten\n  dense 2 softmax\n}\n"
)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 100, (10, 12, 3)) + label * 150
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "rgb.cnn").write_text(SPEC)
    return tmp_path


def _weights(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_a_class_folder_is_listed_not_loaded(folder):
    (folder / "data" / "dark" / "broken.png").write_bytes(b"not a png")
    data = load_dataset(folder / "data", (3, 8, 8), 2, stream=True)
    assert isinstance(data, FolderData) and len(data) == 13 and data.classes == ["dark", "light"]


def test_workers_do_not_change_the_result(folder, capsys):
    base = [
        "train",
        str(folder / "rgb.cnn"),
        "--data",
        str(folder / "data"),
        "--epochs",
        "2",
        "--flip",
        "--crop-pad",
        "1",
    ]
    assert main([*base, "-o", str(folder / "a.onnx")]) == 0
    assert main([*base, "--workers", "2", "-o", str(folder / "b.onnx")]) == 0
    a, b = _weights(folder / "a.onnx"), _weights(folder / "b.onnx")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_broken_image_is_named_and_fatal_or_skipped(folder, capsys):
    broken = folder / "data" / "light" / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")
    args = [
        "train",
        str(folder / "rgb.cnn"),
        "--data",
        str(folder / "data"),
        "--epochs",
        "1",
        "--workers",
        "2",
    ]
    assert main([*args, "-o", str(folder / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert (
        f"{broken}: not a readable image" in err and "--on-bad-image skip" in err and "Traceback" not in err
    )
    assert not (folder / "m.onnx").exists()
    assert main([*args, "--on-bad-image", "skip", "--val-split", "0", "-o", str(folder / "m.onnx")]) == 0
    err = capsys.readouterr().err
    assert err.count(f"skipped {broken}") == 1 and (folder / "m.onnx").exists()


def test_normalisation_is_kept_in_the_model_and_run_applies_it(folder, capsys):
    model = folder / "n.onnx"
    args = [
        "train",
        str(folder / "rgb.cnn"),
        "--data",
        str(folder / "data"),
        "--epochs",
        "1",
        "--preset",
        "imagenet",
    ]
    assert main([*args, "-o", str(model)]) == 0
    metadata = {p.key: p.value for p in onnx.load(model).metadata_props}
    assert (
        metadata["preprocess_mean"] == "0.485,0.456,0.406"
        and metadata["preprocess_std"] == "0.229,0.224,0.225"
    )
    image = str(folder / "data" / "dark" / "0.png")
    out = {}
    for name, extra in (
        ("auto", []),
        ("explicit", ["--mean", "0.485", "0.456", "0.406", "--std", "0.229", "0.224", "0.225"]),
        ("plain", ["--mean", "0", "--std", "1"]),
    ):
        capsys.readouterr()
        assert main(["run", str(model), "--input", image, "-o", str(folder / f"{name}.npy"), *extra]) == 0
        out[name] = (np.load(folder / f"{name}.npy"), capsys.readouterr().err)
    assert "preprocessing from the model: mean 0.485,0.456,0.406, std 0.229,0.224,0.225" in out["auto"][1]
    assert np.array_equal(out["auto"][0], out["explicit"][0]) and not np.allclose(
        out["auto"][0], out["plain"][0]
    )


def test_npz_is_memory_mapped_where_stored_uncompressed(tmp_path):
    x = np.random.default_rng(0).random((20, 3, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "plain.npz", x=x, y=np.zeros(20, np.int64))
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=np.zeros(20, np.int64))
    mapped, packed = npz_array(tmp_path / "plain.npz", "x"), npz_array(tmp_path / "packed.npz", "x")
    assert isinstance(mapped, np.memmap) and not isinstance(packed, np.memmap)
    assert np.array_equal(mapped, x) and np.array_equal(packed, x)
    assert isinstance(load_dataset(tmp_path / "plain.npz", (3, 8, 8), 2).x, np.memmap)


def test_augmentation_is_drawn_from_seed_epoch_and_index():
    p = Preprocess(crop_pad=2, flip=True)
    x = np.arange(48, dtype=np.float32).reshape(3, 4, 4)
    assert np.array_equal(p.augment(x, 1, 3, 7), p.augment(x, 1, 3, 7))
    views = {p.augment(x, 1, epoch, 7).tobytes() for epoch in range(12)}
    assert len(views) > 3  # different crops and flips across epochs
    out = p.augment(x, 1, 0, 0)
    assert out.shape == x.shape and set(np.unique(out)) <= set(np.unique(x)) | {0.0}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "imagenet", "--mean", "0.5"], "--preset sets --mean and --std"),
        (["--mean", "0.5", "0.5"], "--mean has 2 values; the input has 3 channels"),
        (["--std", "0"], "--std values must be above 0"),
    ],
)
def test_preprocessing_mistakes(folder, capsys, extra, message):
    args = [
        "train",
        str(folder / "rgb.cnn"),
        "--data",
        str(folder / "data"),
        *extra,
        "-o",
        str(folder / "m.onnx"),
    ]
    assert main(args) == 2 and message in capsys.readouterr().err
