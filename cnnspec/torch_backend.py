"""Checked network -> PyTorch module (the `cnnspec[train]` extra).

Built from the same checked network as the ONNX export, with the same layer and tensor
names (`conv1.weight`, `bn1.running_mean`), so weights pass between the two without a
mapping. Padding follows the checker exactly: asymmetric and `same` pads are explicit,
pooling's ceil mode becomes extra end padding (see `CheckedLayer.floor_mode_pads`),
average pooling leaves padding out of the count. Frozen layers get no gradient and
their batch norms stay in inference mode, also under `model.train()`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .diagnostics import CnnspecError, Diagnostic
from .infer import CheckedLayer, CheckedNetwork
from .layers import ActivationLayer, BatchNorm, Conv, Dense, Dropout, Flatten, GlobalPool, Pool

_ACTIVATIONS = {
    "relu": lambda alpha: nn.ReLU(),
    "leakyrelu": lambda alpha: nn.LeakyReLU(alpha if alpha is not None else 0.01),
    "sigmoid": lambda alpha: nn.Sigmoid(),
    "tanh": lambda alpha: nn.Tanh(),
    "softmax": lambda alpha: nn.Softmax(dim=1),
    "elu": lambda alpha: nn.ELU(alpha if alpha is not None else 1.0),
    "gelu": lambda alpha: nn.GELU(),
}


class _Padded(nn.Module):
    """Explicit (top, bottom, left, right) padding, then the wrapped op."""

    def __init__(self, op: nn.Module, pads: tuple[int, int, int, int], value: float = 0.0):
        super().__init__()
        self.op = op
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom)  # F.pad order: last dimension first
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=self.value)
        return self.op(x)


class _AveragePool(nn.Module):
    """Average over the real pixels of each window only (ONNX count_include_pad=0)."""

    def __init__(self, kernel, stride, pads: tuple[int, int, int, int]):
        super().__init__()
        top, bottom, left, right = pads
        self.pads = (left, right, top, bottom)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.pads):
            return F.avg_pool2d(x, self.kernel, self.stride)
        total = F.avg_pool2d(F.pad(x, self.pads), self.kernel, self.stride)
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        return total / F.avg_pool2d(ones, self.kernel, self.stride)


def _core(entry: CheckedLayer) -> nn.Module:
    """The parameterised (or shaping) op of one layer; its activation comes after."""
    config = entry.layer.config
    if isinstance(config, Conv):
        return _Conv(entry, config)
    if isinstance(config, Pool):
        pads = entry.floor_mode_pads
        assert pads is not None
        stride = config.stride or config.kernel
        if config.mode == "max":
            return _Padded(nn.MaxPool2d(config.kernel, stride), pads, float("-inf"))
        return _AveragePool(config.kernel, stride, pads)
    if isinstance(config, GlobalPool):
        return nn.AdaptiveMaxPool2d(1) if config.mode == "max" else nn.AdaptiveAvgPool2d(1)
    if isinstance(config, BatchNorm):
        norm = nn.BatchNorm2d if len(entry.input_shape) == 3 else nn.BatchNorm1d
        return norm(entry.input_shape[0], eps=config.eps, momentum=config.momentum)
    if isinstance(config, Dropout):
        return nn.Dropout(config.rate)
    if isinstance(config, Flatten):
        return nn.Flatten()
    if isinstance(config, Dense):
        return nn.Linear(math.prod(entry.input_shape), config.units, config.bias)
    return _ACTIVATIONS[entry.config_as(ActivationLayer).fn](entry.config_as(ActivationLayer).alpha)


class _Conv(nn.Conv2d):
    """Conv2d with explicit (top, bottom, left, right) zero padding; the parameters stay
    at `conv1.weight` and `conv1.bias`."""

    def __init__(self, entry: CheckedLayer, config: Conv):
        super().__init__(
            entry.input_shape[0],
            config.filters,
            config.kernel,
            config.stride,
            0,
            config.dilation,
            config.groups,
            config.bias,
        )
        assert entry.pads is not None
        top, bottom, left, right = entry.pads
        self.explicit_pads = (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.explicit_pads):
            x = F.pad(x, self.explicit_pads)
        return super().forward(x)


class CnnspecModule(nn.Module):
    """A sequential PyTorch model whose submodules carry the spec's layer names."""

    def __init__(self, network: CheckedNetwork):
        super().__init__()
        self.network_name = network.name
        self.order: list[str] = []
        self.activations = nn.ModuleDict()
        self.frozen_names = [c.name for c in network.layers if c.layer.frozen]
        for entry in network.layers:
            if hasattr(nn.Module, entry.name) or entry.name in ("activations", "order"):
                raise CnnspecError(
                    [
                        Diagnostic(
                            "error",
                            "invalid-argument",
                            f"layer name '{entry.name}' clashes with PyTorch; rename it with `as`",
                        )
                    ]
                )
            self.add_module(entry.name, _core(entry))
            activation = getattr(entry.layer.config, "activation", None)
            if activation is not None:
                self.activations[entry.name] = _ACTIVATIONS[activation.name](activation.alpha)
            self.order.append(entry.name)
        for name in self.frozen_names:
            for parameter in getattr(self, name).parameters():
                parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
            if name in self.activations:
                x = self.activations[name](x)
        return x

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output before a final softmax, for a numerically stable cross-entropy."""
        last = self.order[-1]
        for name in self.order:
            module = getattr(self, name)
            if name == last and isinstance(module, nn.Softmax):
                return x
            x = module(x)
            if name in self.activations:
                if name == last and isinstance(self.activations[name], nn.Softmax):
                    return x
                x = self.activations[name](x)
        return x

    def train(self, mode: bool = True) -> CnnspecModule:
        super().train(mode)
        for name in self.frozen_names:  # frozen batch norm keeps its statistics fixed
            getattr(self, name).eval()
        return self

    def cnnspec_tensors(self) -> dict[str, np.ndarray]:
        """Every tensor under its cnnspec / ONNX name, as float32 numpy arrays."""
        return {
            key: value.detach().cpu().numpy().astype(np.float32)
            for key, value in self.state_dict().items()
            if not key.endswith("num_batches_tracked")
        }

    def load_cnnspec_tensors(self, arrays: dict[str, np.ndarray]) -> None:
        state = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:  # build_weights checked names already: a bug if reached
            raise RuntimeError(f"tensor names differ: missing {missing}, unexpected {unexpected}")


def build_module(network: CheckedNetwork, arrays: dict[str, np.ndarray] | None = None) -> CnnspecModule:
    """The PyTorch model of a checked network, with `arrays` (e.g. `WeightSet.arrays`)."""
    module = CnnspecModule(network)
    if arrays is not None:
        module.load_cnnspec_tensors(arrays)
    return module.eval()
