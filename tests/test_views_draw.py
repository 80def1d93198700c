"""`cnnspec draw`: the SVG's structure, PNG and HTML, and what a browser shows."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

import cnnspec
from cnnspec.cli import main
from cnnspec.views.draw import BOX_H, BOX_W, edge_path, layout, to_svg
from tests.conftest import SPECS, slow_if

NS = {"s": "http://www.w3.org/2000/svg"}


def _svg(spec: str, network: str | None = None, collapse: bool = False) -> ET.Element:
    checked = cnnspec.check(SPECS / spec, network).network(network)
    return ET.fromstring(to_svg(layout(checked, collapse)))


def _layers(svg: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-name"): g for g in svg.iterfind(".//s:g[@class='layer']", NS)}


def _position(group: ET.Element) -> tuple[float, float]:
    rect = group.find("s:rect", NS)
    return float(rect.get("x")), float(rect.get("y"))


def test_one_box_per_layer_with_kind_arguments_shape_and_parameters():
    svg = _svg("lenet5.cnn")
    boxes = _layers(svg)
    network = cnnspec.check(SPECS / "lenet5.cnn").network()
    assert list(boxes) == ["input", *[layer.name for layer in network.layers]]
    texts = ["".join(t.itertext()) for t in boxes["conv2"].iterfind("s:text", NS)]
    assert texts == ["conv2", "2,416 params", "conv 16 5x5 relu", "→ 16x10x10"]
    edges = svg.findall(".//s:g[@class='edge']", NS)
    assert len(edges) == len(network.layers)  # a chain: one arrow into each layer
    labels = {e.get("data-to"): "".join(e.find("s:text", NS).itertext()) for e in edges}
    assert labels["dense1"] == "400" and labels["pool1"] == "6x28x28"  # the tensor each arrow carries
    ys = [_position(g)[1] for g in boxes.values()]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)  # top-down


def test_branches_are_side_by_side_and_block_instances_are_framed():
    svg = _svg("zoo/resnet.cnn", "resnet18")
    boxes = _layers(svg)
    network = cnnspec.check(SPECS / "zoo/resnet.cnn", "resnet18").network("resnet18")
    body, shortcut = (
        _position(boxes["conv6"]),
        _position(boxes["conv8"]),
    )  # layer2_0's first conv, its projection
    assert body[1] == shortcut[1] and abs(body[0] - shortcut[0]) >= BOX_W
    for a, b in ((a, b) for a in boxes.values() for b in boxes.values() if a is not b):
        (ax, ay), (bx, by) = _position(a), _position(b)
        assert abs(ax - bx) >= BOX_W or abs(ay - by) >= BOX_H  # no box covers another
    groups = [g.get("data-name") for g in svg.iterfind(".//s:g[@class='group']", NS)]
    assert groups == list(dict.fromkeys(layer.layer.block for layer in network.layers if layer.layer.block))
    edges = svg.findall(".//s:g[@class='edge']", NS)
    assert len(edges) == sum(len(layer.inputs) for layer in network.layers)
    labelled = [e.get("data-from") for e in edges if e.find("s:text", NS) is not None]
    assert sorted(labelled) == sorted(
        {e.get("data-from") for e in edges}
    )  # one label per tensor, not per arrow


def _along(path, step: float = 2.0):
    """Points every `step` pixels along a polyline."""
    for (xa, ya), (xb, yb) in zip(path, path[1:]):
        count = max(1, int(max(abs(xb - xa), abs(yb - ya)) / step))
        yield from ((xa + (xb - xa) * i / count, ya + (yb - ya) * i / count) for i in range(count + 1))


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(path, marks=slow_if(path.name in ("densenet121.cnn", "inception_v3.cnn")))
        for path in sorted(
            p.relative_to(SPECS) for p in SPECS.rglob("*.cnn") if not p.name.startswith("mistakes")
        )
    ],
)
def test_no_arrow_crosses_a_box(spec):
    """Every arrow runs in the gaps between rows and columns: through no box but its ends
    (skips, joins, four-branch concats, U-Net's far joins; boxes per layer and per instance)."""
    for network in cnnspec.check(SPECS / spec).networks:
        for collapse in (False, True):
            diagram = layout(network, collapse)
            for box in diagram.boxes.values():
                for source in box.inputs:
                    start = diagram.boxes[source]
                    path = edge_path(start, box)
                    assert path[0] == (start.x + BOX_W / 2, start.y + BOX_H) and path[-1] == (
                        box.x + BOX_W / 2,
                        box.y,
                    )
                    for other in diagram.boxes.values():
                        if other not in (start, box):
                            inside = [
                                (x, y)
                                for x, y in _along(path)
                                if other.x < x < other.x + BOX_W and other.y < y < other.y + BOX_H
                            ]
                            assert not inside, f"{network.name}: {source} -> {box.key} crosses {other.key}"


def test_collapse_draws_one_box_per_block_instance():
    svg = _svg("zoo/resnet.cnn", "resnet50", collapse=True)
    boxes = _layers(svg)
    assert "layer3" in boxes and "conv1" not in boxes and not svg.findall(".//s:g[@class='group']", NS)
    assert "bottleneck5" in boxes and boxes["bottleneck5"].get("data-kind") == "block"
    text = "".join(boxes["layer1"].itertext())
    assert "12 layers" in text and "→ 256x56x56" in text


def test_frozen_layers_are_marked():
    boxes = _layers(_svg("letters.cnn", "letters"))
    frozen = {name for name, g in boxes.items() if g.get("data-frozen") == "true"}
    assert frozen == {"conv1", "conv2", "dense1", "dense2"}
    assert "frozen" in "".join(boxes["dense1"].itertext()) and "frozen" not in "".join(
        boxes["head"].itertext()
    )


def test_png_and_html(tmp_path, capsys):
    png, page = tmp_path / "u.png", tmp_path / "u.html"
    spec = str(SPECS / "branches.cnn")
    assert main(["draw", spec, "--network", "unet_small", "-o", str(png)]) == 0
    width, height = map(int, capsys.readouterr().out.split("(")[1].split(",")[0].split("x"))
    image = np.asarray(Image.open(png).convert("L"))
    assert image.shape == (height, width) and (image < 128).mean() > 0.01  # lines and text drawn
    assert main(["draw", spec, "--network", "unet_small", "-o", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "unet_small: input 1x64x64" in text


def test_draw_mistakes(tmp_path, capsys):
    assert main(["draw", str(SPECS / "lenet5.cnn"), "-o", str(tmp_path / "x.pdf")]) == 2
    assert "draw writes .svg, .png or .html" in capsys.readouterr().err
    assert (
        main(["draw", str(SPECS / "mistakes.cnn"), "--network", "shapes", "-o", str(tmp_path / "m.svg")]) == 1
    )
    assert not (tmp_path / "m.svg").exists()
    assert main(["draw", str(SPECS / "branches.cnn"), "-o", str(tmp_path / "b.svg")]) == 2
    assert "pick one with --network" in capsys.readouterr().err
    long = tmp_path / "long.cnn"
    long.write_text("network long {\n  input 1x8x8\n" + "  relu\n" * 3000 + "}\n")
    assert main(["draw", str(long), "-o", str(tmp_path / "long.png")]) == 2
    assert "too large; draw it as .svg or .html" in capsys.readouterr().err
    assert main(["draw", str(long), "-o", str(tmp_path / "long.svg")]) == 0


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed (apt-get install chromium)")
def test_a_browser_shows_the_boxes_where_the_svg_puts_them(tmp_path):
    svg = tmp_path / "lenet5.svg"
    assert main(["draw", str(SPECS / "lenet5.cnn"), "-o", str(svg)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=600,1100", svg.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    boxes = _layers(ET.fromstring(svg.read_text()))
    for name in ("input", "conv1", "dense3"):
        x, y = _position(boxes[name])
        border = image[int(y) + BOX_H // 2, int(x) - 1 : int(x) + 2]  # the box's left border
        assert (border.sum(axis=1) < 600).any(), f"{name}: no border drawn at x={x}"
        inside = image[int(y) + 8 : int(y) + BOX_H - 8, int(x) + 150 : int(x) + 220]
        assert (inside.sum(axis=2) > 700).mean() > 0.5  # mostly the white box, not a blank page's grey
    text_rows = image[int(_position(boxes["conv1"])[1]) + 8 : int(_position(boxes["conv1"])[1]) + 20, 35:90]
    assert (text_rows.sum(axis=2) < 300).any()  # the layer's name is drawn in dark text


def test_the_diagrams_the_readme_shows_are_current():
    for spec, network, picture in (
        ("branches.cnn", "unet_small", "unet_small.svg"),
        ("lenet5.cnn", None, "lenet5.svg"),
    ):
        checked = cnnspec.check(SPECS / spec, network).network(network)
        assert to_svg(layout(checked)) == (SPECS.parent / "docs/images" / picture).read_text(), (
            f"regenerate with: cnnspec draw specs/{spec} {'--network ' + network if network else ''} -o docs/images/{picture}"
        )


@pytest.mark.parametrize("heat", ["time", "memory"])
def test_heat_fills_the_costliest_box_darkest(heat, tmp_path, capsys):
    from cnnspec.cost import training_memory
    from cnnspec.cost.latency import load_profile, predict

    out = tmp_path / "net.svg"
    spec = SPECS / "lenet5.cnn"
    assert main(["draw", str(spec), "-o", str(out), "--heat", heat, "--latency", "t4"]) == 0
    svg = out.read_text()
    heats = dict(re.findall(r'data-name="([^"]+)" data-kind="[^"]+" data-heat="([0-9.]+)"', svg))
    network = cnnspec.check(spec).network()
    if heat == "time":
        costs = {row.name: row.seconds for row in predict(network, load_profile("t4")).layers}
    else:
        costs = {row.name: row.saved_per_image for row in training_memory(network, 1).layers}
    assert max(heats, key=lambda name: float(heats[name])) == max(costs, key=costs.get)
    assert float(heats[max(costs, key=costs.get)]) == 1.0 and 'fill="#d7301f"' in svg


def test_a_collapsed_instance_shows_the_call_as_written():
    network = cnnspec.check(SPECS / "zoo" / "resnet.cnn", "resnet18").network("resnet18")
    boxes = layout(network, collapse=True).boxes
    assert boxes["layer2_0"].lines[0] == "basic_down 128"
    assert boxes["layer2_0"].lines[1].endswith("230,912 params")
