"""Output files appear only when complete: written to a temporary file beside the
target, then renamed. An output never replaces one of the command's own inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def target(out: str | Path, protect: tuple[Path, ...] = ()) -> Path:
    """The resolved output path; FileExistsError if it is one of `protect`."""
    resolved = Path(out).resolve()
    for path in protect:
        if path.exists() and resolved == path.resolve():
            raise FileExistsError(f"refusing to overwrite {path}, an input of this command")
    if not resolved.parent.is_dir():
        raise FileNotFoundError(f"{Path(out).parent}: no such folder")
    return resolved


def temporary(final: Path) -> Path:
    """An empty temporary file beside `final`, with the permissions a new file gets."""
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; an export is an ordinary file
    return Path(name)
