"""`use`: read every file a spec uses, once, in order, refusing cycles."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..base.diagnostics import CnnspecError, Diagnostic, Span, error
from ..base.files import UnreadableFile, read_source
from ..language import syntax as ast
from ..language.parse import parse_source
from .network import MAX_DEPTH


@dataclass
class Workspace:
    """Files read so far, their diagnostics, and what `use` has loaded (cycles, duplicates)."""

    files: dict[str, ast.SpecFile] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    read: list[Path] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)


def _use_target(ws, folder: Path, use, written: str) -> Path | None:
    """The file a `use` names, resolved; None after saying why it cannot be one."""
    try:
        return (folder / use.path).resolve()
    except (RuntimeError, OSError):  # a symlink loop
        ws.diagnostics.append(
            error("use-not-found", f"cannot use '{written}': a symbolic link loop", use.span)
        )
    except (UnicodeError, ValueError):  # a lone surrogate, a NUL: no file has that name
        ws.diagnostics.append(
            error(
                "use-not-found",
                f"cannot use '{written}': the path holds a character no file name can have",
                use.span,
                "write the file's name in plain characters",
            )
        )
    return None


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_SPEC_START = re.compile(r"\s*(network|block|use)\b")


def looks_like_spec(text: str) -> bool:
    """Whether the first statement of `text` is one a spec starts with."""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return bool(_SPEC_START.match(stripped))
    return True  # empty or only comments


def load(ws: Workspace, text: str, path: str, real: Path | None, stack: tuple[Path, ...]) -> None:
    ws.loaded.add(path)
    try:
        spec = parse_source(text, path)
    except CnnspecError as exc:
        if not path.endswith(".cnn") and not looks_like_spec(text):
            # Not a spec (`use "/etc/passwd"`): say so, and never echo a line of it.
            ws.diagnostics.append(
                error(
                    "syntax-error",
                    "not a .cnn spec: it does not start with `network`, `block` or `use`",
                    Span(path, 1, 1),
                )
            )
            return
        ws.sources[path] = text
        ws.diagnostics.extend(exc.diagnostics)
        return
    ws.sources[path] = text
    ws.files[path] = spec
    folder = real.parent if real else Path.cwd()
    for use in spec.uses:
        written = use.path.encode("utf-8", "backslashreplace").decode("utf-8")  # printable as is
        target = _use_target(ws, folder, use, written)
        if target is None:
            continue
        shown = _display_path(target)
        if target in stack:
            cycle = " -> ".join(_display_path(p) for p in (*stack, target))
            ws.diagnostics.append(error("use-cycle", f"files use each other in a cycle: {cycle}", use.span))
            continue
        if shown in ws.loaded:
            continue
        if len(stack) >= MAX_DEPTH:
            ws.diagnostics.append(
                error("too-deep", f"`use` chains are limited to {MAX_DEPTH} files", use.span)
            )
            continue
        try:
            child = read_source(target)
        except UnreadableFile as exc:
            ws.diagnostics.append(
                error(
                    "use-not-found",
                    f"cannot use '{written}': {exc} ({shown})",
                    use.span,
                    "paths are relative to the file that has the `use`",
                )
            )
            continue
        ws.read.append(target)
        load(ws, child, shown, target, (*stack, target))
