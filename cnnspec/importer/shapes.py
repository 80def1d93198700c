"""The shapes ONNX's own shape inference gives a model's tensors: what lets the importer
walk past an op it cannot translate and go on listing what else it lacks."""

from __future__ import annotations

from ..kinds import Shape

SMALL_CONSTANT = 4096  # initializers up to this many values are kept: shape inputs live there


def inferred_shapes(model) -> dict[str, Shape]:
    """Tensor name -> its shape after the batch, for each tensor whose every size ONNX
    shape inference fixes. The weights are left out first (given as typed inputs), so
    this costs what the graph's nodes cost, not what its weights weigh. {} when shape
    inference refuses the model."""
    import onnx
    from onnx import helper

    graph = model.graph
    declared = {i.name for i in graph.input}
    small, typed = [], []
    for tensor in graph.initializer:
        if _count(tensor.dims) <= SMALL_CONSTANT and tensor.data_location != onnx.TensorProto.EXTERNAL:
            small.append(tensor)
        elif tensor.name not in declared:
            typed.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    light = helper.make_model(
        helper.make_graph(
            list(graph.node), graph.name or "g", [*graph.input, *typed], list(graph.output), small
        ),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
    )
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    except Exception:  # shape inference raises many kinds; without it, less is listed
        return {}
    shapes: dict[str, Shape] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:]]
        if len(dims) >= 2 and all(s > 0 for s in sizes):
            shapes[info.name] = tuple(sizes)
    return shapes


def _count(dims) -> int:
    total = 1
    for d in dims:
        total *= max(int(d), 0)
    return total
