"""Issue 24, rule 5: numbers are checked where they enter. Every weight, eps, scale and
alpha within float32's range, NaN and infinity refused with the tensor and the index named,
a negative variance, a ratio outside [0, 1) and a missing required attribute import errors
naming the node, and sizes checked against int64 before export. The cases the issue lists,
then generated variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import cnnspec
from tests.conftest import ROOT, check_text, net
from tests.helpers import cli

generated = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FLOAT32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


@pytest.mark.parametrize(
    "line, column",
    [
        ("batchnorm eps=1e39", 17),
        ("batchnorm momentum=0.5 eps=-1e39", 30),
        ("leakyrelu 1e39", 13),
        ("conv 1 2x2 bias=false weights=[[1,0],[0,1e39]]", 43),
        ("conv 1 2x2 bias=false weights=[[1,0],[0,-3.5e38]]", 43),
    ],
)
def test_decimals_beyond_float32_are_refused_where_written(line, column):
    """ONNX and PyTorch compute in float32: a value beyond its range would export as inf."""
    result = check_text(net(line, "1x4x4"))
    assert codes(result) == ["invalid-argument"] and "beyond float32's range" in result.diagnostics[0].message
    assert result.diagnostics[0].span.column == column


def test_the_largest_float32_still_checks():
    assert check_text(net("batchnorm eps=3.4e38", "1x4x4")).ok


def _one_node_model(path: Path, node, initializers=(), out_shape=(1, 2, 4, 4)) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    graph = helper.make_graph([node], "g", [x], [y], initializer=list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _tensor(name: str, array: np.ndarray):
    return onnx.numpy_helper.from_array(array, name)


_BN = ["x", "g", "b", "m", "v"]


@pytest.mark.parametrize(
    "node, initializers, message",
    [
        (
            helper.make_node("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[1, 1]),
            [_tensor("w", np.array([np.nan, 1, 1, 1], np.float32).reshape(2, 2, 1, 1))],
            "node 'c1' (Conv): its weight holds 1 NaN or infinite values as float32 (the first at index (0, 0, 0, 0))",
        ),
        (
            helper.make_node("Conv", ["x", "w"], ["y"], name="c2", kernel_shape=[1, 1]),
            [_tensor("w", np.full((2, 2, 1, 1), 1e39, np.float64))],
            "node 'c2' (Conv): its weight holds 4 NaN or infinite values as float32",
        ),
        (
            helper.make_node("BatchNormalization", _BN, ["y"], name="bn"),
            [_tensor(n, np.array(v, np.float32)) for n, v in zip("gbmv", ([1, 1], [0, 0], [0, 0], [1, -1]))],
            "node 'bn' (BatchNormalization): its running variance has negative values",
        ),
        (helper.make_node("MaxPool", ["x"], ["y"], name="mp"), [], "node 'mp' (MaxPool) has no kernel_shape"),
        (
            helper.make_node("Dropout", ["x", "r"], ["y"], name="d"),
            [_tensor("r", np.array(2.0, np.float32))],
            "node 'd' (Dropout): ratio 2.0 is outside [0, 1)",
        ),
        (
            helper.make_node("Dropout", ["x", "r"], ["y"], name="d"),
            [_tensor("r", np.array(np.nan, np.float32))],
            "node 'd' (Dropout): ratio nan is outside [0, 1)",
        ),
    ],
)
def test_numbers_in_a_model_are_checked_where_they_enter(node, initializers, message, tmp_path, capsys):
    model = _one_node_model(tmp_path / "m.onnx", node, initializers)
    code, _, err = cli(capsys, "import", str(model), "-o", str(tmp_path / "m.cnn"))
    assert code == 2 and message in err and "internal error" not in err, err
    assert not (tmp_path / "m.cnn").exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ("conv 4 3x3 pad=4611686018427387904", "a size beyond int64"),
        ("upsample 16777217", "scale 16,777,217 cannot be exact"),
        ("deconv 4 2x2 stride=4611686018427387904", "a size beyond int64"),
    ],
)
def test_sizes_that_no_runtime_holds_are_check_errors_not_export_crashes(line, message, tmp_path, capsys):
    spec = tmp_path / "big.cnn"
    spec.write_text(net(line, "4x8x8"))
    result = cnnspec.check(spec)
    assert codes(result) == ["too-large"] and message in result.diagnostics[0].message
    code, _, err = cli(capsys, "export", str(spec), "-o", str(tmp_path / "big.onnx"))
    assert code == 1 and "internal error" not in err and not (tmp_path / "big.onnx").exists()


# ------------------------------------------------------------------ generated variants

# Where a decimal is written, with the column it starts at once `{}` is replaced.
_PLACES = [
    "batchnorm eps={}",
    "leakyrelu {}",
    "conv 1 2x2 bias=false weights=[[1,0],[0,{}]]",
    "conv 1 2x2 bias=false weights=[[{},0],[0,1]]",
]


@generated
@given(
    place=st.sampled_from(_PLACES),
    magnitude=st.floats(FLOAT32_MAX * 1.0001, 1e300),
    negative=st.booleans(),
)
def test_any_decimal_beyond_float32_is_refused_where_it_is_written(place, magnitude, negative):
    written = f"{'-' if negative else ''}{magnitude!r}"
    line = place.format(written)
    result = check_text(net(line, "1x4x4"))
    assert codes(result) == ["invalid-argument"], line
    assert "beyond float32's range" in result.diagnostics[0].message
    assert result.diagnostics[0].span.column == 2 + place.index("{}") + 1  # two spaces of indent


@generated
@given(place=st.sampled_from(_PLACES[2:]), value=st.floats(-FLOAT32_MAX, FLOAT32_MAX, allow_nan=False))
def test_any_weight_within_float32_checks(place, value):
    assert check_text(net(place.format(repr(value)), "1x4x4")).ok


@generated
@given(
    shape=st.lists(st.integers(1, 4), min_size=4, max_size=4),
    index=st.data(),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    as_float64=st.booleans(),
)
def test_a_non_finite_weight_is_refused_with_its_first_index(
    tmp_path_factory, capsys, shape, index, bad, as_float64
):
    """A conv weight of any shape with NaN or infinity at any places (or a float64 value
    beyond float32's range): import names the node, the count and the first index in C order."""
    weight = np.ones(shape, np.float64 if as_float64 else np.float32)
    places = index.draw(st.lists(st.tuples(*(st.integers(0, n - 1) for n in shape)), min_size=1, max_size=3))
    for place in places:
        weight[place] = 1e39 if as_float64 else bad
    out_channels, in_channels = shape[0], shape[1]
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=shape[2:])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, 7 - shape[2], 7 - shape[3]])
    graph = helper.make_graph([node], "g", [x], [y], initializer=[onnx.numpy_helper.from_array(weight, "w")])
    folder = tmp_path_factory.mktemp("nan")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx")
    code, _, err = cli(capsys, "import", str(folder / "m.onnx"), "-o", str(folder / "m.cnn"))
    with np.errstate(over="ignore"):  # 1e39 as float32 is infinity: that is the point
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(weight.astype(np.float32)))[0])
    count = len(set(places))
    assert code == 2 and "internal error" not in err, err
    assert f"node 'c' (Conv): its weight holds {count} NaN or infinite values as float32" in err, err
    assert f"(the first at index {first})" in err, err
    assert not (folder / "m.cnn").exists()


# Each line with the smallest number that takes a size (the number itself, a padded input,
# a deconv's output) beyond int64: below it the same lines check, export and run.
_INT64_LINES = [
    ("conv 4 3x3 pad={}", 2**62),
    ("deconv 4 2x2 stride={}", 2**62),
    ("pool max 2 stride={}", 2**63),
]


@generated
@given(place=st.sampled_from(_INT64_LINES), extra=st.integers(0, 2**80))
def test_any_size_beyond_int64_is_a_check_error(tmp_path_factory, capsys, place, extra):
    """A pad or a stride no runtime can hold: a located too-large error at check, and
    export writes nothing (never an overflow inside onnx)."""
    line, smallest = place
    spec = tmp_path_factory.mktemp("int64") / "big.cnn"
    spec.write_text(net(line.format(smallest + extra), "4x8x8"))
    result = cnnspec.check(spec)
    assert [d.code for d in result.errors] == ["too-large"] and result.errors[0].span.line == 3
    code, _, err = cli(capsys, "export", str(spec), "-o", str(spec.with_suffix(".onnx")))
    assert code == 1 and "internal error" not in err and not spec.with_suffix(".onnx").exists()
