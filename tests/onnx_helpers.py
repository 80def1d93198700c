"""Shared by the export, run and training tests: build a spec's model and run it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

import cnnspec
from cnnspec.deploy.export import build_model, intermediate_outputs


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
