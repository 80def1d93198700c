"""Constant folding: shape arithmetic (`x.view(x.size(0), -1)`) computed on constants and
the shapes of activation tensors, with BATCH standing for the batch size."""

from __future__ import annotations

import numpy as np

from .state import BATCH, Act, State, Unsupported, attributes_of


def fold(state: State, node) -> np.ndarray | None:
    """The value of a node whose inputs are all known constants (or a Shape), else None."""
    op = node.op_type
    attrs = attributes_of(node)
    if op == "Constant":
        from onnx import numpy_helper

        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"])
        for key in ("value_float", "value_int"):
            if key in attrs:
                return np.array(attrs[key])
        for key in ("value_floats", "value_ints"):
            if key in attrs:
                return np.array(attrs[key])
        raise Unsupported("a Constant of a kind cnnspec does not read")
    if op == "Shape":
        value = state.values.get(node.input[0])
        if isinstance(value, (Act, np.ndarray)):  # an activation's, or a constant's (pads arithmetic)
            dims = [BATCH, *value.shape] if isinstance(value, Act) else list(value.shape)
            start, end = attrs.get("start", 0), attrs.get("end", None)
            return np.array(dims, dtype=np.int64)[start:end]
    inputs = [state.values.get(n) if n else None for n in node.input]
    if (
        not inputs
        or not all(isinstance(v, np.ndarray) or v is None for v in inputs)
        or all(v is None for v in inputs)
    ):
        return None
    if op not in FOLDABLE:
        return None
    _note_copy(state, node)
    try:
        return FOLDABLE[op](inputs, attrs)
    except (ValueError, IndexError, TypeError, ZeroDivisionError) as exc:
        raise Unsupported(f"its constant inputs cannot be folded ({exc})") from None


def _note_copy(state: State, node) -> None:
    """An Identity of a constant: which tensor it copies (see state._module_path)."""
    if node.op_type == "Identity" and node.output:
        state.copied_from[node.output[0]] = node.input[0]


def _axes(inputs, attrs, i=1):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    return [int(a) for a in inputs[i].reshape(-1)] if len(inputs) > i and inputs[i] is not None else None


def _unsqueeze(inputs, attrs):
    x = inputs[0]
    for axis in sorted(a % (x.ndim + len(_axes(inputs, attrs))) for a in _axes(inputs, attrs)):
        x = np.expand_dims(x, axis)
    return x


def _slice(inputs, attrs):
    x = inputs[0]
    starts = attrs.get("starts", inputs[1] if len(inputs) > 1 else None)
    ends = attrs.get("ends", inputs[2] if len(inputs) > 2 else None)
    axes = attrs.get("axes", inputs[3] if len(inputs) > 3 and inputs[3] is not None else range(len(starts)))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


MAX_FOLDED = 1 << 20  # values a folded ConstantOfShape may hold: shape arithmetic is small


def _constant_of_shape(inputs, attrs):
    from onnx import numpy_helper

    shape = tuple(int(v) for v in inputs[0].reshape(-1))
    if any(d < 0 for d in shape) or np.prod(shape, dtype=np.float64) > MAX_FOLDED:
        raise ValueError(f"a constant of shape {shape}")
    value = numpy_helper.to_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    return np.full(shape, value[0], dtype=value.dtype)


FOLDABLE = {
    "ConstantOfShape": _constant_of_shape,
    "Identity": lambda i, a: i[0],
    "Gather": lambda i, a: np.take(i[0], i[1], axis=int(a.get("axis", 0))),
    "Unsqueeze": _unsqueeze,
    "Squeeze": lambda i, a: np.squeeze(i[0], axis=tuple(_axes(i, a))) if _axes(i, a) else np.squeeze(i[0]),
    "Concat": lambda i, a: np.concatenate([np.atleast_1d(x) for x in i], axis=int(a.get("axis", 0))),
    "Slice": _slice,
    "Cast": lambda i, a: i[0].astype(
        np.int64 if a.get("to") == 7 else np.float32 if a.get("to") == 1 else i[0].dtype
    ),
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] // i[1] if i[0].dtype.kind in "iu" else i[0] / i[1],
    "ReduceProd": lambda i, a: np.prod(i[0], keepdims=bool(a.get("keepdims", 1))),
    "Reshape": lambda i, a: i[0].reshape([int(v) for v in i[1]]),
    "Transpose": lambda i, a: np.transpose(i[0], a.get("perm")),
}
