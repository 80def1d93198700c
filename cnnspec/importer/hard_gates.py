"""Hard sigmoid and hard swish as plain arithmetic, the way code written before PyTorch had
them (and some converters) spells them: relu6(x + 3) / 6 and x · relu6(x + 3) / 6."""

from __future__ import annotations

from ..kinds import ActivationLayer
from .state import Act, Partial, State, add_layer, as_map, as_viewed, is_number


def _pair(state: State, node):
    """The node's two input values, in both orders."""
    a, b = (state.values.get(n) for n in node.input[:2])
    return ((a, b), (b, a))


def plus_three(state: State, node) -> Partial | None:
    """x + 3: the first step."""
    for value, const in _pair(state, node):
        found = as_map(value)
        if found is not None and is_number(const, 3.0):
            return Partial("plus3", found[0], nhwc=found[1])
    return None


def clipped(state: State, node, low: float | None, high: float | None) -> Partial | None:
    """relu6(x + 3)."""
    value = state.values.get(node.input[0])
    if isinstance(value, Partial) and value.stage == "plus3" and (low, high) == (0, 6):
        return Partial("relu6_plus3", value.x, nhwc=value.nhwc)
    return None


def times_gate(state: State, node) -> Partial | None:
    """x · relu6(x + 3), before the division by 6."""
    for value, gate in _pair(state, node):
        if isinstance(gate, Partial) and gate.stage == "relu6_plus3" and as_map(value) == (gate.x, gate.nhwc):
            return Partial("x_relu6_plus3", gate.x, nhwc=gate.nhwc)
    return None


def sixth(state: State, node, divides: bool) -> Act | Partial | None:
    """The last step, / 6 (Div) or · 1/6 (Mul): a hard sigmoid, or a hard swish."""
    wanted = 6.0 if divides else 1 / 6
    pairs = _pair(state, node)[:1] if divides else _pair(state, node)  # a division is not symmetric
    for value, const in pairs:
        if (
            isinstance(value, Partial)
            and value.stage in ("relu6_plus3", "x_relu6_plus3")
            and is_number(const, wanted)
        ):
            fn = "hardsigmoid" if value.stage == "relu6_plus3" else "hardswish"
            return as_viewed(add_layer(state, node, ActivationLayer(fn=fn), [value.x], {}), value.nhwc)
    return None
