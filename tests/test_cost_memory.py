"""Memory to train and to run a network, predicted from the spec and checked against
PyTorch itself: the bytes autograd keeps for backward (counted with saved_tensors_hooks,
each storage once, parameters and buffers left out), and the real optimizer's state."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnspec
from cnnspec.cost import OPTIMIZERS, inference_peak, largest_batch, training_memory
from tests.conftest import SPECS, check_text, net
from tests.helpers import cli

torch = pytest.importorskip("torch", reason="the cnnspec[train] extra (PyTorch) is part of the test install")
from cnnspec.deploy.weights import build_weights  # noqa: E402
from cnnspec.training.modules import build_module  # noqa: E402

ZOO = SPECS / "zoo"
NETWORKS = [
    ("resnet.cnn", "resnet18"),
    ("resnet.cnn", "resnet50"),
    ("mobilenetv2.cnn", "mobilenetv2"),
    ("efficientnet_b0.cnn", "efficientnet_b0"),
    ("densenet121.cnn", "densenet121"),
    ("unet.cnn", "unet"),
    ("convnext.cnn", "convnext_tiny"),
    ("shufflenetv2.cnn", "shufflenetv2"),
    ("mobilenetv3.cnn", "mobilenetv3_large"),
]


def _at_64(spec: str, name: str):
    """The zoo network at 64x64 (the sizes scale; the rules do not)."""
    text = re.sub(r"input 3x\d+x\d+", "input 3x64x64", (ZOO / spec).read_text())
    return cnnspec.check_source(text, spec).network(name)


def _kept_by_autograd(network, batch: int) -> int:
    module = build_module(network, build_weights(network).arrays)
    module.train()
    own = {t.untyped_storage().data_ptr() for t in (*module.parameters(), *module.buffers())}
    kept: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.randn(batch, *network.input_shape)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = module.forward_all(x)  # held: the graph keeps what it saved alive
    assert outputs
    return sum(kept.values())


@pytest.mark.parametrize("batch", [8, 32])
@pytest.mark.parametrize("spec, name", NETWORKS, ids=[n for _, n in NETWORKS])
def test_kept_activations_equal_what_pytorch_keeps(spec, name, batch):
    network = _at_64(spec, name)
    assert training_memory(network, batch).saved == _kept_by_autograd(network, batch)


def test_a_frozen_prefix_keeps_nothing_and_frozen_batch_norm_runs_in_eval_mode():
    text = (
        "network base {\n  input 3x16x16\n  conv 8 3x3 pad=1 bias=false as c1; batchnorm; relu\n"
        "  conv 8 3x3 pad=1 as c2; relu\n  pool max 2\n  conv 16 3x3 pad=1; batchnorm; relu\n"
        "  globalpool avg\n  flatten\n  dropout 0.2\n  dense 10\n}\n"
        "network tuned from base {\n  freeze through c2\n}\n"
    )
    base, tuned = check_text(text).network("base"), check_text(text).network("tuned")
    for network in (base, tuned):
        assert training_memory(network, 4).saved == _kept_by_autograd(network, 4)
    rows = {row.name: row for row in training_memory(tuned, 4).layers}
    assert rows["c1"].saved_per_image == rows["c2"].saved_per_image == 0 and rows["c1"].gradients == 0
    assert training_memory(tuned, 4).saved < training_memory(base, 4).saved


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_weights_gradients_and_optimizer_state_equal_the_real_optimizer(optimizer):
    network = _at_64("resnet.cnn", "resnet18")
    module = build_module(network, build_weights(network).arrays)
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
        "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p),
        "adamw": lambda p: torch.optim.AdamW(p),
    }[optimizer]
    trainable = [p for p in module.parameters() if p.requires_grad]
    step = make(trainable)
    module.forward_all(torch.randn(2, 3, 64, 64))[0].sum().backward()
    step.step()
    # per weight: exp_avg and exp_avg_sq, or the momentum buffer (Adam's `step` counters,
    # one number per tensor, are left out)
    state = sum(
        value.nbytes
        for per_param in step.state_dict()["state"].values()
        for key, value in per_param.items()
        if key != "step"
    )
    memory = training_memory(network, 2, optimizer)
    assert memory.optimizer_state == state
    assert memory.gradients == sum(p.grad.nbytes for p in trainable)
    float_buffers = [b for b in module.buffers() if b.dtype == torch.float32]  # not the int counters
    assert memory.weights == sum(t.nbytes for t in (*module.parameters(), *float_buffers))


@given(budget=st.integers(1, 2**40))
def test_the_largest_batch_is_the_last_that_fits(budget):
    memory = training_memory(
        check_text(net("conv 8 3x3 pad=1 relu\nflatten\ndense 10", "3x32x32")).network(), 1
    )
    batch = largest_batch(memory, budget)

    def total(b: int) -> int:
        return memory.static + b * memory.saved_per_image

    assert batch == 0 or total(batch) <= budget
    assert total(batch + 1) > budget


def test_a_skip_connection_keeps_its_tensor_alive():
    """input 256 B; each conv's output 1 KiB. A chain frees each output after its one
    reader: 2 KiB at most. With `a` read again at the end, it lives through: 3 KiB."""
    chain = check_text(
        net("conv 4 3x3 pad=1 as a\nconv 4 3x3 pad=1\nconv 4 3x3 pad=1\nrelu", "1x8x8")
    ).network()
    skip = check_text(net("conv 4 3x3 pad=1 as a\nconv 4 3x3 pad=1\nconv 4 3x3 pad=1\nadd a conv3", "1x8x8"))
    assert inference_peak(chain).peak == 2048
    peak = inference_peak(skip.network())
    assert (peak.peak, peak.at) == (3072, "conv3")
    assert peak.total == 256 + 4 * 1024  # every output at once: today's `activations` figure


def test_check_prints_and_writes_the_training_memory(capsys):
    code, out, _ = cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--train", "momentum", "--batch", "16")
    assert code == 0
    assert "training (momentum, fp32, batch 16)" in out and "optimizer state" in out and "kept/img" in out
    assert "not counted: workspace" in out and "at most" in out
    code, out, _ = cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--fit", "1GiB", "--format", "json")
    data = json.loads(out)["networks"][0]
    memory = data["training_memory"]
    assert memory["optimizer"] == "adam" and memory["fit"]["largest_batch"] > 0
    assert {"saved_activation_bytes_per_image", "optimizer_state_bytes"} <= set(data["layers"][0]["training"])
    assert data["inference_peak_bytes"] <= data["activation_bytes"]
    with pytest.raises(SystemExit) as usage:
        cli(capsys, "check", str(SPECS / "lenet5.cnn"), "--fit", "lots")
    assert usage.value.code == 2 and "is not a memory size such as 8GiB" in capsys.readouterr().err
