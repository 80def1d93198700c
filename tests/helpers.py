"""What several test files share: building and running a spec's model with onnxruntime,
hypothesis strategies for generated networks and graphs, the parser fuzzer's tokens and a
small learnable data set. Test files import from here (or conftest.py), never from
each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import strategies as st

import cnnspec
from cnnspec.cli import main
from cnnspec.deploy.export import build_model, intermediate_outputs
from cnnspec.training.train import Dataset
from tests.conftest import ROOT, net

# ------------------------------------------------------------------ the command line


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`cnnspec ARGS` in this process: exit code, standard output, standard error."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(
    *args: str, cwd: Path = ROOT, stdin: str | None = None, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """`cnnspec ARGS` as its own process (`python -m cnnspec`), colours off."""
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=timeout,
    )


# ------------------------------------------------------------------ running models


def checked(text: str, network: str | None = None) -> cnnspec.CheckedNetwork:
    result = cnnspec.check_source(text, "t.cnn", network)
    assert result.ok, [d.message for d in result.errors]
    return result.network(network)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_all_layers(network: cnnspec.CheckedNetwork, x: np.ndarray, seed: int = 0, **kwargs):
    """Every layer's output by name, as onnxruntime computes it."""
    model, weights = build_model(network, seed, **kwargs)
    names = [layer.name for layer in network.layers]
    runner = session(intermediate_outputs(model, names))
    outputs = runner.run(None, {"input": x})
    return model, weights, dict(zip([o.name for o in runner.get_outputs()], outputs))


def inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape after the batch, as ONNX's strict shape inference gives it."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return {
        v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:])
        for v in (*inferred.graph.value_info, *inferred.graph.output)
    }


# ------------------------------------------------------------------ generated networks

sizes = st.integers(1, 5)


@st.composite
def conv_line(draw):
    filters = draw(st.integers(1, 6))
    kernel = f"{draw(sizes)}x{draw(sizes)}" if draw(st.booleans()) else str(draw(sizes))
    options = []
    if draw(st.booleans()):
        options.append(f"stride={draw(st.integers(1, 3))}")
    pad = draw(st.sampled_from(["", "pad=same", "pad=valid", "pad=1", "pad=2x0", "pad=(0,1,2,1)"]))
    options.append(pad)
    if draw(st.booleans()):
        options.append(f"dilation={draw(st.integers(1, 3))}")
    if draw(st.integers(0, 3)) == 0:
        options.append("groups=2")
    if draw(st.booleans()):
        options.append("bias=false")
    activation = draw(st.sampled_from(["", "relu", "leakyrelu", "sigmoid", "tanh", "elu", "gelu"]))
    return " ".join(filter(None, ["conv", str(filters), kernel, *options, activation]))


@st.composite
def pool_line(draw):
    mode = draw(st.sampled_from(["max", "avg"]))
    kernel = draw(st.integers(1, 3))
    options = []
    if draw(st.booleans()):
        options.append(f"stride={draw(st.integers(1, 3))}")
    if draw(st.booleans()):
        options.append(draw(st.sampled_from(["pad=same", "pad=1" if kernel > 1 else "pad=0"])))
    if draw(st.booleans()):
        options.append("ceil")
    elif mode == "avg" and draw(st.booleans()):
        options.append("count_pad")
    return " ".join(["pool", mode, str(kernel), *options])


spatial_line = st.one_of(
    conv_line(),
    pool_line(),
    st.sampled_from(
        ["batchnorm", "relu", "leakyrelu 0.2", "sigmoid", "tanh", "elu", "gelu", "dropout 0.3", "softmax"]
        + ["layernorm", "scale init=0.5", "prelu", "prelu shared", "droppath 0.2", "mish", "softplus"]
        + ["pad 1 edge", "pad (0,1,1,0) reflect"]
    ),
)
flat_line = st.sampled_from(
    [
        "dense 7",
        "dense 5 relu",
        "dense 3 bias=false",
        "batchnorm",
        "dropout 0.5",
        "dense 4 softmax",
        "tanh",
        "gelu",
        "dense 6 elu",
    ]
)


@st.composite
def network_text(draw):
    channels = draw(st.integers(1, 4)) * 2 if draw(st.booleans()) else draw(st.integers(1, 4))
    h, w = draw(st.integers(3, 20)), draw(st.integers(3, 20))
    lines = draw(st.lists(spatial_line, min_size=1, max_size=6))
    tail = draw(st.sampled_from(["", "flatten", "globalpool avg\nflatten", "globalpool max"]))
    if "flatten" in tail:
        lines += tail.splitlines() + draw(st.lists(flat_line, max_size=3))
    elif tail:
        lines.append(tail)
    return net("\n".join(lines), f"{channels}x{h}x{w}")


@st.composite
def _per_axis(draw, rank: int, low: int, high: int) -> str:
    """One number for every axis, or one per axis (`2`, `1x3x2`)."""
    if rank == 1 or draw(st.booleans()):
        return str(draw(st.integers(low, high)))
    return "x".join(str(draw(st.integers(low, high))) for _ in range(rank))


@st.composite
def _pads(draw, rank: int) -> str:
    form = draw(st.sampled_from(["same", "number", "per_axis", "sides"]))
    if form == "same":
        return "pad=same"
    if form == "number":
        return f"pad={draw(st.integers(0, 2))}"
    if form == "per_axis" and rank > 1:
        return "pad=" + "x".join(str(draw(st.integers(0, 2))) for _ in range(rank))
    return "pad=(" + ",".join(str(draw(st.integers(0, 2))) for _ in range(2 * rank)) + ")"


@st.composite
def _ranked_line(draw, rank: int) -> str:
    kind = draw(st.sampled_from(["conv", "conv", "pool", "deconv", "upsample", "pad", "other"]))
    if kind == "conv":
        options = [f"stride={draw(_per_axis(rank, 1, 2))}", draw(_pads(rank))]
        if draw(st.booleans()):
            options.append(f"dilation={draw(_per_axis(rank, 1, 2))}")
        return f"conv {draw(st.integers(1, 4))} {draw(_per_axis(rank, 1, 3))} " + " ".join(options)
    if kind == "pool":
        window = draw(_per_axis(rank, 1, 3))
        extra = draw(st.sampled_from(["", "ceil", f"stride={draw(_per_axis(rank, 1, 2))}", "pad=same"]))
        return f"pool {draw(st.sampled_from(['max', 'avg']))} {window} {extra}".strip()
    if kind == "deconv":
        return f"deconv {draw(st.integers(1, 3))} {draw(_per_axis(rank, 1, 3))} stride={draw(_per_axis(rank, 1, 2))}"
    if kind == "upsample":
        return f"upsample {draw(_per_axis(rank, 1, 2))} {draw(st.sampled_from(['nearest', 'bilinear']))}"
    if kind == "pad":
        sides = ",".join(str(draw(st.integers(0, 1))) for _ in range(2 * rank))
        return f"pad ({sides}) {draw(st.sampled_from(['zero', 'edge']))}"
    return draw(st.sampled_from(["batchnorm", "relu", "layernorm", "prelu", "scale", "gelu"]))


@st.composite
def ranked_network_text(draw, rank: int):
    """A chain of windowed and shaping layers in a `rank`-D network, sizes written per axis
    or once, then a head (global pooling, flatten, dense)."""
    sizes = "x".join(str(draw(st.integers(3, 12))) for _ in range(rank))
    lines = draw(st.lists(_ranked_line(rank), min_size=1, max_size=5))
    lines += draw(st.sampled_from([[], ["globalpool avg", "flatten", "dense 3"]]))
    return net("\n".join(lines), f"{draw(st.integers(1, 3))}x{sizes}")


# ------------------------------------------------------------------ generated graphs

BODIES = st.sampled_from(
    [
        "conv {c} 3x3 pad=1",
        "conv {c} 1x1; relu",
        "batchnorm; relu6",
        "conv {c} 3x3 pad=1 groups={c}",
        "silu",
        "",
    ]
)


@st.composite
def graph_text(draw):
    channels = draw(st.sampled_from([2, 4]))
    size = draw(st.sampled_from([4, 6, 8]))
    lines = [f"conv {channels} 1x1 as s0"]
    for i in range(draw(st.integers(1, 5))):
        form = draw(st.sampled_from(["residual", "concat", "gate", "named", "down", "up"]))
        body = draw(BODIES).format(c=channels)
        if form == "residual":
            lines.append(f"residual {{ {body} }}")
        elif form == "concat":
            lines.append(f"concat {{ {body} }} {{ conv {channels} 1x1 }}")
            lines.append(f"conv {channels} 1x1")
        elif form == "gate":
            lines.append(f"multiply {{ globalpool avg; conv {channels} 1x1 sigmoid }}")
        elif form == "named":
            lines.append(f"conv {channels} 3x3 pad=1 as n{i}")
            lines.append(f"add n{i} s0")
        elif form == "down" and size >= 4:
            lines.append("pool max 2")
            lines.append(f"upsample 2 {draw(st.sampled_from(['nearest', 'bilinear']))}")
        else:
            lines.append(f"deconv {channels} 2x2 stride=2")
            lines.append("pool avg 2")
    return net("; ".join(lines), f"{channels}x{size}x{size}")


# ------------------------------------------------------------------ the parser fuzzer

TOKENS = [
    "network",
    "block",
    "repeat",
    "input",
    "conv",
    "pool",
    "max",
    "avg",
    "dense",
    "flatten",
    "batchnorm",
    "relu",
    "softmax",
    "dropout",
    "globalpool",
    "from",
    "drop",
    "last",
    "freeze",
    "all",
    "through",
    "as",
    "->",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    "\n",
    " ",
    "#",
    "3x3",
    "1x28x28",
    "0",
    "-1",
    "2",
    "0.5",
    "1e9",
    "999999999",
    "pad=same",
    "stride=",
    "dilation=",
    "groups=",
    "weights=",
    "same",
    "valid",
    "x",
    '"',
    "ceil",
    "a",
    "b",
    # branches and arithmetic
    "residual",
    "shortcut",
    "concat",
    "add",
    "multiply",
    "output",
    "in",
    ";",
    "*",
    "//",
    "+",
    " - ",
    "{}",
    "deconv",
    "upsample",
    "as a",
    "from a",
]


# ------------------------------------------------------------------ training data


def toy_data(n: int = 64, classes: int = 3, seed: int = 0) -> Dataset:
    """Class k: a bright square in the k-th third of the image (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.random((n, 1, 8, 8), dtype=np.float32) * 0.2
    for i, label in enumerate(y):
        x[i, 0, 2:6, label * 2 : label * 2 + 3] += 1.0
    return Dataset(x, y.astype(np.int64), [str(c) for c in range(classes)])


class Client:
    """A minimal LSP client: requests wait for their response; notifications are kept."""

    def __init__(self, cwd: Path, timeout: float = 60):
        import queue
        import threading

        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnspec", "lsp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd
        )
        self.next_id = 0
        self.notifications: list[dict] = []
        self.timeout = timeout  # a message the server owes that does not come fails the test, not hangs it
        self.inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.process.stdin.flush()

    def _read(self) -> None:
        """Every message the server writes, into the inbox; None when it closes its output."""
        assert self.process.stdout is not None
        while True:
            length = 0
            while True:
                line = self.process.stdout.readline()
                if not line:
                    self.inbox.put(None)
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.inbox.put(json.loads(self.process.stdout.read(length)))

    def receive(self) -> dict:
        import queue

        try:
            message = self.inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"the server sent nothing for {self.timeout} s") from None
        if message is None:
            raise EOFError("the server closed its output")
        return message

    def answer(self, method: str, params) -> dict:
        """The whole response to one request (result or error); notifications are kept."""
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == self.next_id and "method" not in message:
                return message
            if "method" in message:
                self.notifications.append(message)

    def request(self, method: str, params: dict) -> dict:
        message = self.answer(method, params)
        assert "error" not in message, message
        return message.get("result")

    def start_with(self, root: Path, uri: str, text: str) -> None:
        """Initialize the session in `root` and open one document."""
        self.request("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {}})
        self.notify("initialized", {})
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "cnn", "version": 1, "text": text}},
        )

    def notify(self, method: str, params: dict) -> None:
        self.send({"method": method, "params": params})

    def diagnostics(self, uri: str) -> list[dict]:
        """The next diagnostics published for `uri`."""
        while True:
            pending = [n for n in self.notifications if n["method"] == "textDocument/publishDiagnostics"]
            for n in pending:
                self.notifications.remove(n)
                if n["params"]["uri"] == uri:
                    return n["params"]["diagnostics"]
            message = self.receive()
            if "method" in message:
                self.notifications.append(message)

    def close(self) -> None:
        self.request("shutdown", None)  # type: ignore[arg-type]
        self.notify("exit", None)  # type: ignore[arg-type]
        assert self.process.wait(timeout=10) == 0  # a clean exit, not an internal error


# ------------------------------------------------------------------ a small training run

RECIPE_SPEC = """
network net {
  input 1x8x8
  conv 4 3x3 pad=same
  batchnorm
  relu
  pool max 2
  flatten
  dense 8 relu
  dropout 0.3
  dense 3 softmax
}
"""
RECIPE_RUN = dict(epochs=4, lr=5e-2, batch_size=8, val_split=0.25, seed=5, progress=False)


def recipe_network(text: str = RECIPE_SPEC) -> cnnspec.CheckedNetwork:
    return cnnspec.check_source(text, "t.cnn").network("net")


def train_toy(**kwargs):
    """RECIPE_SPEC trained on 48 toy examples (RECIPE_RUN, overridden by `kwargs`)."""
    from cnnspec.deploy.weights import build_weights
    from cnnspec.training.train import train

    net = recipe_network()
    return train(net, build_weights(net, seed=2), toy_data(48), **{**RECIPE_RUN, **kwargs})
