"""`cnnspec lsp`: a language server over stdio (pygls), so an editor underlines a shape
error as you type.

- Diagnostics on open and on every change: the same codes, messages and positions as
  `cnnspec check`.
- Hover on a layer's line: its input and output shapes, parameters, MACs and receptive
  field (each instance's, on a line inside a block).
- Go to definition of a block, a network, a named layer or a `use`d file.
- Completion of layer kinds, blocks and keywords at the start of a statement, and of a
  kind's options and activations after it.
- Formatting (format on save): `cnnspec fmt`'s layout, for a document that parses.

The analysis below is plain Python (tested and timed without a client); `serve` wires
it to pygls, the `lsp` extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.diagnostics import CnnspecError, Diagnostic, Span, error, suggestion_budget
from ..base.files import MAX_SOURCE_BYTES
from ..base.resources import gc_paused
from ..infer import CheckedLayer, CheckResult, infer
from ..kinds import ACTIVATIONS, KINDS, format_shape
from ..language.fmt import MeaningChanged, reformat
from ..resolve import resolve_sources

if TYPE_CHECKING:  # the lsp extra; annotations only
    from pygls.lsp.server import LanguageServer

KEYWORDS = ("network", "block", "use", "input", "output", "repeat", "residual", "split", "drop", "freeze")
WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass
class Analysis:
    path: str
    text: str
    result: CheckResult | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    blocks: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> (path, line, col)
    networks: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    block_params: dict[str, list[str]] = field(default_factory=dict)


def lines_of(text: str) -> list[str]:
    """The document's lines as LSP and the parser count them: CR, LF and CRLF each end one
    (str.splitlines would also split at form feeds and U+2028)."""
    return re.split(r"\r\n|\r|\n", text)


def from_utf16(text: str, line: int, character: int) -> tuple[int, int] | None:
    """An LSP position (0-based line; character in UTF-16 units, LSP's default) as (line,
    character in code points), or None when it is outside the document (a negative line)."""
    lines = lines_of(text)
    if not 0 <= line < len(lines) or character < 0:
        return None
    units, current = 0, lines[line]
    for index, char in enumerate(current):
        if units >= character:
            return line, index
        units += 2 if ord(char) > 0xFFFF else 1
    return line, len(current)


def to_utf16(text: str, line: int, column: int) -> int:
    """A code-point column (0-based) on a 0-based line as UTF-16 units, for the client."""
    lines = lines_of(text)
    current = lines[line] if 0 <= line < len(lines) else ""
    return len(current[:column].encode("utf-16-le", "surrogatepass")) // 2 + max(column - len(current), 0)


def analyse(text: str, path: str) -> Analysis:
    """Check `text` as the file `path` (its `use`s are read relative to it)."""
    if text.startswith("\ufeff"):  # a byte-order mark, as `check` skips it; a space keeps the columns
        text = " " + text[1:]
    analysis = Analysis(path, text)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:  # as `check` refuses such a file: before any parsing
        analysis.diagnostics = [
            error(
                "too-large",
                f"this document is {size:,} bytes; a spec is at most {MAX_SOURCE_BYTES:,}",
                Span(path, 1, 1),
                "split it into files that `use` each other",
            )
        ]
        return analysis
    try:
        with gc_paused(), suggestion_budget():  # as infer.check_text
            resolved = resolve_sources(text, path, Path(path))
            result = infer(resolved)
    except CnnspecError as exc:  # defensive: the stages report through results
        analysis.diagnostics = list(exc.diagnostics)
        return analysis
    analysis.result = result
    analysis.diagnostics = [d for d in result.diagnostics if d.span is None or d.span.path == path]
    spec = resolved.parsed.get(path)
    if spec is not None:  # None after a syntax error
        _definitions(analysis, spec, path)
    return analysis


def _definitions(analysis: Analysis, spec, path: str) -> None:
    """Where this file defines its blocks and networks."""
    for block in spec.blocks:
        analysis.blocks[block.name] = (path, block.span.line, block.span.column)
        analysis.block_params[block.name] = [p.name for p in block.params]
    for network in spec.networks:
        analysis.networks[network.name] = (path, network.span.line, network.span.column)


# ------------------------------------------------------------------ diagnostics


def lsp_diagnostic(d: Diagnostic, text: str = "") -> dict:
    """A cnnspec diagnostic as LSP's (0-based lines; characters in UTF-16 units of `text`)."""
    line = (d.span.line - 1) if d.span else 0
    start = (d.span.column - 1) if d.span else 0
    end = (d.span.end_column - 1) if d.span and d.span.end_column else start + 1
    start, end = to_utf16(text, line, start), to_utf16(text, line, end)
    message = d.message + (f"\nhelp: {d.help}" if d.help else "")
    return {
        "range": {
            "start": {"line": line, "character": start},
            "end": {"line": line, "character": max(end, start + 1)},
        },
        "severity": 1 if d.severity == "error" else 2,
        "code": d.code,
        "source": "cnnspec",
        "message": message,
    }


# ------------------------------------------------------------------ hover


def layers_at(analysis: Analysis, line: int, character: int) -> list[CheckedLayer]:
    """The checked layers written on this line (0-based), nearest the cursor first."""
    if analysis.result is None:
        return []
    found = [
        entry
        for network in analysis.result.networks
        for entry in network.layers
        if entry.layer.span.path == analysis.path and entry.layer.span.line == line + 1
    ]
    covering = [
        e
        for e in found
        if e.layer.span.column - 1 <= character <= (e.layer.span.end_column or e.layer.span.column + 40) - 1
    ]
    return covering or found


def hover(analysis: Analysis, line: int, character: int) -> str | None:
    """Markdown: each layer on this line with its shapes, parameters, MACs, receptive field
    (`character` in UTF-16 units, as the client sends it)."""
    position = from_utf16(analysis.text, line, character)
    if position is None:
        return None
    entries = layers_at(analysis, *position)
    if not entries:
        return None
    parts = []
    for entry in entries[:4]:
        rf = "x".join(map(str, entry.receptive_field)) if entry.receptive_field else "n/a"
        where = f" (in {entry.layer.block})" if entry.layer.block else ""
        parts.append(
            f"**{entry.name}**{where} `{entry.layer.spec_text()}`  \n"
            f"{format_shape(entry.input_shape)} → **{format_shape(entry.output_shape)}** · "
            f"{entry.params:,} params · {entry.macs:,} MACs · receptive field {rf}"
        )
    if len(entries) > 4:
        parts.append(f"... and {len(entries) - 4} more instances")
    return "\n\n".join(parts)


# ------------------------------------------------------------------ definition


def _word_at(text: str, line: int, character: int) -> str | None:
    lines = lines_of(text)
    if not 0 <= line < len(lines):
        return None
    for match in WORD.finditer(lines[line]):
        if match.start() <= character <= match.end():
            return match.group()
    return None


def definition(analysis: Analysis, line: int, character: int) -> tuple[str, int, int] | None:
    """(path, 1-based line, 1-based column) of what the word under the cursor names."""
    position = from_utf16(analysis.text, line, character)
    if position is None:
        return None
    line, character = position
    lines = lines_of(analysis.text)
    current = lines[line]
    use = re.match(r'\s*use\s+"([^"\n]*)"', current)
    if use:
        try:
            target = (Path(analysis.path).parent / use.group(1)).resolve()
            return (str(target), 1, 1) if target.is_file() else None
        except (OSError, RuntimeError, UnicodeError, ValueError):  # a name no file can have
            return None
    word = _word_at(analysis.text, line, character)
    if word is None:
        return None
    if word in analysis.blocks:
        return analysis.blocks[word]
    if word in analysis.networks:
        return analysis.networks[word]
    if analysis.result is not None:
        for network in analysis.result.networks:
            for entry in network.layers:
                span = entry.layer.span
                if entry.name == word or entry.layer.block == word:
                    return (span.path, span.line, span.column)
    return None


# ------------------------------------------------------------------ completion


def _first_words(analysis: Analysis, prefix: str) -> list[tuple[str, str]]:
    """What a statement may start with: keywords, layer words, activations, blocks."""
    items = [(k, "keyword") for k in KEYWORDS]
    items += [(k, "layer") for k in KINDS if k not in ACTIVATIONS]
    items += [(a, "activation") for a in ACTIVATIONS]
    items += [(b, "block") for b in analysis.blocks]
    return [item for item in items if item[0].startswith(prefix)]


def _options_of(word: str) -> list[tuple[str, str]]:
    """What may follow a layer word: its KEY= options, its bare flags, `as`."""
    cls = KINDS[word]
    by_flag = {name for name, _ in cls.flags.values()}  # `ceil`, `relu`: written as bare words
    items = [
        (f"{name}=", "option")
        for name in cls.arguments
        if name not in cls.positional_for(word) and name not in by_flag
    ]
    items += [(flag, "activation" if flag in ACTIVATIONS else "option") for flag in cls.flags]
    return items + [("as", "keyword")]


def completions(analysis: Analysis, line: int, character: int) -> list[tuple[str, str]]:
    """(label, kind) pairs: kind is keyword, layer, activation, block, option or param."""
    position = from_utf16(analysis.text, line, character)
    if position is None:
        return []
    line, character = position
    before = lines_of(analysis.text)[line][:character]
    statement = re.split(r"[;{]", before)[-1]
    words = statement.split()
    if not words or (len(words) == 1 and not statement.endswith(" ")):
        return _first_words(analysis, words[0] if words else "")
    op = words[0]
    if op in KINDS:
        return _options_of(op)
    if op in analysis.block_params:
        return [(f"{name}=", "param") for name in analysis.block_params[op]] + [("as", "keyword")]
    return []


# ------------------------------------------------------------------ the server


# ------------------------------------------------------------------ formatting


def formatting(text: str, path: str) -> tuple[str, tuple[int, int]] | None:
    """`cnnspec fmt` for the editor: the formatted text, and the end of the document it
    replaces (0-based line; character in UTF-16 units, LSP's default). None when the text
    is already formatted or does not parse (its diagnostics say why)."""
    try:
        formatted = reformat(text, path)
    except (CnnspecError, MeaningChanged):
        return None
    if formatted == text:
        return None
    lines = re.split(r"\r\n|\r|\n", text)  # the line breaks LSP counts, as the parser does
    return formatted, (len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)


def serve() -> None:  # pragma: no cover - exercised through a real client in tests/test_views_lsp.py
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path, to_fs_path

    from .. import __version__

    server = LanguageServer(
        "cnnspec",
        __version__,
        text_document_sync_kind=types.TextDocumentSyncKind.Full,
        protocol_cls=_answering_protocol(),
    )
    cache: dict[str, Analysis] = {}  # the latest finished analysis per document
    _document_features(server, types, cache, to_fs_path)
    _query_features(server, types, cache, from_fs_path)
    _formatting_feature(server, types, to_fs_path)
    server.start_io()


def _answering_protocol():  # pragma: no cover - exercised through a real client, see serve
    """pygls's protocol, except that a request whose parameters do not fit LSP's types (a
    line of -1, a line given as a string) is answered with an error: pygls drops it, and
    the editor would wait for its answer forever."""
    from pygls.exceptions import JsonRpcException
    from pygls.protocol import LanguageServerProtocol

    class AnsweringProtocol(LanguageServerProtocol):
        def structure_message(self, data: dict):
            try:
                return super().structure_message(data)
            except JsonRpcException as exc:
                if "id" in data and "method" in data:
                    self._send_response(data["id"], None, exc.to_response_error())
                raise

    return AnsweringProtocol


SETTLE_SECONDS = 0.05  # a check starts once the document has been still this long


def _document_features(server, types, cache: dict, to_fs_path) -> None:  # pragma: no cover - see serve
    """Open, change, close: each (re)check publishes its diagnostics."""
    import asyncio

    edits: dict[str, int] = {}  # changes seen per document
    locks: dict[str, asyncio.Lock] = {}

    async def refresh(ls: LanguageServer, uri: str) -> None:
        # The check runs in a worker thread: hover, definition and completion keep
        # answering from the last analysis while a keystroke's re-check runs, and a
        # re-check overtaken by a newer keystroke publishes nothing.
        edits[uri] = edit = edits.get(uri, 0) + 1
        await asyncio.sleep(SETTLE_SECONDS)  # keystrokes in a burst: only the last is checked
        async with locks.setdefault(uri, asyncio.Lock()):  # one check of a document at a time
            if edits.get(uri) != edit:  # a newer edit came: its own refresh checks it
                return
            document = ls.workspace.get_text_document(uri)
            path = to_fs_path(uri) or uri
            analysis = await asyncio.to_thread(analyse, document.source, path)
        if edits.get(uri) != edit:
            return
        cache[uri] = analysis
        diagnostics = [
            types.Diagnostic(**_lsp_types(lsp_diagnostic(d, analysis.text), types))
            for d in analysis.diagnostics
        ]
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        await refresh(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        await refresh(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        cache.pop(params.text_document.uri, None)
        edits.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )


def _query_features(server, types, cache: dict, from_fs_path) -> None:  # pragma: no cover - see serve
    """Hover, go to definition, completion: answered from the latest analysis."""

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(ls: LanguageServer, params: types.HoverParams) -> types.Hover | None:
        analysis = cache.get(params.text_document.uri)
        text = hover(analysis, params.position.line, params.position.character) if analysis else None
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def on_definition(ls: LanguageServer, params: types.DefinitionParams) -> types.Location | None:
        analysis = cache.get(params.text_document.uri)
        found = definition(analysis, params.position.line, params.position.character) if analysis else None
        if found is None:
            return None
        path, line, column = found
        position = types.Position(line=line - 1, character=column - 1)
        return types.Location(uri=from_fs_path(path) or path, range=types.Range(start=position, end=position))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" "]))
    def on_completion(ls: LanguageServer, params: types.CompletionParams) -> types.CompletionList:
        analysis = cache.get(params.text_document.uri)
        kinds = {
            "keyword": types.CompletionItemKind.Keyword,
            "layer": types.CompletionItemKind.Class,
            "activation": types.CompletionItemKind.Function,
            "block": types.CompletionItemKind.Module,
            "option": types.CompletionItemKind.Property,
            "param": types.CompletionItemKind.Variable,
        }
        items = completions(analysis, params.position.line, params.position.character) if analysis else []
        return types.CompletionList(
            is_incomplete=False,
            items=[types.CompletionItem(label=label, kind=kinds[kind]) for label, kind in items],
        )


def _formatting_feature(server, types, to_fs_path) -> None:  # pragma: no cover - see serve
    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def on_formatting(ls: LanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        uri = params.text_document.uri
        found = formatting(ls.workspace.get_text_document(uri).source, to_fs_path(uri) or uri)
        if found is None:
            return []
        text, (line, character) = found
        whole = types.Range(
            start=types.Position(line=0, character=0), end=types.Position(line=line, character=character)
        )
        return [types.TextEdit(range=whole, new_text=text)]


def _lsp_types(d: dict, types) -> dict:
    start, end = d["range"]["start"], d["range"]["end"]
    return {
        "range": types.Range(
            start=types.Position(line=start["line"], character=start["character"]),
            end=types.Position(line=end["line"], character=end["character"]),
        ),
        "severity": types.DiagnosticSeverity(d["severity"]),
        "code": d["code"],
        "source": d["source"],
        "message": d["message"],
    }
