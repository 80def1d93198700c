"""The transfer-learning example runs end to end (few epochs: the figures in the README
come from its default settings)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.train


def test_transfer_example_prints_three_accuracies():
    out = subprocess.run(
        [sys.executable, "examples/transfer/run.py", "--draws", "1", "--epochs-a", "3", "--epochs-b", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = re.findall(
        r"^  (from scratch|frozen backbone \+ new head|fine-tuning everything)\s+\(lr [^)]*\)\s+"
        r"(\d\.\d{3}) ± (\d\.\d{3})",
        out.stdout,
        re.M,
    )
    assert [r[0] for r in rows] == ["from scratch", "frozen backbone + new head", "fine-tuning everything"]
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)


def test_import_example_trains_a_head_on_an_imported_pytorch_model(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "examples/import/run.py",
            "--epochs-a",
            "2",
            "--epochs-b",
            "3",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "dense 64 relu as fc1\n  dense 5 as fc2\n}" in out.stdout
    assert re.search(r"^fc1 +dense 64 relu +64 +32,832 .* no$", out.stdout, re.M)  # frozen, loaded
    match = re.search(r"test accuracy (\d\.\d{3}) on (\d+) images", out.stdout)
    assert match and 0.0 <= float(match.group(1)) <= 1.0 and int(match.group(2)) == 896 - 100
    assert (tmp_path / "digits_b.onnx").exists()


def test_folder_recipe_trains_evaluates_and_runs_from_image_files(tmp_path):
    out = subprocess.run(
        [sys.executable, "examples/folder_recipe/run.py", "--epochs", "2", "--workdir", str(tmp_path / "w")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^accuracy: \d\.\d{4} \(\d+ of \d+\)$", out.stdout, re.M)
    assert "confusion (rows: true class, columns: predicted)" in out.stdout
    assert re.search(r"^  \[0\] [5-9] \d\.\d{4}", out.stdout, re.M)  # class names kept in the model
    assert "preprocessing from the model: mean 0.3, std 0.4" in out.stderr
    work = tmp_path / "w"
    assert (work / "curves.png").exists() and (work / "history.jsonl").read_text().count("\n") >= 1
