"""The kind registry: every layer kind has a rule in every stage's table.

The report is built from the tables themselves (never from a hand-written list of kinds),
so a new kind in `cnnspec.kinds.KINDS` that some stage lacks fails here, by name; the
second test removes one entry from each table in turn and shows that the report notices.
"""

from __future__ import annotations

import json
import re

import pytest

from cnnspec.cost import SAVED
from cnnspec.cost.latency import KERNEL_OF
from cnnspec.deploy import export
from cnnspec.importer import HANDLERS
from cnnspec.importer.printer import FOLLOWS_ON_LINE
from cnnspec.kinds import ACTIVATIONS, KINDS, UnsupportedKind, rule_for
from cnnspec.language import highlight
from cnnspec.views.draw import COLOURS
from tests.conftest import ROOT, check_text

LAYER_KINDS = sorted({cls.kind for cls in KINDS.values()})  # conv, pool, ..., activation


def words_of(kind: str) -> list[str]:
    """The words a spec writes for a kind (`activation`: relu, silu, ...)."""
    return [word for word, cls in KINDS.items() if cls.kind == kind]


def _textmate_words() -> set[str]:
    grammar = json.loads((ROOT / "editors/vscode/syntaxes/cnn.tmLanguage.json").read_text())
    found: set[str] = set()
    for pattern in grammar["patterns"]:
        if pattern.get("name") in ("support.type.layer.cnn", "support.function.activation.cnn"):
            found |= set(re.search(r"\((.*)\)", pattern["match"]).group(1).split("|"))
    return found


def _readme_layer_words() -> set[str]:
    """Words shown in backticks in the rows of the language reference's layer table."""
    text = (ROOT / "docs" / "reference" / "language.md").read_text(encoding="utf-8")
    table = text[text.index("## Layers") : text.index("## Names")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {m.group(1) for row in rows for m in re.finditer(r"`([a-z0-9]+)", row.split(" | ")[0])}


def stage_tables() -> dict[str, set[str]]:
    """Per stage, the layer kinds its table has a rule for (read from the tables)."""
    return {
        "ONNX lowering (deploy/export.py LOWERINGS)": set(export.LOWERINGS),
        "PyTorch factory (training/modules.py FACTORIES)": _torch_factories(),
        "ONNX import handler (importer HANDLERS, produces=)": {
            k for h in HANDLERS.values() for k in h.produces
        },
        "printer rule (importer/printer.py FOLLOWS_ON_LINE)": set(FOLLOWS_ON_LINE),
        "memory rule (cost/memory.py SAVED)": set(SAVED),
        "latency kernel (cost/latency.py KERNEL_OF)": set(KERNEL_OF),
        "draw colour (views/draw.py COLOURS)": set(COLOURS),
    }


def word_tables() -> dict[str, set[str]]:
    """Per stage that speaks words rather than kinds, the words it knows."""
    return {
        "ONNX activation (deploy/export.py ACTIVATION_LOWERINGS)": set(export.ACTIVATION_LOWERINGS)
        | set(KINDS) - set(ACTIVATIONS),
        "PyTorch activation (training/modules.py ACTIVATION_MODULES)": _torch_activations()
        | set(KINDS) - set(ACTIVATIONS),
        "Pygments word (language/highlight.py)": set(highlight.LAYERS) | set(highlight.ACTIVATIONS),
        "TextMate word (editors/vscode)": _textmate_words(),
        "language reference (docs/reference/language.md's layer table)": _readme_layer_words(),
    }


def _torch_factories() -> set[str]:
    from cnnspec.training.modules import FACTORIES

    return set(FACTORIES)


def _torch_activations() -> set[str]:
    from cnnspec.training.modules import ACTIVATION_MODULES

    return set(ACTIVATION_MODULES)


def missing(kind_tables: dict[str, set[str]], word_tables: dict[str, set[str]]) -> dict[str, list[str]]:
    """stage -> the kinds (or words) it lacks; empty when every kind is everywhere."""
    report = {stage: [k for k in LAYER_KINDS if k not in have] for stage, have in kind_tables.items()}
    report |= {stage: [w for w in KINDS if w not in have] for stage, have in word_tables.items()}
    return {stage: lacking for stage, lacking in report.items() if lacking}


def test_every_kind_has_a_rule_in_every_stage():
    assert missing(stage_tables(), word_tables()) == {}


@pytest.mark.parametrize("stage", [*stage_tables(), *word_tables()])
def test_removing_any_entry_is_reported(stage):
    kinds, words = stage_tables(), word_tables()
    table = kinds if stage in kinds else words
    victim = sorted(table[stage] & (set(LAYER_KINDS) | set(KINDS)))[0]
    table[stage] = table[stage] - {victim}
    assert missing(kinds, words) == {stage: [victim]}


def test_a_table_without_the_kind_is_a_named_error():
    with pytest.raises(UnsupportedKind, match="ONNX export has no rule for the layer kind 'lstm'"):
        rule_for(export.LOWERINGS, "lstm", "ONNX export")


def test_every_kind_carries_an_example_and_the_foreign_names_point_at_real_words():
    for kind in LAYER_KINDS:
        cls = KINDS[words_of(kind)[0]]
        assert cls.example.split()[0] in KINDS, kind
        for ours in cls.foreign_names.values():
            assert ours.split()[0] == words_of(kind)[0], (kind, ours)


def _network_of(example: str):
    """The kind's example after an image input, or after a flat one (dense on a vector)."""
    for shape in ("4x8x8", "64"):
        result = check_text(f"network t {{\n  input {shape}\n  {example}\n}}\n")
        if result.ok:
            return result.network()
    pytest.fail(f"the example `{example}` checks on neither input")


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_each_kind_goes_through_export_import_and_torch(kind, tmp_path):
    """The kind's example: checks, lowers to ONNX, imports back (through the printer) with
    the same kind, and builds as a PyTorch module giving the checked shape."""
    from cnnspec.importer import import_model

    cls = KINDS[words_of(kind)[0]]
    network = _network_of(cls.example)
    assert kind in {layer.kind for layer in network.layers}
    model, _ = export.build_model(network, seed=0, weights_file=None, opset=17, fold_bn=False)
    export.save(model, tmp_path / "t.onnx")
    imported = import_model(tmp_path / "t.onnx", name="back")
    again = check_text(imported.spec).network()
    assert kind in {layer.kind for layer in again.layers}, imported.spec
    assert again.total_params == network.total_params

    import torch  # the train extra is part of the test install

    from cnnspec.training.modules import build_module

    module = build_module(network, None)
    with torch.no_grad():
        out = module(torch.zeros((2, *network.input_shape)))
    assert tuple(out.shape) == (2, *network.output_shapes[0])
