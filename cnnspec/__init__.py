"""cnnspec: a declarative model-spec compiler for convolutional networks.

    >>> import cnnspec
    >>> result = cnnspec.check("specs/lenet5.cnn")
    >>> result.network("lenet5").total_params
    61706

Each stage is also a plain call: `language.parse.parse_source` (text -> AST),
`resolve.resolve_sources` (AST -> named layers), `infer.infer` (-> CheckResult); the
package's folders are the stages in the order data flows (docs/architecture.md).
The ONNX backend (`cnnspec.deploy.export`) and the runtime are imported only when used.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base.diagnostics import CnnspecError, Diagnostic, Span
    from .infer import CheckedLayer, CheckedNetwork, CheckResult

__version__ = "0.1.0"

# Loaded on first use, so that `cnnspec --version` and `--help` import nothing heavy.
_LAZY = {
    "CnnspecError": "base.diagnostics",
    "Diagnostic": "base.diagnostics",
    "Span": "base.diagnostics",
    "CheckResult": "infer",
    "CheckedLayer": "infer",
    "CheckedNetwork": "infer",
    "from_torch": "importer.from_torch",
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
    "from_torch",
    "__version__",
]


# Module paths before the package was laid out as the pipeline (0.1 documented some of
# them): still importable, with a DeprecationWarning naming the new path.
MOVED_MODULES = {
    "cnnspec.onnx_export": "cnnspec.deploy.export",
    "cnnspec.runtime": "cnnspec.deploy.runtime",
    "cnnspec.weights": "cnnspec.deploy.weights",
    "cnnspec.quantize": "cnnspec.deploy.int8",
    "cnnspec.torch_backend": "cnnspec.training.modules",
    "cnnspec.train": "cnnspec.training.train",
    "cnnspec.onnx_import": "cnnspec.importer",
    "cnnspec.layers": "cnnspec.kinds",
    "cnnspec.diagnostics": "cnnspec.base.diagnostics",
    "cnnspec.files": "cnnspec.base.files",
    "cnnspec.parse": "cnnspec.language.parse",
    "cnnspec.report": "cnnspec.views.report",
}


class _MovedModuleFinder:
    """Answers an old module path with the module at its new one (the same object). A meta
    path finder and loader by protocol: importlib.abc would import tempfile and shutil."""

    def __init__(self) -> None:
        self.specs: dict[str, object] = {}  # old path -> the module's own spec, during its import

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        import warnings

        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} is now {new}", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self.specs[spec.name] = module.__spec__  # importlib stamps the old path's spec on it next
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self.specs.pop(module.__spec__.name)  # it has run already, at its new path


sys.meta_path.append(_MovedModuleFinder())


def check_source(text: str, path: str = "<string>", network: str | None = None) -> CheckResult:
    """Check spec text. `use` paths are relative to the current directory."""
    from .infer import check_text

    real = Path(path) if path != "<string>" else None
    return check_text(text.removeprefix("\ufeff"), path, real, network)


def check(path: str | Path, network: str | None = None) -> CheckResult:
    """Read, parse, resolve and check a .cnn file. Raises files.UnreadableFile if it cannot
    be read (missing, not a regular file, too large, not UTF-8 text)."""
    from .base.files import read_source

    path = Path(path)
    text = read_source(path)
    from .infer import check_text

    return check_text(text, str(path), path, network)
