"""Hostile and extreme input (issue 12): one test per defect found, each failing before
its fix. Nothing here may end in a traceback, an internal error (exit 70), a hang, a
file replaced that the user did not name, or a secret echoed to the terminal."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import cnnspec
from cnnspec.cli import main
from tests.conftest import ROOT, SPECS, check_text, net
from tests.helpers import cli, run_cli


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


# ---------------------------------------------------------------- 1. no parser cache


class _Plant:
    """A pickle that, once loaded, leaves a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_check_reads_and_writes_no_cache(tmp_path):
    """The parse tables are Python code inside the package (cnnspec/language/lalr_parser.py): there
    is no pickle cache to plant, not in the shared temp folder nor in the user's."""
    cache_home, temp, home = tmp_path / "cache", tmp_path / "tmp", tmp_path / "home"
    for folder in (cache_home / "cnnspec", temp, home):
        folder.mkdir(parents=True)
    marker = tmp_path / "owned"
    planted = cache_home / "cnnspec" / "parser.cache"  # where an earlier cnnspec kept Lark's
    planted.write_bytes(pickle.dumps(_Plant(marker)))
    env = {"XDG_CACHE_HOME": str(cache_home), "TMPDIR": str(temp), "HOME": str(home)}
    out = run_cli("check", "specs/lenet5.cnn", env=env)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    assert list(temp.iterdir()) == [] and list(home.iterdir()) == []
    assert list((cache_home / "cnnspec").iterdir()) == [planted]


# ---------------------------------------------------------------- 2. what `use` reads


def test_use_of_proc_environ_never_prints_the_environment(tmp_path):
    spec = tmp_path / "a.cnn"
    spec.write_text('use "/proc/self/environ"\n' + net("relu", "4"))
    out = run_cli("check", str(spec), env={"CNNSPEC_SECRET": "hunter2-secret"})
    assert out.returncode == 1
    assert "hunter2" not in out.stdout + out.stderr
    assert "not a text file" in out.stderr


def test_use_of_a_text_file_that_is_not_a_spec_echoes_none_of_it(tmp_path):
    (tmp_path / "creds.txt").write_text("root:password=hunter2:0:0\n")
    spec = tmp_path / "a.cnn"
    spec.write_text('use "creds.txt"\n' + net("relu", "4"))
    code, out, err = cli_check(spec)
    assert code == 1 and "hunter2" not in out + err and "not a .cnn spec" in err


def cli_check(path: Path) -> tuple[int, str, str]:
    out = run_cli("check", str(path))
    return out.returncode, out.stdout, out.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_use_of_a_device_is_refused_at_once(tmp_path, device):
    spec = tmp_path / "a.cnn"
    spec.write_text(f'use "{device}"\n' + net("relu", "4"))
    start = time.monotonic()
    result = cnnspec.check(spec)
    assert time.monotonic() - start < 5
    assert codes(result) == ["use-not-found"] and "not a regular file" in result.diagnostics[0].message


def test_checking_a_device_or_a_huge_file_is_a_usage_error(tmp_path, capsys):
    code, _, err = cli(capsys, "check", "/dev/zero")
    assert code == 2 and "not a regular file" in err
    big = tmp_path / "big.cnn"
    big.write_bytes(b"#" * (2 * 1024 * 1024))
    code, _, err = cli(capsys, "check", str(big))
    assert code == 2 and "too large" in err


def test_use_of_a_symlink_loop_is_located(tmp_path):
    (tmp_path / "loop.cnn").symlink_to(tmp_path / "loop.cnn")
    spec = tmp_path / "a.cnn"
    spec.write_text('use "loop.cnn"\n' + net("relu", "4"))
    result = cnnspec.check(spec)
    assert codes(result) == ["use-not-found"] and result.diagnostics[0].span.line == 1


# ---------------------------------------------------------------- 3. terminal escapes


def test_control_characters_are_escaped_in_every_message(tmp_path):
    spec = tmp_path / "a.cnn"
    spec.write_text('use "x\x1b]0;owned\x07.cnn"\n' + net("conv 0 3x3 # \x1b]0;title\x07\x1b[2J"))
    out = run_cli("check", str(spec))
    assert out.returncode == 1
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    assert "\\x1b]0;title\\x07" in out.stderr  # shown, escaped, on the source line
    assert "\\x1b]0;owned" in out.stderr  # in the `use` path of the message
    bad_name = tmp_path / "evil\x1b[31m.cnn"
    out = run_cli("check", str(bad_name))
    assert out.returncode == 2 and "\x1b" not in out.stderr and "evil\\x1b[31m" in out.stderr
    bad_name.write_text(net("relu", "4"))  # a valid spec: its path is in the table's title
    out = run_cli("check", str(bad_name))
    assert out.returncode == 0 and "\x1b" not in out.stdout and "evil\\x1b[31m" in out.stdout
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\x1b]0;owned\x07\ndog\n")
    spec = tmp_path / "two.cnn"
    spec.write_text(net("dense 2", "4"))
    out = run_cli("run", str(spec), "--input", str(_npy(tmp_path / "x.npy", (4,))), "--labels", str(labels))
    assert out.returncode == 0 and "\x1b" not in out.stdout and "cat\\x1b]0;owned" in out.stdout


def _npy(path: Path, shape: tuple[int, ...]) -> Path:
    np.save(path, np.ones(shape, np.float32))
    return path


def test_the_caret_stays_under_an_escaped_line():
    from cnnspec.base.diagnostics import render

    result = check_text(net('conv 8 3x3 weights="\x07\x1b" strides=2'))
    (unknown,) = [d for d in result.errors if d.code == "unknown-option"]
    text = render(unknown, result.sources)
    source, caret = text.splitlines()[1:3]
    assert source.index("strides") == caret.index("^")


# ---------------------------------------------------------------- 4, 5, 8. outputs


def _letters(tmp_path: Path) -> Path:
    shutil.copy(SPECS / "lenet5.cnn", tmp_path / "lenet5.cnn")
    shutil.copy(SPECS / "letters.cnn", tmp_path / "letters.cnn")
    return tmp_path / "letters.cnn"


def _trainable(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "tiny.cnn"
    spec.write_text(net("flatten\ndense 2 softmax", "1x4x4"))
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((4, 1, 4, 4), np.float32), y=np.array([0, 1, 0, 1]))
    return spec, data


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    assert main(["export", str(SPECS / "lenet5.cnn"), "-o", str(path)]) == 0
    return path


# Every command that writes, with every output the protections must refuse.
COMMANDS = {
    "export": lambda d, out: ["export", str(_letters(d)), "-o", out],
    "run-spec": lambda d, out: ["run", str(_letters(d)), "-o", out],
    "run-onnx": lambda d, out: ["run", str(_model(d)), "-o", out],
    "train": lambda d, out: ["train", str(_trainable(d)[0]), "--data", str(d / "data.npz"), "-o", out],
}


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe")
    return d / "pipe"


TARGETS = {
    "used spec": (lambda d: d / "lenet5.cnn", "which this command reads"),
    "fifo": (_fifo, "not a regular file"),
    "missing folder": (lambda d: d / "nowhere" / "out", "no such folder"),
    "directory": (lambda d: d, "is a directory"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("what", sorted(TARGETS))
def test_every_output_path_goes_through_the_protections(tmp_path, capsys, monkeypatch, command, what):
    make_target, words = TARGETS[what]
    if what == "used spec" and command in ("run-onnx", "train"):
        (tmp_path / "lenet5.cnn").write_text("network x {\n  input 4\n}\n")
        # the model / the data are what these read
        make_target = (lambda d: d / "m.onnx") if command == "run-onnx" else (lambda d: d / "data.npz")
    args = COMMANDS[command](tmp_path, "PLACEHOLDER")
    out = make_target(tmp_path)
    before = out.read_bytes() if out.is_file() else None
    kind = stat.S_IFMT(os.stat(out).st_mode) if out.exists() else None
    import cnnspec.training.train as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained before checking -o"))
    capsys.readouterr()
    code, _, err = cli(capsys, *[str(out) if a == "PLACEHOLDER" else a for a in args])
    assert code == 2 and words in err, err
    if before is not None:
        assert out.read_bytes() == before
    if kind is not None:
        assert stat.S_IFMT(os.stat(out).st_mode) == kind


def test_export_never_replaces_a_hard_link_to_its_spec(tmp_path, capsys):
    letters = _letters(tmp_path)
    os.link(tmp_path / "lenet5.cnn", tmp_path / "alias.onnx")
    code, _, err = cli(capsys, "export", str(letters), "-o", str(tmp_path / "alias.onnx"))
    assert code == 2 and "which this command reads" in err
    assert (tmp_path / "lenet5.cnn").read_text().startswith("# LeNet-5")


# ---------------------------------------------------------------- 6. external data pairs


def test_an_interrupted_re_export_keeps_the_old_model_and_its_own_data(tmp_path, capsys, monkeypatch):
    import onnxruntime as ort

    import cnnspec.deploy.export as export

    monkeypatch.setattr(export, "EXTERNAL_DATA_THRESHOLD", 1000)  # pretend 2 GB is small
    spec = tmp_path / "big.cnn"
    spec.write_text(net("dense 300", "100"))
    model = tmp_path / "big.onnx"
    assert main(["export", str(spec), "-o", str(model), "--seed", "1"]) == 0
    x = {"input": np.ones((1, 100), np.float32)}
    first = ort.InferenceSession(str(model)).run(None, x)[0]
    first_files = sorted(p.name for p in tmp_path.iterdir())

    real_replace = os.replace

    def interrupted(src, dst):
        if Path(dst) == model:  # the new data is in place; stop before the model
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", interrupted)
    assert main(["export", str(spec), "-o", str(model), "--seed", "2"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == first_files  # nothing new left behind
    np.testing.assert_array_equal(ort.InferenceSession(str(model)).run(None, x)[0], first)

    monkeypatch.setattr(export.os, "replace", real_replace)
    assert main(["export", str(spec), "-o", str(model), "--seed", "2"]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and files != first_files  # spec, model, the new data only
    assert not np.array_equal(ort.InferenceSession(str(model)).run(None, x)[0], first)


# ---------------------------------------------------------------- 7. signals clean up

_SLOW_EXPORT = """
import sys, time
import cnnspec.deploy.export as export
export.EXTERNAL_DATA_THRESHOLD = 1000
original = export._ExternalData.tensor
def slow(self, name, array):
    tensor = original(self, name, array)
    self.stream.flush()
    print("writing", flush=True)
    time.sleep(60)
    return tensor
export._ExternalData.tensor = slow
from cnnspec.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("command", ["export", "run"])
def test_sigterm_and_sighup_leave_no_temporary_files(tmp_path, signum, command):
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    spec = work / "big.cnn"
    spec.write_text(net("dense 300", "100"))
    args = ["export", str(spec), "-o", str(work / "big.onnx")] if command == "export" else ["run", str(spec)]
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXPORT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        assert any(scratch.iterdir()) or len(list(work.iterdir())) > 1  # temporary files exist now
        child.send_signal(signum)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 128 + signum and "Traceback" not in err
    assert [p.name for p in work.iterdir()] == ["big.cnn"]
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------- 9, 11, 12. bounds


@pytest.mark.parametrize(
    "body",
    [
        "repeat 1000000000 {\n}",
        "repeat 100000 {\nrepeat 100000 {\n}\n}",
        "repeat 1000000 {\nconv 0 3x3\n}",
        "repeat 300 {\nrepeat 300 {\nrepeat 300 {\nrelu\n}\n}\n}",
    ],
)
def test_huge_expansions_are_refused_before_they_run(body):
    start = time.monotonic()
    result = check_text(net(body, "4"))
    assert time.monotonic() - start < 5
    assert "too-large" in codes(result)


def test_huge_repeat_of_an_empty_block_is_refused():
    result = check_text("block e() {\n}\n" + net("repeat 1000000000 {\ne\n}", "4"))
    assert "too-large" in codes(result)


def test_a_line_of_many_words_gives_one_short_diagnostic():
    result = check_text(net("conv 2 3x3" + " relu" * 3000, "1x8x8"))
    (d,) = result.errors
    assert d.code == "too-many-arguments" and "2,998 more follow it" in d.message
    from cnnspec.views.report import render_diagnostics

    assert len(render_diagnostics(result)) < 1000  # the source line is cut around the caret


def test_an_overlong_line_is_refused_before_parsing():
    start = time.monotonic()
    result = check_text(net("conv 2 3x3" + " relu" * 400_000, "1x8x8"))
    assert time.monotonic() - start < 5
    assert codes(result) == ["too-large"] and "lines are limited" in result.diagnostics[0].message


def test_diagnostics_are_capped_per_file_and_the_rest_counted(capsys, tmp_path):
    spec = tmp_path / "many.cnn"
    spec.write_text(net("\n".join("conv 0 3x3" for _ in range(300))))
    code, _, err = cli(capsys, "check", str(spec))
    assert code == 1
    assert err.count("[invalid-argument]") == 50
    assert "... and 250 more errors not shown" in err and "300 errors, 0 warnings" in err


def test_deep_nesting_is_a_located_error_not_a_crash():
    deep_repeat = net("repeat 1 {\n" * 1000 + "relu\n" + "}\n" * 1000, "4")
    chain = (
        "".join(f"block b{i}() {{\n  b{i + 1}\n}}\n" for i in range(1000)) + "block b1000() {\n  relu\n}\n"
    )
    # the most derived first, so that resolving it walks the whole chain
    derived = "".join(f"network n{i + 1} from n{i} {{\n  relu\n}}\n" for i in reversed(range(1000)))
    derived += net("relu", "4").replace("network t", "network n0")
    for text in (deep_repeat, chain + net("b0", "4"), derived):
        result = check_text(text)
        assert "too-deep" in codes(result), codes(result)[:5]


def test_long_arithmetic_is_a_located_error_not_a_recursion_error():
    result = check_text(net("conv " + "+".join(["1"] * 5000) + " 3x3", "1x8x8"))
    assert [d.code for d in result.errors] == ["too-deep"]
    assert check_text(net("conv " + "+".join(["1"] * 50) + " 3x3", "1x8x8")).network().output_shape == (
        50,
        6,
        6,
    )


# ---------------------------------------------------------------- 13. exit 70 on bad input


@pytest.mark.parametrize(
    "body, shape",
    [
        ("conv " + "9" * 5000 + " 3x3", "1x8x8"),
        ("relu", "1x100000000000000000000x1"),
        ("dense 1e400", "4"),
    ],
)
def test_giant_numbers_are_located_errors(capsys, tmp_path, body, shape):
    spec = tmp_path / "n.cnn"
    spec.write_text(net(body, shape))
    for command in (["check", str(spec)], ["export", str(spec), "-o", str(tmp_path / "n.onnx")]):
        code, _, err = cli(capsys, *command)
        assert code == 1 and "[too-large]" in err and "internal error" not in err


def test_weights_too_large_for_memory_are_refused_before_allocation(capsys, tmp_path):
    spec = tmp_path / "huge.cnn"
    spec.write_text(net("flatten\ndense 1000000", "1x10000x10000"))
    code, _, err = cli(capsys, "export", str(spec), "-o", str(tmp_path / "h.onnx"))
    assert code == 1 and "[too-large]" in err and "of memory" in err
    assert not (tmp_path / "h.onnx").exists()


def test_run_with_activations_too_large_for_memory(capsys, tmp_path):
    spec = tmp_path / "wide.cnn"
    spec.write_text(net("conv 64 3x3 pad=1", "3x100000x100000"))
    code, _, err = cli(capsys, "run", str(spec))
    assert code == 2 and "not even one image fits" in err, err


def test_a_small_network_with_a_huge_batch_says_its_size_per_image_in_kib(capsys):
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "--batch", "100000000")
    assert code == 2 and re.search(r"\(\d+\.\d KiB of memory per image", err), err  # was "0.0 MiB"
    assert "use --batch " in err and "or smaller" in err


def test_run_batch_too_large_is_a_usage_error_without_onnxruntime_logs(tmp_path):
    out = run_cli("run", "specs/lenet5.cnn", "--batch", "100000000")
    assert out.returncode == 2 and "or smaller" in out.stderr and "onnxruntime" not in out.stderr
    model = tmp_path / "m.onnx"
    assert run_cli("export", "specs/lenet5.cnn", "-o", str(model)).returncode == 0
    out = run_cli("run", str(model), "--batch", "100000000")
    assert out.returncode == 2 and "or smaller" in out.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", "-1"], "seeds go from 0"),
        (["--seed", "99999999999999999999"], "seeds go from 0"),
        (["--batch", "x"], "not a whole number"),
        (["--mean", "nan"], "not a finite number"),
    ],
)
def test_run_option_values_are_usage_errors(capsys, args, words):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "specs/lenet5.cnn", *args])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_a_full_disk_at_export_and_run_is_one_line(capsys, tmp_path, monkeypatch):
    import errno

    import cnnspec.deploy.export as export

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export.onnx, "save_model", full)
    code, _, err = cli(capsys, "export", "specs/lenet5.cnn", "-o", str(tmp_path / "m.onnx"))
    assert code == 2 and "No space left on device" in err
    monkeypatch.setattr(np, "save", full)
    code, _, err = cli(capsys, "run", "specs/lenet5.cnn", "-o", str(tmp_path / "o.npy"))
    assert code == 2 and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []  # no temporary file left


def _onnx_model(path: Path, inputs, outputs, nodes) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _value(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


ODD_MODELS = {
    "int64 input": (
        [_value("x", TensorProto.INT64, ["N", 4])],
        [_value("y", TensorProto.INT64, ["N", 4])],
        [helper.make_node("Identity", ["x"], ["y"])],
        "is tensor(int64)",
    ),
    "two inputs": (
        [_value("a", TensorProto.FLOAT, ["N", 4]), _value("b", TensorProto.FLOAT, ["N", 4])],
        [_value("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "has 2 inputs",
    ),
    "scalar output": (
        [_value("x", TensorProto.FLOAT, ["N", 4])],
        [_value("y", TensorProto.FLOAT, [])],
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)],
        "is a scalar",
    ),
    "no batch dimension": (
        [_value("x", TensorProto.FLOAT, [4])],
        [_value("y", TensorProto.FLOAT, [4])],
        [helper.make_node("Identity", ["x"], ["y"])],
        "no batch dimension",
    ),
}


@pytest.mark.parametrize("kind", sorted(ODD_MODELS))
def test_models_cnnspec_cannot_feed_are_refused_clearly(capsys, tmp_path, kind):
    inputs, outputs, nodes, words = ODD_MODELS[kind]
    path = _onnx_model(tmp_path / "odd.onnx", inputs, outputs, nodes)
    code, _, err = cli(capsys, "run", str(path))
    assert code == 1 and words in err and "[onnx-file]" in err


def test_a_fixed_batch_model_says_which_batch_it_takes(capsys, tmp_path):
    path = _onnx_model(
        tmp_path / "fixed.onnx",
        [_value("x", TensorProto.FLOAT, [1, 4])],
        [_value("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_node("Relu", ["x"], ["y"])],
    )
    assert cli(capsys, "run", str(path))[0] == 0
    code, _, err = cli(capsys, "run", str(path), "--batch", "3")
    assert code == 1 and "batches of exactly 1" in err


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (Pillow reads the header first)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[start : start + 17]))
    data[start + 17 : start + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_a_bad_input(capsys, tmp_path):
    bomb = _png_claiming(tmp_path / "bomb.png", 20000, 20000)
    code, _, err = cli(capsys, "run", "specs/edge.cnn", "--input", str(bomb))
    assert code == 1 and "too large to decode" in err


@pytest.mark.parametrize(
    "tensor, words",
    [
        (np.array([["a", "b"]]), "holds <U1 values, not real numbers"),
        (np.full((2, 4), np.nan, np.float32), "8 NaN or infinite values"),
        (np.full((2, 4), 1e300), "beyond float32's range"),
    ],
)
def test_weights_that_are_not_finite_numbers(capsys, tmp_path, tensor, words):
    spec = tmp_path / "d.cnn"
    spec.write_text(net("dense 2", "4"))
    weights = tmp_path / "w.npz"
    np.savez(weights, **{"dense1.weight": tensor, "dense1.bias": np.zeros(2, np.float32)})
    code, _, err = cli(capsys, "export", str(spec), "--weights", str(weights), "-o", str(tmp_path / "d.onnx"))
    assert code == 1 and words in err


# ---------------------------------------------------------------- 10, 13. training data

needs_torch = pytest.mark.train


@needs_torch
@pytest.mark.parametrize(
    "y, words",
    [
        (np.array([0, 1, 0, 10**8]), "label 100000000 is out of range"),
        (np.array([0, 1, 0, 2**62]), "label 4611686018427387904 is out of range"),
        (np.array([0.0, 1.0, 0.0, 1e18]), "label 1e+18 is out of range"),
        (np.array(["a", "b", "a", "b"]), "not class numbers"),
        (np.array([0.0, np.nan, 0.0, 1.0]), "NaN or infinite"),
    ],
)
def test_labels_are_checked_before_anything_is_built(tmp_path, y, words):
    from cnnspec.base.diagnostics import CnnspecError
    from cnnspec.training.train import load_dataset

    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 1, 4, 4), np.float32), y=y)
    tracemalloc.start()
    with pytest.raises(CnnspecError) as caught:
        load_dataset(path, (1, 4, 4), 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert words in caught.value.diagnostics[0].message
    assert peak < 50 * 2**20


@needs_torch
def test_string_images_and_nan_learning_rate(capsys, tmp_path):
    spec, _ = _trainable(tmp_path)
    data = tmp_path / "s.npz"
    np.savez(data, x=np.full((4, 1, 4, 4), "a"), y=np.array([0, 1, 0, 1]))
    code, _, err = cli(capsys, "train", str(spec), "--data", str(data), "-o", str(tmp_path / "t.onnx"))
    assert code == 1 and "x holds <U1 values" in err
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(spec), "--data", str(data), "-o", str(tmp_path / "t.onnx"), "--lr", "nan"])
    assert exit_.value.code == 2 and "not a finite number" in capsys.readouterr().err


@needs_torch
def test_a_diverging_loss_stops_training_with_a_clear_error(capsys, tmp_path):
    spec, _ = _trainable(tmp_path)
    data = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((16, 1, 4, 4), np.float32) * 1e30, y=np.arange(16) % 2)
    code, _, err = cli(
        capsys, "train", str(spec), "--data", str(data), "-o", str(tmp_path / "t.onnx"), "--lr", "1e30"
    )
    assert code == 1 and "training diverged" in err and "lower the learning rate" in err
    assert not (tmp_path / "t.onnx").exists()


# ---------------------------------------------------------------- 14, 15. silently wrong


def test_a_16_bit_png_is_scaled_not_saturated(tmp_path):
    from cnnspec.inputs import load_image

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")  # really 16-bit on disk
    array = load_image(path, (1, 64, 64), None, None)
    assert array.max() == pytest.approx(1.0, abs=1e-3) and array.mean() == pytest.approx(0.5, abs=0.01)
    assert (array >= 0.999).mean() < 0.05
    with pytest.warns(UserWarning, match="resized from 64x64 to 32x32 and converted from 1 channel"):
        rgb = load_image(path, (3, 32, 32), None, None)
    assert rgb.shape == (3, 32, 32) and rgb.mean() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("value", [0, 2**29, 2**30, 2**31 - 1])
def test_a_32_bit_tiff_is_scaled_by_its_own_range(tmp_path, value):
    from cnnspec.inputs import load_image

    path = tmp_path / "deep.tiff"
    Image.fromarray(np.full((8, 8), value, np.int32)).save(path)  # 32-bit samples on disk
    np.testing.assert_allclose(load_image(path, (1, 8, 8), None, None), value / (2**31 - 1), atol=1e-6)


def test_a_float_tiff_keeps_its_values(tmp_path):
    from cnnspec.inputs import load_image

    values = np.full((8, 8), 0.25, np.float32)
    path = tmp_path / "f.tiff"
    Image.fromarray(values, "F").save(path)
    np.testing.assert_allclose(load_image(path, (1, 8, 8), None, None), 0.25, atol=1e-6)


@pytest.mark.parametrize(
    "body",
    ["conv 1 1x1 weights=[[1e400]]", "conv 2 3x3\nleakyrelu 1e400", "conv 2 3x3\nbatchnorm eps=1e400"],
)
def test_infinity_is_never_accepted_in_a_spec(body):
    result = check_text(net(body, "1x8x8"))
    assert codes(result) == ["too-large"] and "finite" in result.diagnostics[0].message


def test_non_finite_inputs_are_warned_about(capsys, tmp_path):
    array = np.zeros((1, 6, 6), np.float32)
    array[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", array)
    code, _, err = cli(capsys, "run", "specs/edge.cnn", "--input", str(tmp_path / "nan.npy"))
    assert code == 0 and "cnnspec: warning: the input holds 1 NaN or infinite values" in err


def test_numpy_warnings_are_cnnspec_warnings_without_source_paths(capsys, tmp_path):
    np.save(tmp_path / "big.npy", np.full((1, 6, 6), 1e300))  # float64 beyond float32
    code, _, err = cli(capsys, "run", "specs/edge.cnn", "--input", str(tmp_path / "big.npy"))
    assert code == 0 and "cnnspec: warning: overflow encountered in cast" in err
    assert ".py:" not in err


# ---------------------------------------------------------------- 16, 17, 18. smaller things


def test_network_option_on_a_file_with_a_syntax_error_shows_the_error(capsys, tmp_path):
    spec = tmp_path / "s.cnn"
    spec.write_text("network a {\n  conv 3 = 2\n}\n")
    code, _, err = cli(capsys, "check", str(spec), "--network", "a")
    assert code == 1 and "[syntax-error]" in err and "has no network" not in err


def test_asymmetric_same_names_stride_and_input_and_the_fix():
    result = check_text(net("conv 8 3x3 stride=2 pad=same", "3x32x32"))
    (d,) = result.warnings
    assert "stride 2 on a size of 32" in d.help and "pad=1" in d.help and "odd kernel" not in d.help
    result = check_text(net("conv 8 3x3 stride=2 pad=1", "3x32x32"))
    assert result.network().output_shape == (8, 16, 16)  # the suggested fix keeps the size


@pytest.mark.parametrize(
    "args, words",
    [
        (["--input", "missing.png"], "missing.png: no such file"),
        (["--labels", "missing.txt"], "no such labels file"),
    ],
)
def test_missing_inputs_and_labels_exit_2(capsys, args, words):
    code, _, err = cli(capsys, "run", "specs/edge.cnn", *args)
    assert code == 2 and words in err


def test_a_folder_is_frames_for_a_3d_network_and_refused_for_others(capsys, tmp_path):
    code, _, err = cli(capsys, "run", "specs/edge.cnn", "--input", str(tmp_path))
    assert code == 1 and f"{tmp_path}: is a folder; a folder of frames is the input of a 3-D network" in err


def test_weights_with_an_onnx_model_are_refused(capsys, tmp_path):
    model = _model(tmp_path)
    code, _, err = cli(capsys, "run", str(model), "--weights", str(model))
    assert code == 2 and "--weights applies to a .cnn spec" in err


def test_a_utf8_bom_is_accepted(tmp_path):
    spec = tmp_path / "bom.cnn"
    spec.write_bytes(b"\xef\xbb\xbf" + net("relu", "4").encode())
    assert cnnspec.check(spec).ok


def test_block_parameters_must_differ():
    result = check_text("block c(x, x) {\n  conv x 3x3\n}\n" + net("c 4"))
    (d,) = result.errors
    assert d.code == "block-arguments" and (d.span.line, d.span.column) == (1, 12)


def test_a_network_defined_twice_is_reported_and_printed_once(capsys, tmp_path):
    spec = tmp_path / "twice.cnn"
    spec.write_text(net("relu", "4") + net("relu", "4"))
    code, out, err = cli(capsys, "check", str(spec), str(spec))
    assert code == 1 and out.count("network t") == 1 and err.count("[duplicate-definition]") == 1


@pytest.mark.parametrize(
    "text, words",
    [
        ("network t {\n  input 2.5\n}\n", "got '2.5'"),
        (net("relu -> 2.5", "4"), "gives 4, not 2.5"),
        (net("dense 1e3", "4"), "got '1e3'"),
    ],
)
def test_messages_quote_what_was_written(text, words):
    result = check_text(text)
    assert any(words in d.message for d in result.errors), [d.message for d in result.errors]


def test_a_scalar_array_input_is_described(capsys, tmp_path):
    np.save(tmp_path / "s.npy", np.float32(3))
    code, _, err = cli(capsys, "run", "specs/edge.cnn", "--input", str(tmp_path / "s.npy"))
    assert code == 1 and "holds a single number" in err and "array is ," not in err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\ufeff"])
def test_an_empty_spec_is_an_error(capsys, tmp_path, text):
    spec = tmp_path / "empty.cnn"
    spec.write_text(text)
    code, _, err = cli(capsys, "check", str(spec))
    assert code == 1 and "[no-network]" in err


def test_a_file_of_blocks_only_says_so(capsys, tmp_path):
    spec = tmp_path / "blocks.cnn"
    spec.write_text("block b() {\n  relu\n}\n")
    code, out, _ = cli(capsys, "check", str(spec))
    assert code == 0 and "no network to check" in out


def test_seeds_do_not_alias_modulo_2_32():
    from cnnspec.deploy.weights import fresh_tensor

    a = fresh_tensor("conv1.weight", (4, 1, 3, 3), True, 1)
    b = fresh_tensor("conv1.weight", (4, 1, 3, 3), True, 2**32 + 1)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", ["training", "forward", "parameters", "input", "output"])
def test_names_pytorch_or_the_graph_use_are_refused_at_check(name):
    result = check_text(net(f"conv 2 3x3 as {name}", "1x8x8"))
    assert codes(result) == ["reserved-name"]


@pytest.mark.train
def test_the_reserved_list_covers_every_public_pytorch_module_attribute():
    import torch

    from cnnspec.resolve import TORCH_MODULE_ATTRIBUTES

    public = {name for name in dir(torch.nn.Module) if not name.startswith("_")}
    assert public <= TORCH_MODULE_ATTRIBUTES


def test_train_never_writes_over_a_file_of_its_image_folder(capsys, tmp_path, monkeypatch):
    import cnnspec.training.train as train_module

    spec, _ = _trainable(tmp_path)
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        Image.new("L", (4, 4)).save(tmp_path / "imgs" / label / "1.png")
    image = tmp_path / "imgs" / "a" / "1.png"
    before = image.read_bytes()
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained before checking -o"))
    code, _, err = cli(capsys, "train", str(spec), "--data", str(tmp_path / "imgs"), "-o", str(image))
    assert code == 2 and "inside" in err and image.read_bytes() == before


# ---------------------------------------------------------------- issue 24: silently wrong
# (the rules of issue 24 have a file each: tests/test_hardening_*.py)


def _always_class(path: Path, winner: int, classes: list[str]) -> Path:
    """A 1x4x4 classifier that always answers `winner`, recording its class names."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", len(classes)])
    bias = np.zeros(len(classes), np.float32)
    bias[winner] = 10
    inits = [
        onnx.numpy_helper.from_array(np.zeros((16, len(classes)), np.float32), "w"),
        onnx.numpy_helper.from_array(bias, "b"),
    ]
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["y"])]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], initializer=inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    helper.set_model_props(model, {"classes": "\n".join(classes)})
    onnx.save(model, path)
    return path


def test_evaluate_labels_folders_by_the_model_s_class_names(tmp_path, capsys):
    """A test folder without class `b`: `c` is still the model's class 2, not folder 1."""
    import json

    model = _always_class(tmp_path / "m.onnx", 2, ["a", "b", "c"])
    for name in ("a", "c"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("L", (4, 4)).save(tmp_path / "data" / name / "x.png")
    code, out, _ = cli(capsys, "evaluate", str(model), "--data", str(tmp_path / "data"), "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["accuracy"] == 0.5
    assert {c["class"]: c["correct"] for c in report["classes"]} == {"a": 0, "b": 0, "c": 1}
    (tmp_path / "data" / "d").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "data" / "d" / "x.png")
    code, _, err = cli(capsys, "evaluate", str(model), "--data", str(tmp_path / "data"))
    assert code == 1 and "class folder 'd' is not a class of the model" in err
