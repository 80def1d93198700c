"""cnnspec: a declarative model-spec compiler for convolutional networks.

    >>> import cnnspec
    >>> result = cnnspec.check("specs/lenet5.cnn")
    >>> result.network("lenet5").total_params
    61706

Each stage is also a plain call: `parse.parse_source` (text -> AST),
`resolve.resolve_sources` (AST -> named layers), `infer.infer` (-> CheckResult).
The ONNX backend (`cnnspec.onnx_export`) and the runtime are imported only when used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .diagnostics import CnnspecError, Diagnostic, Span
    from .infer import CheckedLayer, CheckedNetwork, CheckResult

__version__ = "0.1.0"

# Loaded on first use, so that `cnnspec --version` and `--help` import nothing heavy.
_LAZY = {
    "CnnspecError": "diagnostics",
    "Diagnostic": "diagnostics",
    "Span": "diagnostics",
    "CheckResult": "infer",
    "CheckedLayer": "infer",
    "CheckedNetwork": "infer",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cnnspec' has no attribute '{name}'")


__all__ = [
    "CheckResult",
    "CheckedLayer",
    "CheckedNetwork",
    "CnnspecError",
    "Diagnostic",
    "Span",
    "check",
    "check_source",
    "__version__",
]


def check_source(text: str, path: str = "<string>", network: str | None = None) -> CheckResult:
    """Check spec text. `use` paths are relative to the current directory."""
    from .infer import infer
    from .resolve import resolve_sources

    real = Path(path) if path != "<string>" else None
    return infer(resolve_sources(text.removeprefix("\ufeff"), path, real, network))


def check(path: str | Path, network: str | None = None) -> CheckResult:
    """Read, parse, resolve and check a .cnn file. Raises files.UnreadableFile if it cannot
    be read (missing, not a regular file, too large, not UTF-8 text)."""
    from .files import read_source

    path = Path(path)
    text = read_source(path)
    from .infer import infer
    from .resolve import resolve_sources

    return infer(resolve_sources(text, str(path), path, network))
