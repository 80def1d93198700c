"""Issue 24, rule 3: every command's outputs are distinct files, and distinct from its
inputs, compared by resolved path and by inode; outputs that belong together are written
so that a failure at any point leaves the old set or the new set; writing through a
symlink writes its target (fmt), and no command creates the file a dangling link points
to. The cases the issue lists, then generated variants."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from tests.conftest import ROOT
from tests.helpers import cli


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--checkpoint", "{d}/y.onnx", "-o", "{d}/y.onnx"], "-o and --checkpoint name the same file"),
        (["--plot", "{d}/p.onnx", "-o", "{d}/p.onnx"], "-o and --plot name the same file"),
        (
            ["-o", "{d}/m.onnx", "--history", "{d}/h", "--plot", "{d}/h"],
            "--history and --plot name the same file",
        ),
        (
            ["-o", "{d}/m.onnx", "--plot", "{d}/q", "--checkpoint", "{d}/q"],
            "--checkpoint and --plot name the same",
        ),
        (["-o", "{d}/m.onnx", "--plot", "{d}/link"], "-o and --plot name the same file"),  # a hard link
    ],
)
def test_train_keeps_each_output_its_own_file(options, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "cnnspec.training.train.train", lambda *a, **k: pytest.fail("trained before checking")
    )
    (tmp_path / "m.onnx").write_bytes(b"old model")
    os.link(tmp_path / "m.onnx", tmp_path / "link")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 32, 32), np.float32), y=np.zeros(4, np.int64))
    args = [a.format(d=tmp_path) for a in options]
    code, _, err = cli(capsys, "train", "specs/lenet5.cnn", "--data", str(tmp_path / "d.npz"), *args)
    assert code == 2 and message in err, err
    assert (tmp_path / "m.onnx").read_bytes() == b"old model"


def _exported_lenet(tmp_path: Path) -> Path:
    from cnnspec.deploy.export import build_model, save

    model, _ = build_model(cnnspec.check("specs/lenet5.cnn").network(), seed=0)
    save(model, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


@pytest.mark.parametrize(
    "failure, code, words",
    [
        (OSError(28, "No space left on device"), 2, "No space left on device"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_import_failing_between_its_renames_keeps_the_old_pair(
    tmp_path, capsys, monkeypatch, failure, code, words
):
    """The spec's rename fails (a full disk) or is interrupted (Ctrl-C) after the weights'
    succeeded: the old weights come back, and no temporary file is left."""
    model = _exported_lenet(tmp_path)
    (tmp_path / "net.cnn").write_text("old spec")
    (tmp_path / "net.npz").write_bytes(b"old weights")
    real_replace = os.replace

    def spec_fails(src, dst):
        if str(dst).endswith("net.cnn"):
            raise failure
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spec_fails)
    outputs = ["-o", str(tmp_path / "net.cnn"), "--weights-out", str(tmp_path / "net.npz")]
    exit_code, _, err = cli(capsys, "import", str(model), *outputs)
    assert exit_code == code and words in err
    assert (tmp_path / "net.cnn").read_text() == "old spec"
    assert (tmp_path / "net.npz").read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "net.cnn", "net.npz"]


def test_import_never_writes_through_a_dangling_link_it_was_not_given(tmp_path, capsys):
    model = _exported_lenet(tmp_path)
    (tmp_path / "net.npz").symlink_to(tmp_path / "elsewhere.npz")  # dangling
    code, _, err = cli(capsys, "import", str(model), "-o", str(tmp_path / "net.cnn"))
    assert code == 2 and "exists" in err
    assert not (tmp_path / "elsewhere.npz").exists() and not (tmp_path / "net.cnn").exists()


def test_fmt_writes_through_links(tmp_path, capsys):
    """A symlinked spec: the shared target is formatted and the link stays a link; a spec
    with two hard links: both names see the formatted text."""
    messy = "network n {\n input 1x8x8\n    conv 2 3x3\n}\n"
    target = tmp_path / "shared.cnn"
    target.write_text(messy)
    (tmp_path / "link.cnn").symlink_to(target)
    code, _, _ = cli(capsys, "fmt", str(tmp_path / "link.cnn"))
    assert code == 0 and (tmp_path / "link.cnn").is_symlink()
    assert target.read_text() == "network n {\n  input 1x8x8\n  conv 2 3x3\n}\n"
    first, second = tmp_path / "a.cnn", tmp_path / "b.cnn"
    first.write_text(messy)
    os.link(first, second)
    assert cli(capsys, "fmt", str(first))[0] == 0
    assert second.read_text() == first.read_text() == target.read_text()
    assert os.stat(first).st_ino == os.stat(second).st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cnn", "b.cnn", "link.cnn", "shared.cnn"]


# ------------------------------------------------------------------ generated variants

# Names for one folder's files: each group is one file, reached by every name in it.
_GROUPS = {
    "model": ["m.onnx", "./m.onnx", "sub/../m.onnx", "hard.onnx", "soft.onnx"],
    "data": ["d.npz", "hard-d.npz"],
    "spec": ["s.cnn", "soft.cnn"],
    "plot": ["p.png"],
    "history": ["h.jsonl", "sub/../h.jsonl"],
    "checkpoint": ["c.ckpt"],
}
_GROUP_OF = {name: group for group, names in _GROUPS.items() for name in names}
_NAMES = sorted(_GROUP_OF)


def _folder(root: Path) -> Path:
    """m.onnx (an old model), the data and the spec exist, each reachable by several names;
    the other outputs do not exist yet."""
    (root / "sub").mkdir()
    (root / "m.onnx").write_bytes(b"old model")
    os.link(root / "m.onnx", root / "hard.onnx")
    (root / "soft.onnx").symlink_to(root / "m.onnx")
    np.savez(root / "d.npz", x=np.zeros((4, 1, 32, 32), np.float32), y=np.zeros(4, np.int64))
    os.link(root / "d.npz", root / "hard-d.npz")
    shutil.copy(ROOT / "specs/lenet5.cnn", root / "s.cnn")
    (root / "soft.cnn").symlink_to(root / "s.cnn")
    return root


def _snapshot(root: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


class _Stopped(KeyboardInterrupt):
    """Raised where training would start: the options were accepted."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    output=st.sampled_from(_NAMES),
    checkpoint=st.none() | st.sampled_from(_NAMES),
    history=st.none() | st.sampled_from(_NAMES),
    plot=st.none() | st.sampled_from(_NAMES),
    data=st.sampled_from(_GROUPS["data"]),
    spec=st.sampled_from(_GROUPS["spec"]),
)
def test_train_refuses_any_two_names_for_one_file(
    tmp_path_factory, capsys, output, checkpoint, history, plot, data, spec
):
    """Any choice of names for train's four outputs and two inputs: refused (exit 2, one
    line, nothing written) exactly when two of them are one file, or an output already
    exists that train never replaces unasked (a checkpoint); otherwise it goes on."""
    root = _folder(tmp_path_factory.mktemp("train"))
    before = _snapshot(root)
    outputs = {"-o": output, "--checkpoint": checkpoint, "--history": history, "--plot": plot}
    named = {option: name for option, name in outputs.items() if name}
    if checkpoint is None:
        named["--checkpoint"] = str(Path(output).with_suffix(".ckpt"))
    groups = [_GROUP_OF.get(name, name) for name in named.values()]
    clash = len(set(groups)) < len(groups) or {"data", "spec"} & set(groups)
    exists = checkpoint is not None and (root / checkpoint).exists()
    args = ["train", str(root / spec), "--data", str(root / data)]
    for option, name in outputs.items():
        if name:
            args += [option, str(root / name)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cnnspec.training.train.train", lambda *a, **k: (_ for _ in ()).throw(_Stopped()))
        code, _, err = cli(capsys, *args)
    if clash or exists:
        assert code == 2 and len(err.strip().splitlines()) == 1, (named, err)
    else:
        assert code == 130, (named, err)  # accepted: stopped where training starts
    assert _snapshot(root) == before  # nothing replaced, nothing left behind


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output=st.sampled_from(_NAMES), weights=st.none() | st.sampled_from(_GROUPS["data"]))
def test_export_never_writes_over_what_it_reads(tmp_path_factory, capsys, output, weights):
    """export's output against its spec (by any of its names) and its weights file."""
    root = _folder(tmp_path_factory.mktemp("export"))
    from cnnspec.deploy.weights import build_weights

    network = cnnspec.check(root / "s.cnn").network()
    arrays = build_weights(network, 0, None).arrays
    np.savez(root / "d.npz", **arrays)  # the data file doubles as a weights file here
    before = _snapshot(root)
    args = ["export", str(root / "s.cnn"), "-o", str(root / output)]
    if weights:
        args += ["--weights", str(root / weights)]
    code, _, err = cli(capsys, *args)
    reads = {"spec"} | ({"data"} if weights else set())
    written = _GROUP_OF[output]
    if written in reads:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert _snapshot(root) == before
    else:
        assert code == 0, err
        kept = {name for name in before if _GROUP_OF.get(name) != written}
        assert {k: v for k, v in _snapshot(root).items() if k in kept} == {k: before[k] for k in kept}
        assert (root / output).read_bytes()[:2] != b"ol"  # the model replaced the old bytes
