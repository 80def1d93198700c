"""`cnnspec lsp`, spoken to by a real client over stdio (JSON-RPC with Content-Length
framing), and its analysis functions directly."""

from __future__ import annotations

import time

from cnnspec.views.lsp import analyse, completions, definition, formatting, hover
from tests.conftest import SPECS
from tests.helpers import Client

SPEC = """block pair(filters) {
  conv filters 3x3 pad=1 relu
  conv filters 3x3 pad=1 relu as second
}

network small {
  input 3x32x32
  conv 16 5x5 relu as first
  pair 16 as p1
  pool max 2
  conv 32 3x3 from first
  flatten
  dense 10 softmax
}
"""


def test_a_client_session_over_stdio(tmp_path):
    path = tmp_path / "small.cnn"
    path.write_text(SPEC)
    uri = path.as_uri()
    client = Client(tmp_path)
    try:
        init = client.request(
            "initialize", {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}}
        )
        capabilities = init["capabilities"]
        assert (
            capabilities["hoverProvider"]
            and capabilities["definitionProvider"]
            and capabilities["completionProvider"]
        )
        client.notify("initialized", {})
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "cnn", "version": 1, "text": SPEC}},
        )
        first = client.diagnostics(uri)
        assert [d["code"] for d in first] == [
            "unused-branch"
        ]  # pool1 reaches no output: `from first` skips it

        # a keystroke that breaks a shape: the error appears where `check` puts it
        broken = SPEC.replace("dense 10 softmax", "conv 8 3x3")
        started = time.perf_counter()
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": broken}]},
        )
        errors = [d for d in client.diagnostics(uri) if d["severity"] == 1]
        elapsed = time.perf_counter() - started
        print(f"diagnostics after a change: {elapsed * 1000:.1f} ms")  # reported, never asserted
        assert [d["code"] for d in errors] == ["needs-spatial-input"]
        assert errors[0]["range"]["start"] == {"line": 12, "character": 2}
        assert errors[0]["message"].startswith("conv")

        hover = client.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 7, "character": 4}}
        )
        text = hover["contents"]["value"]
        assert "**first**" in text and "3x32x32 → **16x28x28**" in text and "1,216 params" in text
        assert "receptive field 5x5" in text
        inside = client.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 4}}
        )
        assert "p1_second" in inside["contents"]["value"] and "16x28x28" in inside["contents"]["value"]

        block = client.request(
            "textDocument/definition", {"textDocument": {"uri": uri}, "position": {"line": 8, "character": 3}}
        )
        assert block["uri"] == uri and block["range"]["start"] == {
            "line": 0,
            "character": 6,
        }  # `pair` in `block pair(`
        layer = client.request(
            "textDocument/definition",
            {"textDocument": {"uri": uri}, "position": {"line": 10, "character": 20}},
        )
        assert layer["range"]["start"]["line"] == 7  # `from first` -> the line that names it

        start = client.request(
            "textDocument/completion", {"textDocument": {"uri": uri}, "position": {"line": 9, "character": 2}}
        )
        labels = {item["label"] for item in start["items"]}
        assert {"conv", "pool", "dense", "residual", "pair", "relu"} <= labels
        options = client.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": 10, "character": 13}},
        )
        messy = SPEC.replace("  conv 16 5x5 relu as first", "conv   16 5x5   relu as first")
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": messy}]},
        )
        edits = client.request(
            "textDocument/formatting",
            {"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": True}},
        )
        assert capabilities["documentFormattingProvider"]
        assert edits == [
            {
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 14, "character": 0}},
                "newText": SPEC,
            }
        ]
        labels = {item["label"] for item in options["items"]}
        assert {
            "stride=",
            "pad=",
            "dilation=",
            "groups=",
            "relu",
            "as",
        } <= labels and "filters=" not in labels
    finally:
        client.close()


def test_answers_come_from_the_last_check_while_a_keystroke_is_rechecked(tmp_path, capsys):
    lines = (
        ["network long {", "  input 3x64x64"]
        + ["  conv 8 3x3 pad=1 relu"] * 296
        + ["  flatten", "  dense 10", "}"]
    )
    text = "\n".join(lines) + "\n"
    path = tmp_path / "long.cnn"
    path.write_text(text)
    uri = path.as_uri()
    client = Client(tmp_path)
    try:
        client.start_with(tmp_path, uri, text)
        assert client.diagnostics(uri) == []
        changed = text.replace("  dense 10\n", "  dense 10\n  conv 1 1x1\n")
        started = time.perf_counter()
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": changed}]},
        )
        answer = client.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 150, "character": 4}}
        )
        hovered = time.perf_counter() - started
        (error,) = client.diagnostics(uri)
        checked = time.perf_counter() - started
        with capsys.disabled():
            print(
                f"\n  lsp, 301-line spec: hover answered {hovered * 1000:.1f} ms after a keystroke, "
                f"its diagnostics {checked * 1000:.1f} ms after it"
            )  # reported, never asserted
        assert "conv" in answer["contents"]["value"] and error["code"] == "needs-spatial-input"
    finally:
        client.close()


def test_use_files_and_definitions_across_files(tmp_path):
    (tmp_path / "base.cnn").write_text(
        "network base {\n  input 1x8x8\n  conv 4 3x3 as c1\n  flatten\n  dense 2\n}\n"
    )
    text = 'use "base.cnn"\n\nnetwork mine from base {\n  drop from dense1\n  freeze through c1\n  dense 3 as head\n}\n'
    analysis = analyse(text, str(tmp_path / "mine.cnn"))
    assert analysis.diagnostics == []
    assert definition(analysis, 0, 6) == (str((tmp_path / "base.cnn").resolve()), 1, 1)
    found = definition(analysis, 4, 18)  # `freeze through c1`: the layer, kept from base.cnn
    assert found is not None and found[0].endswith("base.cnn") and found[1:] == (3, 3)
    assert definition(analysis, 2, 20) is None  # `base` is defined in the other file, not this one


def test_analysis_of_a_300_line_spec(capsys):
    lines = (
        ["network long {", "  input 3x64x64"]
        + ["  conv 8 3x3 pad=1 relu"] * 296
        + ["  flatten", "  dense 10", "}"]
    )
    text = "\n".join(lines) + "\n"
    analyse(text, "warm.cnn")
    started = time.perf_counter()
    analysis = analyse(text, "long.cnn")
    elapsed = (time.perf_counter() - started) * 1000
    with capsys.disabled():
        print(f"\n  lsp: analysis of a {len(lines)}-line spec after a keystroke: {elapsed:.1f} ms")
    assert len(analysis.result.networks[0].layers) == 298
    assert hover(analysis, 150, 4) is not None


def test_completion_and_hover_outside_anything():
    analysis = analyse((SPECS / "lenet5.cnn").read_text(), str(SPECS / "lenet5.cnn"))
    assert hover(analysis, 0, 0) is None  # a comment line
    assert ("pool", "layer") in completions(analysis, 4, 2)
    assert completions(analysis, 4, 13) == [
        ("stride=", "option"),
        ("pad=", "option"),
        ("ceil", "option"),
        ("count_pad", "option"),
        ("as", "keyword"),
    ]


def test_without_pygls_the_command_says_how_to_get_it(monkeypatch, capsys):
    import builtins

    from cnnspec.cli import main

    real_import = builtins.__import__

    def no_pygls(name, *args, **kwargs):
        if name == "pygls":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pygls)
    assert main(["lsp"]) == 2
    assert "pip install 'cnnspec[lsp]'" in capsys.readouterr().err


def test_formatting_replaces_the_whole_document_only_when_it_parses_and_changes():
    messy = "network n {\r\ninput 1x8x8\r\n  conv 2 3x3   relu\r\n}  # é𝄞"
    text, end = formatting(messy, "n.cnn")
    assert text == "network n {\r\n  input 1x8x8\r\n  conv 2 3x3 relu\r\n}  # é𝄞\r\n"  # CRLF kept
    assert end == (3, 8)  # the last line's length in UTF-16 units: the 𝄞 counts two
    assert formatting(text, "n.cnn") is None  # already formatted: no edit
    assert formatting("network n {\n  conv 2 3x3 {\n}\n", "n.cnn") is None  # does not parse: no edit


def test_a_document_past_the_size_limit_is_one_error_before_any_parsing():
    from cnnspec.base.files import MAX_SOURCE_BYTES

    text = "network n {\n  input 4\n" + "  relu\n" * (MAX_SOURCE_BYTES // 7 + 10) + "}\n"
    analysis = analyse(text, "big.cnn")
    assert [d.code for d in analysis.diagnostics] == ["too-large"] and analysis.result is None
    assert analyse("network n {\n  input 4\n  relu\n}\n", "ok.cnn").diagnostics == []


def test_hostile_requests_are_answered(tmp_path):
    path = tmp_path / "odd.cnn"
    text = 'use "\ud800.cnn"\nnetwork n {\n  input 1x8x8\n  relu\n}\n'  # a lone surrogate in `use`
    uri = path.as_uri()
    client = Client(tmp_path)
    try:
        client.start_with(tmp_path, uri, text)
        diagnostics = client.diagnostics(uri)
        assert any("no file name can have" in d["message"] for d in diagnostics), diagnostics
        for position in (
            {"line": -1, "character": 0},
            {"line": "1", "character": 0},
            {"line": 0, "character": -4},
        ):
            for method in ("textDocument/hover", "textDocument/definition", "textDocument/completion"):
                answer = client.answer(method, {"textDocument": {"uri": uri}, "position": position})
                assert "result" in answer or "error" in answer, answer
        on_use = {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 6}}
        defined = client.answer("textDocument/definition", on_use)
        assert defined.get("result") is None and "error" not in defined
    finally:
        client.close()


def test_positions_and_ranges_count_utf16_units_as_the_client_does():
    from cnnspec.views.lsp import from_utf16, lsp_diagnostic, to_utf16

    line = "x 🙂 conv"  # the emoji: one code point, two UTF-16 units
    assert to_utf16(line, 0, 4) == 5 and from_utf16(line, 0, 5) == (0, 4)
    assert (
        from_utf16(line, -1, 0) is None and from_utf16(line, 0, -1) is None and from_utf16(line, 1, 0) is None
    )
    text = 'use "🙂.cnn"\nnetwork n {\n  input 1x8x8\n}\n'
    (d,) = analyse(text, "t.cnn").diagnostics
    assert (d.span.column, d.span.end_column) == (5, 12)  # code points, 1-based
    assert lsp_diagnostic(d, text)["range"] == {
        "start": {"line": 0, "character": 4},
        "end": {"line": 0, "character": 12},
    }
