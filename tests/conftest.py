from __future__ import annotations

from pathlib import Path

import pytest

import cnnspec

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
