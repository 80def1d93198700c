from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

import cnnspec

# Generated tests draw the same cases on every run (a hash of each test), so that CI
# passes or fails on what passed or failed here, never on a new draw. To hunt with fresh
# draws: CNNSPEC_FUZZ=1 python -m pytest tests/test_hardening_*.py tests/test_fuzz.py
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("fuzz", derandomize=False)
settings.load_profile("fuzz" if os.environ.get("CNNSPEC_FUZZ") else "repeatable")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def check_text(text: str, network: str | None = None) -> cnnspec.CheckResult:
    return cnnspec.check_source(text, "t.cnn", network)


def net(body: str, input_shape: str = "1x32x32") -> str:
    """A one-network spec from layer lines."""
    lines = "\n".join(f"  {line}" for line in body.strip().splitlines())
    return f"network t {{\n  input {input_shape}\n{lines}\n}}\n"


@pytest.fixture
def specs() -> Path:
    return SPECS


def slow_if(condition: bool) -> list:
    """The `slow` marker where `condition` holds: cases that take several seconds each on two
    cores (full-size VGG-16 round trips, drawing DenseNet-121). `python -m pytest -q` leaves
    them out (pyproject's addopts); `python -m pytest -q -m slow` runs them, as .ci/run does."""
    return [pytest.mark.slow] if condition else []


@pytest.fixture(autouse=True)
def _no_measured_runs_in_process(monkeypatch):
    """A run or training whose batch the graph's estimate refuses is measured on smaller
    batches after telling glibc's malloc to hand every block back (resources.exact_allocation),
    for the rest of the process. In the test process that would change every later test's
    allocator, so here it cannot be done and the commands keep to the graph's estimate (the
    tests of the measured path run `cnnspec` in a process of its own)."""
    import cnnspec.base.resources as resources

    monkeypatch.setattr(resources, "exact_allocation", lambda: False)
