"""Every `console` block of docs/*.md is run, and its output must be what the page shows.

A block holds `$ cnnspec ...` lines, each followed by the output it prints (stdout and
stderr together, as a terminal shows them). Commands run in-process from the repository
root. Numbers that change from run to run — latencies and throughputs — are written as
`N` on the page and in the comparison.

    python tests/docs_runner.py            # check every page (what the test does)
    python tests/docs_runner.py --update   # rewrite the outputs after a change
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


def run(command: str) -> str:
    """The output of one `cnnspec ...` command line, run in-process from the repository root."""
    from cnnspec.cli import main

    words = shlex.split(command)
    if not words or words[0] != "cnnspec":
        raise ValueError(f"docs run cnnspec commands only: {command!r}")
    buffer = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                main(words[1:])
            except SystemExit:  # argparse's usage errors
                pass
    finally:
        os.chdir(cwd)
    return normalise(buffer.getvalue())


def commands(block: str) -> list[tuple[str, str]]:
    """(command, shown output) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:].strip(), []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(command, normalise("\n".join(output))) for command, output in pairs]


def check(pages: list[Path] | None = None) -> list[Mismatch]:
    mismatches = []
    for page in pages or sorted(DOCS.glob("*.md")):
        for match in BLOCK.finditer(page.read_text()):
            for command, shown in commands(match.group(1)):
                actual = run(command)
                if actual != shown:
                    mismatches.append(Mismatch(page, command, shown, actual))
    return mismatches


def update(pages: list[Path] | None = None) -> int:
    changed = 0
    for page in pages or sorted(DOCS.glob("*.md")):
        text = page.read_text()
        new = BLOCK.sub(lambda m: "```console\n" + _rendered(m.group(1)) + "```", text)
        if new != text:
            page.write_text(new)
            changed += 1
    return changed


def _rendered(block: str) -> str:
    out = []
    for command, _ in commands(block):
        output = run(command)
        out.append(f"$ {command}\n" + (output + "\n" if output else ""))
    return "".join(out)


if __name__ == "__main__":
    if "--update" in sys.argv[1:]:
        print(f"{update()} page(s) rewritten")
    else:
        problems = check()
        for p in problems:
            print(f"{p.page.relative_to(ROOT)}: `{p.command}` prints something else now")
        sys.exit(1 if problems else 0)
