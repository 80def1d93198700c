"""Every diagnostic: feed the bad input, check the code, the position and the words."""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnspec
from cnnspec.base.diagnostics import CODES, render
from tests.conftest import SPECS, check_text, net

# Codes of `export`, `run` and `train` (files and data, not spec text).
RUNTIME_CODES = {"weights-file", "onnx-file", "bad-input", "import-unsupported", "bad-checkpoint"}

# (spec, code, line, column, words the message or help must contain)
CASES = [
    # syntax
    (
        "network a {\n  input 1x8x8\n  residual\n  {\n  }\n}\n",
        "syntax-error",
        4,
        3,
        "at the end of the line it opens",
    ),
    ("network a {\n  input 1x8x8\n", "syntax-error", 1, 11, "this '{' is never closed"),
    ("network a {\n  repeat 2 {\n    relu\n  }\n", "syntax-error", 1, 11, "the file ends (line 4)"),
    ("network a {\n  input 1x8x8\nnetwork b {\n}\n", "syntax-error", 3, 11, "is a '}' missing above?"),
    ("network a {\n  input 1x8x8\n  relu,\n}\n", "syntax-error", 3, 7, "or the end of the line"),
    # habits from Python and PyTorch, answered in cnnspec's words
    ("network {\n  input 1x8x8\n}\n", "syntax-error", 1, 9, "'network' needs a name before its '{'"),
    ("block {\n  relu\n}\n", "syntax-error", 1, 7, "for example: `block cbapd(filters) {`"),
    ("network n:\n  input 1x8x8\n", "syntax-error", 1, 10, "a body goes in braces, not after a colon"),
    ("network n {\n  input 1x8x8\n  conv 2 3x3 stride: 2\n}\n", "too-many-arguments", 3, 14, "stride=2"),
    (net("slice 0:12", "8x4x4"), "slice-outside", 3, 9, "ranges run from 0 (or -8) to 8"),
    (net("flatten\nlayernorm", "8x4x4"), "needs-spatial-input", 4, 3, "move it before `flatten`"),
    (net("split (2, 2) as a b", "8x4x4"), "split-mismatch", 3, 9, "e.g. split (2, 6)"),
    ("network n {\n  input 1x8x8\n  relu()\n}\n", "syntax-error", 3, 8, "write `relu` without parentheses"),
    (net("conv(2, 3x3)", "1x8x8"), "invalid-argument", 3, 7, "write `conv 2 3x3`"),
    (net("flatten\ndense(10, relu)", "1x8x8"), "invalid-argument", 4, 8, "write `dense 10 relu`"),
    (net("input 1x8x8\nconv 2 3x3", "1x8x8"), "misplaced-statement", 3, 9, "a second `input`"),
    ("network a {\n  input 1x8x8\n  conv 3 3x3 pad=\n}\n", "syntax-error", 3, 18, "expected a value"),
    ("network a\n{\n}\n", "syntax-error", 1, 10, "'{' at the end of this line"),
    (net("conv 2 3×3"), "syntax-error", 3, 11, "write sizes with the letter x: 3x3"),
    (net("conv 2 3x3 → 2x6x6", "1x8x8"), "syntax-error", 3, 14, "arrow as ->"),
    (net("conv 2 3x3 as größe"), "syntax-error", 3, 19, "letters a-z and A-Z"),
    ("network a {\n  conv 3 = 2\n}\n", "syntax-error", 2, 10, "KEY=VALUE"),
    ("network a {\n  conv 'x'\n}\n", "syntax-error", 2, 8, "double quotes"),
    (
        "network a {\n  input 1x8x8\n  conv 4 3x3 pad=(1,2\n}\n",
        "syntax-error",
        3,
        22,
        "unexpected end of line",
    ),
    # names and arguments
    (net("convv 16 3x3"), "unknown-layer", 3, 3, "did you mean 'conv'?"),
    (net("maxpool 2"), "unknown-layer", 3, 3, "cnnspec writes maxpool as `pool max`"),
    (net("lstm 2"), "unknown-layer", 3, 3, "layers: add, batchnorm, concat, conv"),
    (net("conv 16 3x3 strides=2"), "unknown-option", 3, 15, "did you mean 'stride'?"),
    (net("pool max 2 padding=1"), "unknown-option", 3, 14, "did you mean 'pad'?"),
    (net("conv 16"), "missing-argument", 3, 3, "conv needs kernel"),
    (net("dropout"), "missing-argument", 3, 3, "dropout needs rate"),
    (net("dense 10 relu stride"), "too-many-arguments", 3, 17, "unexpected argument 'stride'"),
    (net("conv 16 3x3 stride"), "too-many-arguments", 3, 15, "stride=..."),
    (net("conv 16 3x3 reul"), "too-many-arguments", 3, 15, "did you mean 'relu'?"),
    (net("pool 2"), "invalid-argument", 3, 8, "expected max or avg"),
    (net("conv 0 3x3"), "invalid-argument", 3, 8, "greater than 0"),
    (net("conv 8 3x3 pad=full"), "invalid-argument", 3, 18, "valid, same"),
    (net("conv 8 3x3 bias=maybe"), "invalid-argument", 3, 19, "true or false"),
    (net("conv 2.5 3x3"), "invalid-argument", 3, 8, "whole number"),
    (net("dropout 1.5"), "invalid-argument", 3, 11, "less than 1"),
    (net("pool max 2 pad=2"), "invalid-argument", 3, 18, "smaller than the"),
    (net("conv 8 3x3 stride=2 stride=1"), "invalid-argument", 3, 23, "given twice"),
    ("network a {\n  input 3x\n}\n", "syntax-error", 2, 10, "expected"),
    ("network a {\n  input 3x2x32x32x2\n}\n", "invalid-argument", 2, 9, "CxHxW (an image), CxL (a sequence)"),
    (
        "network a {\n  input 1x8x8\n  conv 4 3x3\n}\nnetwork b from a {\n  input 1x64\n}\n",
        "rank-mismatch",
        3,
        10,
        "sizes 3x3 have 2 axes, but the input 1x64 has 1",
    ),
    # blocks
    ("block b(f) {\n  conv f 3x3\n}\n" + net("b 8 g=2"), "block-arguments", 6, 7, "no parameter 'g'"),
    ("block b(f) {\n  conv f 3x3\n}\n" + net("b"), "block-arguments", 6, 3, "usage: b F"),
    ("block b(f) {\n  conv f 3x3\n}\n" + net("b 1 2"), "block-arguments", 6, 7, "too many arguments"),
    ("block b(f) {\n  conv f 3x3\n}\n" + net("b 0"), "invalid-argument", 6, 5, "greater than 0"),
    ("block b(n) {\n  c n\n}\nblock c(n) {\n  b n\n}\n" + net("b 1"), "recursive-block", 5, 3, "b -> c -> b"),
    ("block b() {\n  relu\n}\nblock b() {\n  relu\n}\n", "duplicate-definition", 4, 7, "defined twice"),
    ("block conv() {\n  relu\n}\n", "duplicate-definition", 1, 7, "name of a layer kind"),
    # structure
    ("network a {\n  conv 8 3x3\n}\n", "missing-input", 1, 9, "must start with an `input`"),
    (net("conv 8 3x3\ninput 1x8x8"), "misplaced-statement", 4, 9, "first line"),
    (net("drop last 1"), "misplaced-statement", 3, 13, "derived network"),
    (net("conv 8 3x3 as a\nconv 8 3x3 as a"), "duplicate-name", 4, 3, "already exists"),
    (net("conv 8 3x3 as conv2\nconv 8 3x3"), "duplicate-name", 4, 3, "'conv2' already exists"),
    (net("repeat -1 {\n  relu\n}"), "invalid-argument", 3, 10, "0 or more"),
    ('use "nowhere.cnn"\n', "use-not-found", 1, 5, "no such file"),
    # shapes
    (net("conv 8 7x7", "1x5x5"), "kernel-too-large", 3, 10, "floor((5 + 0 - 7) / 1) + 1 = -1"),
    (net("pool max 2\npool max 2", "1x2x2"), "kernel-too-large", 4, 12, "floor((1 + 0 - 2) / 2) + 1 = 0"),
    (net("conv 8 3x3 dilation=4", "1x8x8"), "empty-output", 3, 23, "widens the 3-wide kernel to 9"),
    (net("conv 8 3x3\ndense 10", "1x8x8"), "needs-flatten", 4, 3, "it would give 288 inputs (8x6x6)"),
    (net("conv 8 3x3", "784"), "needs-spatial-input", 3, 3, "flat vector of 784"),
    (net("globalpool avg", "10"), "needs-spatial-input", 3, 3, "CxHxW"),
    (net("conv 12 3x3 groups=5", "16x8x8"), "groups-mismatch", 3, 22, "1, 2, 4"),
    (net("conv 6 3x3 groups=4", "4x8x8"), "groups-mismatch", 3, 21, "6 filters"),
    (net("conv 6 5x5 -> 6x27x28"), "shape-mismatch", 3, 17, "gives 6x28x28, not 6x27x28"),
    (net("flatten -> 401", "16x5x5"), "shape-mismatch", 3, 14, "gives 400, not 401"),
    (
        net("conv 1 3x3 weights=[[1,0],[0,1]]", "1x6x6"),
        "weights-shape",
        3,
        22,
        "are 2x2, but the layer needs 1x1x3x3",
    ),
    (net("conv 1 3x3 weights=[[1,0,1],[0,1]]", "1x6x6"), "weights-shape", 3, 22, "ragged"),
    # branches
    (net("conv 8 3x3\nconcat enc1 conv1"), "unknown-reference", 4, 10, "no layer named 'enc1'"),
    (net("conv 8 3x3 as enc\nconv 4 1x1 from enx"), "unknown-reference", 4, 19, "did you mean 'enc'?"),
    (
        net("add a b\nconv 2 1x1 as a\nconv 2 1x1 as b", "2x4x4"),
        "unknown-reference",
        3,
        7,
        "written later, on line 4",
    ),
    (
        net("conv 8 3x3 as a\npool max 2\nconv 4 3x3 as b\nadd a b", "1x16x16"),
        "merge-shape-mismatch",
        6,
        3,
        "add needs equal shapes, but gets a (line 3) 8x14x14, b (line 5) 4x5x5",
    ),
    (
        net("residual {\nconv 16 3x3 stride=2 pad=1\n}", "8x16x16"),
        "merge-shape-mismatch",
        3,
        3,
        "shortcut { conv 16 1x1 stride=2 }",
    ),
    (  # a named join has no body and no shortcut: the help says what to project, and how
        net("conv 8 3x3 pad=1 stride=2 as c\nadd c in", "3x32x32"),
        "merge-shape-mismatch",
        4,
        3,
        "give every input the first one's shape 8x16x16: e.g. `conv 8 1x1 stride=2` on the one that differs",
    ),
    (
        net("add { conv 8 3x3 pad=1 } { conv 4 1x1 }", "3x16x16"),
        "merge-shape-mismatch",
        3,
        3,
        "e.g. `conv 8 1x1` on the one that differs",
    ),
    (
        net("conv 8 1x1 as a\nconv 4 1x1 as b\nconcat a b\nglobalpool avg\nmultiply a b", "8x4x4"),
        "merge-shape-mismatch",
        7,
        3,
        "multiply needs equal shapes or a Cx1x1 gate",
    ),
    (net("conv 8 3x3 as a\nconv 4 1x1 from in", "1x8x8"), "unused-branch", 3, 3, "a reaches no output"),
    (net("add a", "4"), "missing-argument", 3, 3, "two or more layers"),
    (  # `kxk` from a block parameter is one word: say how sizes are written from parameters
        "block b(k) {\n  conv 8 kxk\n}\n" + net("b 3", "1x8x8"),
        "invalid-argument",
        2,
        10,
        "write `k`: one number is the same size along every axis",
    ),
    (
        "block b(k, j) {\n  pool max kxj\n}\n" + net("b 3 1", "1x8x8"),
        "invalid-argument",
        2,
        12,
        "write `(k, j)`",
    ),
    (net("conv 8 3x3 { relu }", "1x8x8"), "unknown-layer", 3, 3, "takes no { body }"),
    (net("relu\nshortcut {\nrelu\n}", "4"), "misplaced-statement", 4, 3, "closing brace"),
    (net("conv 8//0 3x3", "1x8x8"), "invalid-argument", 3, 8, "division by zero"),
    (
        net("deconv 4 2x2 stride=2 pad=same output_pad=1", "1x8x8"),
        "invalid-argument",
        3,
        45,
        "remove output_pad",
    ),
    (net("conv 8*x 3x3", "1x8x8"), "invalid-argument", 3, 10, "'x' is an unknown name"),
    # names and limits
    (net("conv 8 3x3 as forward"), "reserved-name", 3, 3, "cnnspec's PyTorch backend uses it"),
    (net("conv 6 5x5 as input"), "reserved-name", 3, 3, "the exported graph uses it"),
    (net("conv 8 3x3 as output"), "reserved-name", 3, 3, "e.g. `as output_1`"),
    (net("repeat 1000000000 {\n}"), "too-large", 3, 10, "repeat 1,000,000,000 is too large"),
    (net("repeat 1000 {\nrepeat 1000 {\nrelu\n}\n}"), "too-large", 3, 10, "repeat 1,000 is too large"),
    (net("conv 99999999999999999999 3x3"), "too-large", 3, 8, "up to 9,223,372,036,854,775,807"),
    (net("conv 8 3x3\nleakyrelu 1e400"), "too-large", 4, 13, "finite decimals"),
    (net("conv 4 3x3", "1x99999999999999999999x4"), "too-large", 2, 9, "size '1x99999"),
    (net("repeat 1 {\n" * 70 + "relu\n" + "}\n" * 70), "too-deep", 67, 10, "more than 64 levels"),
    ("# nothing here\n", "no-network", 1, 1, "defines no network"),
    ("\n\n", "no-network", 1, 1, "network NAME {"),
    ("block b(in) {\n  conv in 1x1\n}\n" + net("b 3"), "reserved-name", 1, 9, "`in` is the block's input"),
    # habits from PyTorch and Keras, each answered in cnnspec's words
    (net("conv 3x3 64"), "invalid-argument", 3, 8, "swap them: `conv 64 3x3`"),
    (net("dropout 50"), "invalid-argument", 3, 11, "`dropout 0.5` drops 50%"),
    (net("dropout 1"), "invalid-argument", 3, 11, "would drop everything"),
    (net("conv 8 3x3\nbatchnorm 8"), "too-many-arguments", 4, 13, "write `batchnorm` alone"),
    (net("flatten\nLinear 10"), "unknown-layer", 4, 3, "cnnspec writes Linear as `dense`"),
    (net("MaxPooling2D 2"), "unknown-layer", 3, 3, "`pool max`"),
    (net("adaptive_avg_pool2d"), "unknown-layer", 3, 3, "`globalpool avg`"),
    (net("relu", "28x28"), "input-rank", 2, 9, "image with one channel: input 1x28x28"),
    (net("relu", "1x3x32x32"), "input-rank", 2, 9, "leave the batch out: input 3x32x32"),
    (net("relu", "2x1x3x32x32"), "invalid-argument", 2, 9, "leave the batch out: input 1x3x32x32"),
    # sizes per axis: one number for all, or one per axis of the input
    (net("conv 8 3x3", "1x100"), "invalid-argument", 3, 10, "gives 2 axes, but this network has 1 (length)"),
    (
        net("conv 8 3x3", "28x28"),
        "invalid-argument",
        3,
        10,
        "for a 28x28 image with one channel: input 1x28x28",
    ),
    (net("pool max 2x2", "3x8x32x32"), "invalid-argument", 3, 12, "the input 3x8x32x32 is CxDxHxW"),
    (net("conv 8 3 pad=1x1", "3x8x32x32"), "invalid-argument", 3, 16, "e.g. 1x1x1"),
    # `c-8` is `c` and `-8`: said as such, not as a puzzling extra argument
    ("block b(c) {\n  conv c-8 3x3\n}\n" + net("b 16"), "invalid-argument", 2, 8, "`c - 8`"),
    (net("conv 8 3x3 pad=k-1"), "invalid-argument", 3, 18, "'k' and '-1'"),
    (net("conv 3 1x1 as a\noutput a a"), "invalid-argument", 4, 12, "'a' is already an output"),
    (net("conv 3 1x1\noutput in"), "invalid-argument", 4, 10, "the network's input cannot be an output"),
    # warnings
    (net("conv 8 3x3 stride=2", "1x28x28"), "dropped-pixels", 3, 21, "last 1 row and column"),
    (net("pool max 2", "1x7x6"), "dropped-pixels", 3, 12, "last 1 row of the 1x7x6 input is"),
    (net("pool max 4", "1x6x6"), "dropped-pixels", 3, 12, "last 2 rows and columns"),
    (net("conv 8 3x3", "224x224x3"), "channels-last", 2, 9, "input 3x224x224"),
    (net("conv 8 3x3", "28x28x1"), "channels-last", 2, 9, "1 channel of 28x28: input 1x28x28"),
    (net("conv 8 2x2 pad=same", "1x8x8"), "asymmetric-same", 3, 18, "top/bottom 0/1"),
    (net("flatten\ndense 10 softmax\ndense 5", "1x4x4"), "softmax-not-last", 4, 3, "followed by dense2"),
    (
        net("flatten\ndense 10\nsoftmax\ndropout 0.5", "1x4x4"),
        "dropout-after-output",
        6,
        3,
        "after the output layer dense1",
    ),
]


@pytest.mark.parametrize(
    "spec, code, line, column, words", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_diagnostic(spec, code, line, column, words):
    result = check_text(spec)
    found = [d for d in result.diagnostics if d.code == code]
    assert found, f"no [{code}] in {[(d.code, d.message) for d in result.diagnostics]}"
    d = found[0]
    assert (d.span.line, d.span.column) == (line, column), d
    assert words in d.message + " " + (d.help or "")
    expected_severity = "warning" if CODES[code].startswith("(warning)") else "error"
    assert d.severity == expected_severity


def test_an_output_listed_twice_is_one_error_at_the_repeat():
    result = check_text(net("conv 3 1x1 as a\nconv 2 1x1 from a as b\noutput a b a"))
    assert [(d.code, d.span.column) for d in result.errors] == [("invalid-argument", 14)]


def test_a_spaced_minus_still_subtracts():
    spec = "block b(c) {\n  conv c - 8 3x3 pad=c//8 - 1\n}\n" + net("b 16", "3x8x8")
    assert check_text(spec).network().layers[0].output_shape == (8, 8, 8)


@pytest.mark.parametrize("shape", ["3x224x224", "64x56x56", "16x8x8", "512x7x7", "100", "4x16x16"])
def test_channels_first_inputs_raise_no_layout_warning(shape):
    assert "channels-last" not in [d.code for d in check_text(net("relu", shape)).diagnostics]


def test_every_code_is_exercised():
    exercised = {case[1] for case in CASES} | {
        "use-cycle",
        "unknown-network",
        "unknown-name",
        "drop-too-many",
        "transfer-shape-changed",
    }
    exercised |= RUNTIME_CODES  # tested in test_deploy_export.py, test_cli_run.py, test_importer.py, test_hardening_exits.py
    assert set(CODES) - exercised == set()


def test_all_errors_are_collected_in_one_run():
    result = check_text(net("convv 3 3x3\nconv 8 3x3 strides=2\npool 2\nconv 8 3x3 -> 1x1x1", "1x8x8"))
    codes = [d.code for d in result.errors]
    assert codes == ["unknown-layer", "unknown-option", "invalid-argument", "shape-mismatch"]


def test_rendered_diagnostic_has_line_caret_and_help():
    result = check_text(net("conv 16 3x3 strides=2"))
    text = render(result.errors[0], result.sources)
    assert text.splitlines() == [
        "t.cnn:3:15: error: conv has no option 'strides' (it takes: filters, kernel, stride, pad, "
        "dilation, groups, bias, activation, weights) [unknown-option]",
        "   3 |   conv 16 3x3 strides=2",
        "     |               ^~~~~~~",
        "  help: did you mean 'stride'?",
    ]


def test_use_cycle(tmp_path: Path):
    (tmp_path / "a.cnn").write_text('use "b.cnn"\n')
    (tmp_path / "b.cnn").write_text('use "a.cnn"\n')
    result = cnnspec.check(tmp_path / "a.cnn")
    (d,) = result.errors
    assert d.code == "use-cycle" and d.span.line == 1 and "a.cnn -> " in d.message


def test_block_layers_point_at_the_block_line_and_the_call():
    spec = "block b(f) {\n  conv f 3x3\n}\n" + net("b 8 -> 8x30x30\nb 8", "1x32x32")
    result = check_text(spec)
    assert result.ok
    (layer1, layer2) = result.network().layers
    assert layer1.layer.span.line == 2 and layer1.layer.calls[0].line == 6
    assert (layer1.name, layer2.name, layer2.layer.block) == ("conv1", "conv2", "b2")


def test_mistakes_file_shows_every_semantic_diagnostic():
    result = cnnspec.check(SPECS / "mistakes.cnn")
    shown = {d.code for d in result.diagnostics}
    # need files of their own (too-deep: 64 nested levels; no-network: an empty file)
    not_here = {"syntax-error", "use-cycle", "too-deep", "no-network"} | RUNTIME_CODES
    assert set(CODES) - not_here - shown == set()
    syntax = cnnspec.check(SPECS / "mistakes_syntax.cnn")
    assert [d.code for d in syntax.diagnostics] == ["syntax-error"]


def test_a_problem_inside_a_block_notes_where_the_block_was_used():
    spec = "block b(f) {\n  conv f 3x3\n  pool max 2 strides=1\n}\n" + net("b 8\nb 4", "1x3x3")
    result = check_text(spec)
    unknown = [d for d in result.errors if d.code == "unknown-option"]
    assert unknown[0].span.line == 3 and unknown[0].notes == ("in a block used at t.cnn:7:3",)
    text = render(unknown[0], result.sources)
    assert "  note: in a block used at t.cnn:7:3" in text
    too_large = [d for d in result.errors if d.code == "kernel-too-large"]
    assert too_large[0].span.line == 2 and too_large[0].notes == ("in a block used at t.cnn:8:3",)


def test_a_block_without_parameters_needs_no_parentheses():
    text = "block stem {\n  conv 8 3x3; relu\n}\nblock tail() {\n  flatten\n}\n" + net("stem\ntail", "1x8x8")
    result = check_text(text)
    assert result.ok, [d.message for d in result.diagnostics]
    network = result.network()
    assert [layer.name for layer in network.layers] == ["conv1", "relu1", "flatten1"]
    assert network.layer("flatten1").output_shape == (8 * 6 * 6,)


@pytest.mark.parametrize(
    "line, help_",
    [
        ("concat a, b", "separate arguments and names with spaces, not commas: `concat a b`"),
        ("conv 8, 3x3", "separate arguments and names with spaces, not commas: `conv 8 3x3`"),
        ("conv 8 3x3 pad=(1,1), relu", "separate arguments and names with spaces, not commas"),
    ],
)
def test_a_comma_between_arguments_says_to_use_spaces(line, help_):
    text = net(f"conv 4 3x3 pad=1 as a\nconv 4 3x3 pad=1 as b\n{line}", "1x8x8")
    result = check_text(text)
    assert [d.code for d in result.diagnostics] == ["syntax-error"]
    assert result.diagnostics[0].help == help_


@pytest.mark.parametrize(
    "body, code, words, column",
    [
        ("slice 0:32", "slice-outside", "slice 0:32 reaches outside the 24 channels (0:24)", 9),
        ("slice -30:end", "slice-outside", "reaches outside the 24 channels", 9),
        ("slice 8:8", "slice-outside", "slice 8:8 is empty", 9),
        ("slice 3", "invalid-argument", "expected a channel range such as 0:64", 9),
        ("split 5 as a b c d e\nconcat a b c d e", "split-mismatch", "5 equal parts, but there are 24", 9),
        (
            "split (8, 8, 4) as a b c\nconcat a b c",
            "split-mismatch",
            "8 + 8 + 4 = 20 do not add up to the 24",
            9,
        ),
        ("shuffle 5", "groups-mismatch", "the 24 channels do not divide into 5 groups", 11),
        ("split 2 as a", "missing-argument", "split makes 2 parts but has 1 name", 3),
        ("split 3", "missing-argument", "split makes 3 parts but has no names", 3),
        ("split 2 as a b c", "too-many-arguments", "split makes 2 parts but has 3 names", 3),
        ("split 1 as a", "invalid-argument", "split takes 2 to 4,096 equal parts", 9),
        ("split as a b", "missing-argument", "split takes one argument", 3),
        ("split 2 stride=2 as a b", "unknown-option", "split takes no options", 11),
        ("conv 8 1x1 as a b", "invalid-argument", "conv makes one layer: one name after `as`", 19),
    ],
)
def test_channel_ranges_splits_and_shuffles_say_what_does_not_fit(body, code, words, column):
    result = check_text(net(body, "24x8x8"))
    found = [d for d in result.errors if d.code == code]
    assert found and words in found[0].message, [d.message for d in result.diagnostics]
    assert found[0].span.line == 3 and found[0].span.column == column
    assert found[0].help  # each says how to fix it


def test_split_parts_are_named_layers_and_the_chain_reads_the_last():
    text = (
        "block unit(c) {\n  split 2 as left right\n  conv c 1x1 as mixed\n  concat left mixed\n}\n"
        "network n {\n  input 16x4x4\n  unit 8 as u\n  split (4, 12) from u as thin thick\n"
        "  concat thick thin\n}\n"
    )
    result = check_text(text)
    assert result.diagnostics == []
    network = result.network()
    rows = {layer.name: (layer.output_shape, layer.inputs) for layer in network.layers}
    assert rows["u_left"] == ((8, 4, 4), ("input",)) and rows["u_right"] == ((8, 4, 4), ("input",))
    assert rows["u_mixed"][1] == ("u_right",)  # the next line reads the last part
    assert rows["thin"] == ((4, 4, 4), ("concat1",)) and rows["thick"] == ((12, 4, 4), ("concat1",))
    assert network.output_shape == (16, 4, 4)


def test_a_join_names_a_block_instance_as_the_user_named_it():
    spec = (
        "block down(c) {\n  conv c 3x3 pad=1\n  relu\n  pool max 2\n}\n"
        "network u {\n  input 1x32x32\n  down 8 as enc1\n  down 16 as enc2\n"
        "  deconv 8 2x2 stride=2 as up\n  concat enc2 up\n}\n"
    )
    (d,) = check_text(spec).errors
    assert "gets enc2 (line 9) 16x8x8, up (line 10) 8x16x16" in d.message  # not `pool2 (line 4)`
