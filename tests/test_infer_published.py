"""Published parameter totals and the example specs."""

from __future__ import annotations

import pytest

import cnnspec
from tests.conftest import SPECS


@pytest.mark.parametrize(
    "spec, network, total",
    [
        ("lenet5.cnn", "lenet5", 61_706),  # LeCun et al. 1998, as Keras/torchinfo count it
        ("vgg16.cnn", "vgg16", 138_357_544),  # Simonyan & Zisserman; torchvision vgg16
        ("cifar.cnn", "cifar", 621_258),
    ],
)
def test_published_totals(spec, network, total):
    result = cnnspec.check(SPECS / spec)
    assert result.ok
    assert result.network(network).total_params == total


def test_vgg16_per_layer():
    net = cnnspec.check(SPECS / "vgg16.cnn").network()
    convs = [c for c in net.layers if c.kind == "conv"]
    assert len(convs) == 13 and convs[0].params == 1_792 and convs[-1].params == 2_359_808
    assert net.layer("dense1").in_features == 25_088 and net.layer("dense1").params == 102_764_544
    assert net.macs == 15_470_264_320  # the 15.5 G multiply-adds usually quoted


def test_cifar_block_expansion_and_keras_batchnorm():
    net = cnnspec.check(SPECS / "cifar.cnn").network()
    assert [c.name for c in net.layers[:5]] == ["conv1", "bn1", "relu1", "pool1", "dropout1"]
    assert net.layer("dropout3").layer.config.rate == 0.4  # `cbapd 128 rate=0.4`
    assert net.non_trainable_params == 2 * (32 + 64 + 128)


def test_every_example_spec_checks_clean():
    for path in sorted(SPECS.glob("*.cnn")):
        if path.stem.startswith("mistakes"):
            continue
        result = cnnspec.check(path)
        assert result.errors == [], (path, result.errors)
        assert result.networks, path


def test_textbook_assertions_hold():
    result = cnnspec.check(SPECS / "textbook.cnn")
    assert result.ok and len(result.networks) == 8
    assert result.network("ten_filters").total_params == 280
    assert result.network("two_filters").output_shape == (2, 4, 4)
