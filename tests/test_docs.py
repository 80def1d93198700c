"""The tutorial's commands print what its pages show (see tests/docs_runner.py)."""

from __future__ import annotations

import re

import pytest

from tests.docs_runner import (
    BLOCK,
    DOCS,
    ROOT,
    all_pages,
    check,
    commands,
    normalise,
    run_with_code,
    tour_folder,
    tour_steps,
)

PAGES = all_pages()  # the lessons, then the reference pages


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_on_the_page_prints_what_the_page_shows(page):
    problems = check([page])
    assert not problems, "\n\n".join(
        f"`{p.command}` on {p.page.name}:\n--- page\n{p.expected}\n--- now\n{p.actual}\n"
        "(run `python tests/docs_runner.py --update` after checking the change)"
        for p in problems
    )


def test_every_lesson_runs_commands_and_every_spec_is_used():
    used = set()
    for page in PAGES:
        text = page.read_text()
        used |= set(re.findall(r"docs/specs/[\w.]+", text))
        if page.parent == DOCS and page.name not in ("index.md", "benchmarks.md", "development.md"):
            assert BLOCK.search(text), f"{page.name} shows no command"
    specs = {f"docs/specs/{p.name}" for p in (DOCS / "specs").iterdir()}
    assert specs <= used, f"specs no page uses: {sorted(specs - used)}"


def test_lessons_show_a_mistake_and_its_message():
    with_errors = [p.name for p in PAGES if "error:" in p.read_text() or "warning:" in p.read_text()]
    assert len(with_errors) >= 7, with_errors


def test_the_runner_notices_a_changed_output(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```console\n$ cnnspec check docs/specs/edge.cnn\nsomething else\n```\n")
    (problem,) = check([page])
    assert problem.expected == "something else" and "conv1       conv 1 3x3 bias=false" in problem.actual
    assert commands("$ cnnspec x\nout\n$ cnnspec y\n") == [("cnnspec x", "out"), ("cnnspec y", "")]
    assert normalise("latency: 0.123 ms per batch · 8,123 images/s") == "latency: N ms per batch · N images/s"
    assert (ROOT / "mkdocs.yml").exists()


def test_the_readme_tour_runs_as_pasted_in_order(tmp_path):
    folder = tour_folder(tmp_path)
    steps = tour_steps((ROOT / "README.md").read_text())
    assert len(steps) >= 10 and steps[0][1] == "cnnspec check specs/lenet5.cnn"
    for kind, command, shown in steps:
        code, output = run_with_code(command, folder)
        if kind == "sh":
            assert code == 0, (command, output)
        else:
            assert output == shown, (
                f"README: `{command}` prints something else now (python tests/docs_runner.py --update)"
            )
    assert (folder / "letters.onnx").exists() and (folder / "curve.png").exists()
    assert (ROOT / "docs" / "reference" / "language.md").exists()


def test_the_readme_stays_short_and_links_into_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).exists(), target


def test_the_readme_language_example_checks_clean():
    import cnnspec

    text = (ROOT / "README.md").read_text()
    example = text[text.index("## The language in one example") :].split("```\n")[1]
    result = cnnspec.check_source(example, "README.md")
    assert result.ok and not result.warnings, [d.message for d in result.diagnostics]
    assert result.network("small_resnet").output_shape == (10,)
