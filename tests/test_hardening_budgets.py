"""Issue 24, rule 1: one budget per input for everything derived from it (expanded layers,
networks, names, suggestion work, nesting depth, bytes inflated from an .npz), each hit
ending in one located error in bounded time, never a RecursionError or a swap storm. The
cases the issue lists, then generated variants. The language server's document limit and
cancelled checks are tested in tests/test_views_lsp.py."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.resolve import MAX_DEPTH, MAX_EXPANSION
from tests.conftest import ROOT, check_text

generated = settings(
    max_examples=25, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def test_many_networks_share_one_expansion_budget():
    """A hundred networks each under the old per-network limit are one input too large:
    one located error, and the networks after it are not expanded at all."""
    from cnnspec.resolve import MAX_EXPANSION

    count = MAX_EXPANSION // 2 - 10
    text = "".join(f"network n{i} {{\n  input 4\n  repeat {count} {{ relu }}\n}}\n" for i in range(100))
    result = cnnspec.check_source(text, "many.cnn")
    assert codes(result) == ["too-large"] and result.diagnostics[0].span.line % 4 == 3  # a repeat line
    assert "a file and the files it uses expand to at most" in result.diagnostics[0].message
    assert sum(len(n.layers) for n in result.networks) <= MAX_EXPANSION


def test_networks_derived_from_a_large_base_count_its_layers():
    from cnnspec.resolve import MAX_EXPANSION

    base = "network base {\n  input 8\n  repeat 19000 { relu }\n}\n"
    derived = "".join(f"network d{i} from base {{\n  dense 2\n}}\n" for i in range(3000))
    result = cnnspec.check_source(base + derived, "derived.cnn")
    assert (
        codes(result) == ["too-large"]
        and "copies the 19,000 layers of 'base'" in result.diagnostics[0].message
    )
    assert sum(len(n.layers) for n in result.networks) <= MAX_EXPANSION


def test_suggestions_are_bounded_per_input(monkeypatch):
    """2,000 unknown names against 2,000 layers: every one is an error, and the suggestion
    work stops at the input's budget instead of growing as N^2."""
    import difflib

    from cnnspec.base.diagnostics import SUGGESTION_BUDGET

    compared = []
    real = difflib.get_close_matches
    monkeypatch.setattr(
        difflib, "get_close_matches", lambda w, c, **k: compared.append(len(c)) or real(w, c, **k)
    )
    layers = "\n".join(f"  relu as layer_{i}" for i in range(2000))
    joins = "\n".join(f"  add layer_{i} lyer_{i}" for i in range(2000))
    result = cnnspec.check_source(f"network n {{\n  input 4\n{layers}\n{joins}\n}}\n", "names.cnn")
    unknown = [d for d in result.diagnostics if d.code == "unknown-reference"]
    shown, hidden = len(unknown), sum(h.errors for h in result.hidden)  # the first 50 are printed
    assert shown + hidden == 2000 and sum(compared) <= SUGGESTION_BUDGET
    assert unknown[0].help == "did you mean 'layer_0'?"  # the first ones still get one


def _lying_npz(path: Path, name: str) -> None:
    """An .npz whose member's header declares 8 GB and holds 16 bytes."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + bytes(16))


def test_an_npz_is_sized_from_its_headers_before_anything_is_inflated(tmp_path, monkeypatch):
    """Weights, training data and calibration examples: a member that declares more than it
    holds is refused, and so is one that would not fit in free memory, before reading it."""
    import cnnspec.base.resources as resources
    from cnnspec.base.diagnostics import CnnspecError
    from cnnspec.deploy.int8 import load_examples
    from cnnspec.deploy.weights import load_file
    from cnnspec.training.train import load_dataset

    _lying_npz(tmp_path / "lying.npz", "conv1.weight")
    with pytest.raises(CnnspecError, match="declares 8,000,000,000 bytes but holds"):
        load_file(tmp_path / "lying.npz")
    big = np.zeros((1000, 1, 10, 10), np.float32)  # 400 KB once read, a few KB compressed
    np.savez_compressed(tmp_path / "big.npz", x=big, y=np.zeros(1000, np.int64))
    monkeypatch.setattr(resources, "available_memory", lambda: 100_000)
    tracemalloc.start()
    try:
        for load in (
            lambda: load_file(tmp_path / "big.npz"),
            lambda: load_dataset(tmp_path / "big.npz", (1, 10, 10), 2),
            lambda: load_examples(tmp_path / "big.npz", (1, 10, 10)),
        ):
            with pytest.raises(CnnspecError, match=r"its arrays take .* once read: needs about"):
                load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < big.nbytes  # refused from the headers: the array itself was never built


def test_combinator_bodies_nest_within_the_depth_limit():
    """350 nested `residual { }`: one too-deep error (check and the language server), not a
    RecursionError."""
    from cnnspec.views.lsp import analyse

    body = "conv 4 1x1"
    for _ in range(350):
        body = f"residual {{ {body} }}"
    text = f"network n {{\n  input 4x8x8\n  {body}\n}}\n"
    assert codes(check_text(text)) == ["too-deep"]
    assert [d.code for d in analyse(text, "deep.cnn").diagnostics] == ["too-deep"]
    shallow = "conv 4 1x1"
    for _ in range(10):
        shallow = f"residual {{ {shallow} }}"
    assert check_text(f"network n {{\n  input 4x8x8\n  {shallow}\n}}\n").ok


def test_a_split_counts_a_layer_per_part_in_the_expansion_budget():
    """`repeat 1000 { split 4000 as ... }` is a 40 KB file of 4,000,000 layers: refused
    before expanding (it took 38 s when a split counted as one layer), with a split's
    names written across continued lines."""
    names = " \\\n    ".join(" ".join(f"p{i}" for i in range(j, j + 500)) for j in range(0, 4000, 500))
    text = "network n {\n  input 4000x2x2\n  repeat 1000 { split 4000 as " + names + "\n  concat p0 p1 }\n}\n"
    result = cnnspec.check_source(text)
    assert [d.code for d in result.errors] == ["too-large"]
    assert "repeat 1,000 is too large" in result.errors[0].message
    one = cnnspec.check_source(text.replace("repeat 1000", "repeat 1"))  # the same split, once: fine
    assert one.ok and len(one.network().layers) == 4001


# ------------------------------------------------------------------ generated variants


@settings(generated, max_examples=12)
@given(
    st.lists(
        st.one_of(st.integers(1, 3000), st.integers(20_000, MAX_EXPANSION // 2 + 500)),
        min_size=1,
        max_size=30,
    )
)
@example([100_499, 1, 71_983, 65_535])  # refused unspent, then the budget crossed
@example([910, 1194, 1997, 2403, 2434, 26378, 100_000, 64_681])  # one step from the edge
def test_any_mix_of_networks_and_repeats_shares_one_expansion_budget(counts):
    """Networks of `repeat N { relu }`: the budget is spent network after network; the
    repeat that would pass it is a too-large error at its line, after which nothing is
    expanded (a repeat larger than the whole budget is refused without spending it)."""
    text = "".join(f"network n{i} {{\n  input 4\n  repeat {n} {{ relu }}\n}}\n" for i, n in enumerate(counts))
    result = cnnspec.check_source(text, "many.cnn")
    left, refused = MAX_EXPANSION, []
    for i, n in enumerate(counts):
        left -= 1  # the network's input layer
        need = 2 * n  # each pass of a repeat is a step, and each layer
        if need <= left:
            left -= need
            continue
        refused.append(4 * i + 3)  # the repeat's line
        if need <= MAX_EXPANSION:
            break
    assert [(d.code, d.span.line) for d in result.diagnostics] == [("too-large", line) for line in refused]
    assert sum(len(network.layers) for network in result.networks) <= MAX_EXPANSION
    if not refused:
        assert sum(len(network.layers) for network in result.networks) == sum(counts)


def test_brackets_in_comments_and_strings_do_not_nest():
    """The bracket-depth limit counts brackets the parser reads, not those inside a comment
    or a string (an imported producer name of three `ESC[2J` was refused as nesting)."""
    deep = "[" * 12
    assert check_text(f"# {deep}\nnetwork n {{\n  input 4  # {deep}\n  relu\n}}\n").ok
    assert codes(check_text(f'use "{deep}.cnn"\nnetwork n {{\n  input 4\n}}\n')) == ["use-not-found"]
    written = "conv 1 1x1 weights=" + "[" * 10 + "1" + "]" * 10
    assert codes(check_text(f"network n {{\n  input 1x2x2\n  {written}\n}}\n")) == ["syntax-error"]


_WRAPS = {
    "residual": "residual {{ {} }}",
    "repeat": "repeat 1 {{ {} }}",
    "add": "add {{ {} }} {{ conv 4 1x1 }}",
    "concat": "concat {{ {} }} {{ conv 4 1x1 }}; conv 4 1x1",
}


@generated
@given(st.lists(st.sampled_from(sorted(_WRAPS)), min_size=1, max_size=3 * MAX_DEPTH))
def test_any_nesting_of_combinators_is_checked_or_too_deep(wraps):
    """Bodies nested in any order and depth: up to the limit they check, past it one
    too-deep error (check and the language server alike), never a RecursionError."""
    from cnnspec.views.lsp import analyse

    body = "conv 4 1x1"
    for wrap in wraps:
        body = _WRAPS[wrap].format(body)
    text = f"network n {{\n  input 4x8x8\n  {body}\n}}\n"
    expected = [] if len(wraps) <= MAX_DEPTH else ["too-deep"]
    assert codes(check_text(text)) == expected
    assert [d.code for d in analyse(text, "deep.cnn").diagnostics] == expected


@generated
@given(st.integers(1, 3 * MAX_DEPTH))
def test_any_chain_of_blocks_calling_blocks_is_checked_or_too_deep(n):
    text = "block b0 { conv 4 1x1 }\n" + "".join(f"block b{i} {{ b{i - 1} }}\n" for i in range(1, n))
    result = check_text(text + f"network n {{\n  input 4x8x8\n  b{n - 1}\n}}\n")
    assert codes(result) == ([] if n <= MAX_DEPTH else ["too-deep"])


@generated
@given(st.integers(1, 1500), st.integers(1, 1500), st.integers(0, 2**32 - 1))
def test_suggestion_work_is_bounded_for_any_number_of_unknown_names(unknown, known, seed):
    """Every unknown reference is reported, and the comparisons spent on "did you mean"
    never pass the input's budget, whatever the counts."""
    import difflib

    from cnnspec.base.diagnostics import SUGGESTION_BUDGET

    compared: list[int] = []
    real = difflib.get_close_matches
    rng = np.random.default_rng(seed)
    layers = "\n".join(f"  relu as layer_{i}" for i in range(known))
    joins = "\n".join(f"  add layer_{rng.integers(known)} missing_{i}" for i in range(unknown))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            difflib, "get_close_matches", lambda w, c, **k: compared.append(len(c)) or real(w, c, **k)
        )
        result = cnnspec.check_source(f"network n {{\n  input 4\n{layers}\n{joins}\n}}\n", "names.cnn")
    reported = sum(d.code == "unknown-reference" for d in result.diagnostics) + sum(
        h.errors for h in result.hidden
    )
    assert reported == unknown and sum(compared) <= SUGGESTION_BUDGET


_DTYPES = ["<f4", "<f8", "<i8", "|u1", "<f2"]


@generated
@given(
    shape=st.lists(st.integers(0, 10**4), min_size=1, max_size=4),
    descr=st.sampled_from(_DTYPES),
    held=st.integers(0, 256),
)
def test_an_npz_member_is_sized_from_its_header_for_any_shape(tmp_path_factory, shape, descr, held):
    """A member whose header declares more bytes than it holds is refused before anything
    is inflated; one that holds what it declares is read."""
    from cnnspec.base.diagnostics import CnnspecError
    from cnnspec.deploy.weights import load_file

    declared = int(np.prod(shape)) * np.dtype(descr).itemsize
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    )
    path = tmp_path_factory.mktemp("npz") / "w.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conv1.weight.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + bytes(held))
    tracemalloc.start()
    try:
        if declared > held:
            with pytest.raises(CnnspecError, match="declares .* bytes but holds|its arrays take"):
                load_file(path)
        else:
            assert load_file(path)["conv1.weight"].shape == tuple(shape)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20 + 4 * held  # never the declared size


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_POSITION = st.fixed_dictionaries({"line": _JSON, "character": _JSON}) | _JSON
_METHODS = [
    "textDocument/hover",
    "textDocument/definition",
    "textDocument/completion",
    "textDocument/formatting",
    "textDocument/documentSymbol",
]


@pytest.fixture(scope="module")
def language_server(tmp_path_factory):
    from tests.helpers import Client

    root = tmp_path_factory.mktemp("lsp")
    uri = (root / "a.cnn").as_uri()
    client = Client(root)
    client.start_with(root, uri, "network n {\n  input 1x8x8\n  conv 2 3x3 as c\n  relu from c\n}\n")
    assert client.diagnostics(uri) == []  # the first check is done: hovers have something to show
    yield client, uri
    client.close()  # asserts a clean exit after everything below


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(_METHODS), position=_POSITION, document=st.booleans())
def test_every_request_is_answered_whatever_its_position(language_server, method, position, document):
    """Requests with any JSON where a position belongs (negative, huge, a string, null, a
    list): each answered with a result or an error, and the server goes on."""
    client, uri = language_server
    params = {"textDocument": {"uri": uri} if document else position, "position": position}
    if method == "textDocument/formatting":
        params = {"textDocument": {"uri": uri} if document else position, "options": position}
    answer = client.answer(method, params)
    assert ("result" in answer) != ("error" in answer), answer
    assert client.answer(
        "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 3}}
    )["result"]  # and a good request after it still gets its answer


_EDIT_TEXT = st.lists(
    st.sampled_from(
        ["network n {\n", "  input 1x8x8\n", "  conv 2 3x3\n", "}\n", "\r", "\ud800", "\ufeff", "#", "{"]
    )
    | st.text(max_size=5),
    max_size=8,
).map("".join)
_RANGE = st.fixed_dictionaries(
    {
        "start": st.fixed_dictionaries({"line": st.integers(-2, 8), "character": st.integers(-2, 40)}),
        "end": st.fixed_dictionaries({"line": st.integers(-2, 8), "character": st.integers(-2, 40)}),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.none() | _RANGE, _EDIT_TEXT), min_size=1, max_size=6), _EDIT_TEXT)
def test_any_sequence_of_edits_ends_in_the_last_text_s_diagnostics(language_server, edits, final):
    """Edits in quick succession, whole texts or ranges (some outside the document), with
    lone surrogates, BOMs and CRs: the server answers a request after each and, once a
    whole text comes last, publishes that text's diagnostics (stale checks publish nothing)."""
    from cnnspec.views.lsp import analyse

    client, first = language_server
    uri = first.rsplit("/", 1)[0] + "/edited.cnn"  # beside the first document, in the session's folder
    client.notify(
        "textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "cnn", "version": 1, "text": ""}}
    )
    for version, (where, text) in enumerate(edits, start=2):
        change = {"text": text} if where is None else {"range": where, "text": text}
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
        )
        answer = client.answer(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}}
        )
        assert ("result" in answer) != ("error" in answer), answer
    version = len(edits) + 2
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": final}]},
    )
    expected = [(d.code, d.span.line) for d in analyse(final, "edited.cnn").diagnostics if d.span]
    while True:  # earlier checks may still publish; the last one is the final text's
        published = client.diagnostics(uri)
        got = [(d["code"], d["range"]["start"]["line"] + 1) for d in published]
        if got == expected:
            break
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
