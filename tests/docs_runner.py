"""Every `console` block of docs/*.md is run, and its output must be what the page shows.

A block holds `$ cnnspec ...` lines, each followed by the output it prints (stdout and
stderr together, as a terminal shows them). Commands run in-process from the repository
root. Numbers that change from run to run — latencies and throughputs — are written as
`N` on the page and in the comparison.

    python tests/docs_runner.py            # check every page (what the test does)
    python tests/docs_runner.py --update   # rewrite the outputs after a change (README's tour too)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)
# timings: "0.123 ms", "12,345 images/s", "1.2 us/layer"
VARYING = re.compile(r"\b\d[\d,]*(\.\d+)? (ms|images/s|us)\b")


@dataclass
class Mismatch:
    page: Path
    command: str
    expected: str
    actual: str


def normalise(text: str) -> str:
    lines = [VARYING.sub(lambda m: f"N {m.group(2)}", line).rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def run(command: str, folder: Path = ROOT) -> str:
    """The output of one `cnnspec ...` command line, run in-process from the repository root."""
    return run_with_code(command, folder)[1]


def run_with_code(command: str, folder: Path = ROOT) -> tuple[int, str]:
    """(exit code, output) of one `cnnspec ...` command line, run in-process in `folder`."""
    from cnnspec.cli import main

    words = shlex.split(command)
    if not words or words[0] != "cnnspec":
        raise ValueError(f"docs run cnnspec commands only: {command!r}")
    buffer = io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                code = main(words[1:])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(cwd)
    return code, normalise(buffer.getvalue())


# The README's tour: `console` blocks (output compared) and `sh` blocks (run, exit 0), in order.
TOUR_BLOCK = re.compile(r"^```(console|sh)\n(.*?)^```$", re.S | re.M)
TOUR_FILES = (
    "specs",
    "docs/specs",
    "tests/torch_models.py",
)  # what the tour reads, copied to a scratch folder


def tour_steps(text: str) -> list[tuple[str, str, str]]:
    """(kind, command, shown output) of each cnnspec command of the README's tour, in order;
    an `sh` block's other commands (the install lines) are not part of it."""
    start = text.index("## A ten-minute tour")
    steps = []
    for kind, block in TOUR_BLOCK.findall(text[start:]):
        if kind == "console":
            steps += [("console", command, shown) for command, shown in commands(block)]
        else:
            steps += [("sh", line.strip(), "") for line in block.splitlines() if line.startswith("cnnspec ")]
    return steps


def tour_folder(folder: Path) -> Path:
    """A scratch copy of what the tour reads, as a fresh clone has it."""
    import shutil

    for name in TOUR_FILES:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    return folder


def update_readme(folder: Path) -> None:
    """Rewrite the output of the README tour's console blocks, run in `folder`."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start = text.index("## A ten-minute tour")

    def rendered(match: re.Match) -> str:
        kind, block = match.group(1), match.group(2)
        if kind == "sh":
            for line in block.splitlines():
                if line.startswith("cnnspec "):
                    run_with_code(line.strip(), folder)
            return match.group(0)
        out = []
        for command, _ in commands(block):
            output = run(command, folder)
            out.append(f"$ {command}\n" + (output + "\n" if output else ""))
        return "```console\n" + "".join(out) + "```"

    readme.write_text(text[:start] + TOUR_BLOCK.sub(rendered, text[start:]))


def commands(block: str) -> list[tuple[str, str]]:
    """(command, shown output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:].strip(), []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(command, normalise("\n".join(output))) for command, output in pairs]


REFERENCE = DOCS / "reference"  # pages whose commands write files: run in a scratch copy
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


def all_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + sorted(REFERENCE.glob("*.md"))


@contextlib.contextmanager
def folder_for(page: Path):
    """Where a page's commands run: the repository, or for a reference page a scratch copy
    of what its commands read (their outputs land there, not in the checkout)."""
    if page.parent != REFERENCE:
        yield ROOT
        return
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        yield tour_folder(Path(scratch))


def check(pages: list[Path] | None = None) -> list[Mismatch]:
    """Console blocks print what they show; the cnnspec lines of sh blocks exit 0."""
    mismatches = []
    for page in pages or all_pages():
        text = page.read_text()
        with folder_for(page) as folder:
            for match in BLOCK.finditer(text):
                for command, shown in commands(match.group(1)):
                    actual = run(command, folder)
                    if actual != shown:
                        mismatches.append(Mismatch(page, command, shown, actual))
            for block in SH_BLOCK.findall(text) if page.parent == REFERENCE else []:
                for line in (x.strip() for x in block.splitlines() if x.startswith("cnnspec ")):
                    code, output = run_with_code(line, folder)
                    if code != 0:
                        mismatches.append(Mismatch(page, line, "(exit 0)", f"exit {code}: {output}"))
    return mismatches


def update(pages: list[Path] | None = None) -> int:
    changed = 0
    for page in pages or all_pages():
        text = page.read_text()
        with folder_for(page) as folder:
            new = BLOCK.sub(lambda m: "```console\n" + _rendered(m.group(1), folder) + "```", text)
        if new != text:
            page.write_text(new)
            changed += 1
    return changed


def _rendered(block: str, folder: Path = ROOT) -> str:
    out = []
    for command, _ in commands(block):
        output = run(command, folder)
        out.append(f"$ {command}\n" + (output + "\n" if output else ""))
    return "".join(out)


if __name__ == "__main__":
    if "--update" in sys.argv[1:]:
        print(f"{update()} page(s) rewritten")
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            update_readme(tour_folder(Path(scratch)))
        print("README tour rewritten")
    else:
        problems = check()
        for p in problems:
            print(f"{p.page.relative_to(ROOT)}: `{p.command}` prints something else now")
        sys.exit(1 if problems else 0)
