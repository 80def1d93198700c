"""Issue 24, rule 4: text from a model file is data. Every string an ONNX model carries
(its producer, domain, documentation, graph and node names, metadata) that reaches a spec,
a terminal or a picture is cleaned: no line break, no control byte, no escape sequence,
and an imported spec holds no statement the graph did not produce. The cases the issue
lists, then generated variants."""

from __future__ import annotations

import re
import unicodedata

import onnx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from cnnspec.cli import main
from cnnspec.deploy.export import build_model, save
from cnnspec.importer import import_model
from tests.conftest import check_text

generated = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# What a hostile string is made of: line breaks of every kind, escapes, quotes, statements.
_PIECES = st.sampled_from(
    ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1b[2J", "\x1b]0;t\x07", "\x00", "\x7f",
     '"', "\\", "#", "{", "}", ";", 'use "/etc/passwd"', "network evil { input 1 }", "freeze all",
     "output x", "\ufeff", "\u202e", "\t"]
)  # fmt: skip
HOSTILE = st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=12).map("".join)


_REORDERING = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")


def _clean(text: str) -> bool:
    """No character a terminal or an editor would take as a line break, a command or an
    order to show the text after it reversed."""
    return all(
        ch == "\n" or (unicodedata.category(ch) not in ("Cc", "Zl", "Zp") and ch not in _REORDERING)
        for ch in text
    )


def _statements(spec: str) -> list[str]:
    return [line for line in spec.splitlines() if line.strip() and not line.lstrip().startswith("#")]


_SMALL = "network n {\n  input 1x6x6\n  conv 2 3x3\n  relu\n  flatten\n  dense 3\n}\n"


@pytest.mark.parametrize(
    "producer",
    [
        'torch\nuse "/nonexistent/evil.cnn"',  # a newline, then a statement
        "torch\rnetwork evil { input 1 }",  # a lone CR ends a line for the parser
        "torch\u2028freeze all",  # Unicode line separators end lines in editors and splitlines
        "torch\x85output x",
        "\x1b[2J\x1b[31mred",  # terminal escapes
        "x" * 5000,
    ],
)
def test_strings_from_a_model_stay_inside_one_comment(producer, tmp_path):
    from cnnspec.language.parse import parse_source

    network = check_text("network n {\n  input 1x6x6\n  conv 2 3x3\n  flatten\n  dense 3\n}\n").network()
    model, _ = build_model(network, seed=0)
    model.producer_name = producer
    save(model, tmp_path / "m.onnx")
    imported = import_model(tmp_path / "m.onnx", "m", weights_file='w\nuse "x.cnn".npz')
    parsed = parse_source(imported.spec, "m.cnn")
    assert not parsed.uses and [n.name for n in parsed.networks] == ["m"]
    lines = imported.spec.splitlines()  # every line break Python knows, not only \n
    header = lines[: lines.index("network m {")]
    assert header and all(line.startswith("# ") and len(line) < 600 for line in header)
    assert "\x1b" not in imported.spec and "\r" not in imported.spec
    again = check_text(imported.spec)
    assert again.ok and again.network().total_params == network.total_params


def test_node_names_reach_the_terminal_on_one_line(tmp_path, capsys):
    """A node named with a line break and terminal escapes: the report stays one line per
    problem, the escapes written out, not sent."""
    evil = "stem\ncnnspec: error: forged\x1b[2J"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name=evil)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="a\nb")
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.cnn")]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "forged" in err
    assert all(line.startswith(("cnnspec: ", "  help: ")) for line in err.splitlines()), err
    assert not any(line.startswith("cnnspec: error: forged") for line in err.splitlines()), err


# ------------------------------------------------------------------ generated variants


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[str, int]:
    """The plain model's file (a string: hypothesis prints its arguments) and its parameters."""
    network = check_text(_SMALL).network()
    model, _ = build_model(network, seed=0)
    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    save(model, path)
    return str(path), network.total_params


@generated
@given(
    producer=HOSTILE,
    version=HOSTILE,
    domain=HOSTILE,
    doc=HOSTILE,
    graph_name=HOSTILE,
    metadata=st.dictionaries(HOSTILE, HOSTILE, max_size=3),
)
@example(producer="\x1b[2J" * 3, version="", domain="", doc="", graph_name="", metadata={})  # nine "["s
def test_model_strings_never_change_the_statements(
    tmp_path_factory, small_model, producer, version, domain, doc, graph_name, metadata
):
    """Whatever the model-level strings hold, the imported spec's statements are the ones
    the plain model gives, and the whole text is clean."""
    plain, params = small_model
    folder = tmp_path_factory.mktemp("strings")
    model = onnx.load(plain)
    model.producer_name, model.producer_version, model.domain, model.doc_string = (
        producer,
        version,
        domain,
        doc,
    )
    model.graph.name, model.graph.doc_string = graph_name, doc
    helper.set_model_props(model, metadata)
    save(model, folder / "m.onnx")
    expected = import_model(plain, "m")
    imported = import_model(folder / "m.onnx", "m", weights_file=producer + ".npz")
    assert _clean(imported.spec), repr(imported.spec[:400])
    assert _statements(imported.spec) == _statements(expected.spec)
    again = check_text(imported.spec)
    assert again.ok and again.network().total_params == params


def _relu_chain(names: list[str], tensors: list[str]) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    nodes, previous = [], "x"
    for name, tensor in zip(names, tensors):
        nodes.append(helper.make_node("Relu", [previous], [tensor], name=name))
        previous = tensor
    y = helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 2, 4, 4])
    return helper.make_model(
        helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )


@generated
@given(st.lists(HOSTILE, min_size=1, max_size=5, unique=True), st.data())
def test_node_and_tensor_names_become_plain_layer_names(tmp_path_factory, names, data):
    """Any node and tensor names: the spec names its layers with identifiers only, and
    checks; nothing the names held reaches it raw."""
    tensors = data.draw(
        st.lists(
            HOSTILE.filter(lambda t: t and t != "x"), min_size=len(names), max_size=len(names), unique=True
        )
    )
    path = tmp_path_factory.mktemp("names") / "m.onnx"
    onnx.save(_relu_chain(names, tensors), path)
    imported = import_model(path, "m")
    assert _clean(imported.spec)
    for line in _statements(imported.spec)[1:-1]:  # inside `network m { ... }`
        for statement in line.split(";"):
            words = statement.split()
            assert words[0] in ("input", "relu"), line
            if "as" in words:
                assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", words[words.index("as") + 1]), line
    assert check_text(imported.spec).ok


@generated
@given(HOSTILE.filter(bool))
def test_a_node_s_name_in_an_error_stays_on_its_line(tmp_path_factory, capsys, name):
    """A node cnnspec cannot import, named anything: one clean line per problem."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name=name)], "g", [x], [y])
    folder = tmp_path_factory.mktemp("error")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx")
    assert main(["import", str(folder / "m.onnx"), "-o", str(folder / "m.cnn")]) == 1
    err = capsys.readouterr().err
    assert _clean(err) and all(line.startswith(("cnnspec: ", "  help: ")) for line in err.splitlines()), err
    assert not (folder / "m.cnn").exists()
