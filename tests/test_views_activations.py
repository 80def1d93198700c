"""`run --activations`: one picture per layer, scaled per channel, and an index page."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from cnnspec.cli import main
from cnnspec.views.activations import TILE, grid
from tests.conftest import ROOT, SPECS

EDGE = ["run", str(ROOT / "docs/specs/edge.cnn"), "--input", str(ROOT / "docs/specs/image6x6.npy")]


def _image(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_the_edge_map_is_white_where_the_edge_is(tmp_path, capsys):
    folder = tmp_path / "maps"
    assert main([*EDGE, "--activations", str(folder)]) == 0
    assert "(2 feature-map pictures)" in capsys.readouterr().out
    edge = _image(folder / "001_conv1.png")
    assert edge.shape == (96, 96)  # 4x4, enlarged 24 times
    columns = edge[::24, ::24]
    assert (columns[:, 1:3] == 255).all() and (
        columns[:, [0, 3]] == 0
    ).all()  # 30 in the middle, 0 at the sides
    image = _image(folder / "000_input.png")
    assert (image[:, :48] == 255).all() and (image[:, 48:] == 0).all()  # bright left half
    # the tutorial and the README show these very pictures
    for made, shown in (("000_input.png", "edge_input.png"), ("001_conv1.png", "edge_map.png")):
        assert np.array_equal(_image(folder / made), _image(ROOT / "docs/images" / shown))


def test_every_layer_gets_a_grid_and_the_index_lists_them_in_order(tmp_path):
    folder = tmp_path / "cifar"
    assert main(["run", str(SPECS / "cifar.cnn"), "--activations", str(folder)]) == 0
    page = (folder / "index.html").read_text()
    names = re.findall(r"<h2>(\w+) <small>", page)
    assert names[:4] == ["input", "conv1", "bn1", "relu1"] and names[-1] == "dense2" and len(names) == 20
    conv1 = _image(folder / "001_conv1.png")  # 32 channels of 32x32, enlarged 3 times, 6 per row
    assert conv1.shape == (6 * (96 + 2) - 2, 6 * (96 + 2) - 2)
    files = sorted(p.name for p in folder.glob("*.png"))
    assert len(files) == 20 and all(f"src='{f}'" in page for f in files)


def test_grids_scale_each_channel_on_its_own():
    maps = np.stack(
        [np.arange(16.0).reshape(4, 4), 1000 + np.arange(16.0).reshape(4, 4), np.full((4, 4), 7.0)]
    )
    image = grid(maps)
    tile = TILE // 4 * 4
    first, second = image[:tile, :tile], image[:tile, tile + 2 : 2 * tile + 2]
    assert np.array_equal(first, second) and first.min() == 0 and first.max() == 255
    assert (image[tile + 2 :, :tile] == 128).all()  # a flat channel is mid grey
    vector = grid(np.array([0.0, 1.0, 2.0]))
    assert vector.shape == (32, 96) and vector[0, 0] == 0 and vector[0, -1] == 255


def test_the_folder_must_be_new_or_empty_and_the_model_a_spec(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    assert main([*EDGE, "--activations", str(full)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (full / "mine.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*EDGE, "--activations", str(empty)]) == 0 and (empty / "index.html").exists()
    model = tmp_path / "m.onnx"
    assert main(["export", str(SPECS / "lenet5.cnn"), "-o", str(model)]) == 0
    assert main(["run", str(model), "--activations", str(tmp_path / "new")]) == 2
    assert "--activations takes a .cnn spec" in capsys.readouterr().err
    assert main([*EDGE, "--activations", str(tmp_path / "no" / "such")]) == 2
