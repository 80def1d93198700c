"""The package is laid out as the pipeline: each folder a stage, imports only downstream.

Stages, in the order data flows (a module may import its own stage and the ones before
it, never a later one), and no import cycle between modules, counting the imports inside
functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "cnnspec"
STAGES = (
    "base",  # records, diagnostics, files, resources, graph walks
    "kinds",  # the layer kinds: arguments, shape rules, tensors, MACs
    "language",  # text -> AST, fmt, highlighting
    "resolve",  # AST -> layer graph
    "infer",  # layer graph -> checked network
    "cost",  # memory to train and to run, from the checked network
    "inputs",  # images and arrays a network reads
    "deploy",  # ONNX export, int8, weights, onnxruntime sessions
    "training",  # PyTorch modules, training, evaluation
    "importer",  # ONNX model -> layer graph -> spec text
    "views",  # report, draw, activations, history, language server
    "cli",  # the command line
)
ROOT_VERSION = "cnnspec.__version__"
GENERATED = {PACKAGE / "language" / "lalr_parser.py"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p not in GENERATED}


def imports_of(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """The cnnspec modules (or names in the package root) a file imports, anywhere in it."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import syntax`: a module; `from .. import x`: a name
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known or not node.module else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnspec"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnnspec")}
    return found - {name}


def stage_of(module: str) -> int | None:
    """Index in STAGES; None for the package root (its API and `__version__`)."""
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def test_every_module_sits_in_a_stage():
    strays = [m for m in modules() if m.count(".") >= 1 and stage_of(m) is None and m != "cnnspec.__main__"]
    assert strays == []


def test_no_module_imports_a_later_stage():
    known = set(modules())
    upward = []
    for name, path in modules().items():
        mine = stage_of(name)
        for target in imports_of(path, known):
            theirs = stage_of(target)
            # the package root is the public API, above every stage: only its version is read
            if mine is not None and (theirs is None and target != ROOT_VERSION or (theirs or 0) > mine):
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_no_import_cycles():
    known = set(modules())
    graph = {name: imports_of(path, known) & known for name, path in modules().items()}
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_no_module_imports_another_modules_private_names():
    private = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("cnnspec")):
                private += [
                    f"{name}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert private == []


@pytest.mark.parametrize("upward", ["cnnspec.cli", "cnnspec.infer"])
def test_the_check_catches_an_upward_import(upward, tmp_path):
    """The rule itself can fail: a kind importing the CLI (or infer) is a later stage."""
    (tmp_path / "cnnspec" / "kinds").mkdir(parents=True)
    toy = tmp_path / "cnnspec" / "kinds" / "toy.py"
    toy.write_text(f"from {upward} import main\n\ndef f():\n    from ..views import draw\n")
    found = imports_of(toy, {upward, "cnnspec.views.draw"}, root=tmp_path)
    assert found == {upward, "cnnspec.views.draw"}
    assert all(stage_of(target) > stage_of(module_name(toy, tmp_path)) for target in found)


MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 20  # radon's grade C; D and worse are split into named steps


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_is_longer_than_sixty_lines():
    long = [
        f"{module}.{f.name}: {f.end_lineno - f.lineno + 1} lines"
        for module, path in modules().items()
        for f in _functions(path)
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_no_function_is_graded_worse_than_c_by_radon():
    from radon.complexity import cc_visit

    complex_ = [
        f"{module}.{block.fullname}: {block.complexity}"
        for module, path in modules().items()
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > MAX_COMPLEXITY
    ]
    assert complex_ == []


def test_the_size_rules_can_fail():
    """Both rules flag a function that breaks them (so passing means something)."""
    from radon.complexity import cc_visit

    branches = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(35))
    source = f"def tangled(x):\n{branches}\n    return -1\n"
    (tree,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)]
    assert tree.end_lineno - tree.lineno + 1 > MAX_FUNCTION_LINES
    assert cc_visit(source)[0].complexity > MAX_COMPLEXITY


def test_tests_follow_the_stages_and_share_only_helpers():
    """Test files are named after the stage they test (or what cuts across stages), and
    share code through conftest.py and helpers.py, never by importing each other."""
    across = {
        "test_layout",
        "test_hardening",
        "test_fuzz",
        "test_docs",
        "test_examples",
    }  # and one per rule: test_hardening_*
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    unplaced = [
        p.name
        for p in tests
        if p.stem not in across
        and not p.stem.startswith("test_hardening_")
        and not any(p.stem.startswith(f"test_{stage}") for stage in STAGES)
    ]
    assert unplaced == []
    cross = [
        f"{p.name}: {node.module}"
        for p in tests
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_")
    ]
    assert cross == []


def test_check_loads_no_back_end():
    """`cnnspec check` needs the core install only: no onnx, onnxruntime, PyTorch, Pillow,
    numpy, and none of the later stages' modules (imports stay where a command needs them)."""
    code = (
        "import sys; from cnnspec.cli import main; main(['check', 'specs/branches.cnn']); "
        "heavy = ('onnx', 'onnxruntime', 'torch', 'PIL', 'numpy'); "
        "later = ('cnnspec.deploy', 'cnnspec.training', 'cnnspec.importer', 'cnnspec.inputs'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(later)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "old", ["cnnspec.onnx_export", "cnnspec.layers", "cnnspec.runtime", "cnnspec.onnx_import"]
)
def test_the_module_paths_of_0_1_still_import_with_a_deprecation_warning(old):
    """Scripts written against 0.1 (`from cnnspec.onnx_export import build_model`) keep
    working, warned, and get the very module at its new path (its own spec kept)."""
    from cnnspec import MOVED_MODULES

    code = (
        "import importlib, warnings, sys\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED_MODULES[old]!r})\n"
        "print(old is new, old.__spec__.name, [str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == f"True {MOVED_MODULES[old]} ['{old} is now {MOVED_MODULES[old]}']", (
        done.stderr
    )


def test_every_moved_path_names_a_module_that_exists():
    from cnnspec import MOVED_MODULES

    assert set(MOVED_MODULES.values()) <= set(modules())
