"""What resolve produces: named layers in definition order, each naming its inputs (the layer
graph every later stage reads), and the limits of the expansion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..base.diagnostics import Diagnostic, Span
from ..base.records import record
from ..kinds import LayerConfig, Shape
from ..language import syntax as ast

Origin = Literal["own", "base", "new"]


# Expansion is bounded before it is done: every layer, block call and `repeat` pass
# (an empty one too) costs one step, and a `repeat` whose count times its body's length
# would pass the budget is refused before its first pass.
MAX_EXPANSION = 200_000


MAX_DEPTH = 64  # nested `repeat` and block calls, `use` chains, `from` chains


REPEAT = "(repeat)"  # a `repeat` level on the expansion stack (never a block name)
BODY = "(body)"  # a combinator's { body } on the expansion stack (bounded by MAX_DEPTH too)
NOT_BLOCKS = (REPEAT, BODY)  # stack levels that are not block calls


MAX_WEIGHT_DEPTH = 5  # weights are at most filters x channels x depth x height x width


# Layer names that would collide with the exported graph's tensors or with the
# attributes of a PyTorch module (`as forward` breaks `train`); checked without torch.
RESERVED_NAMES = frozenset({"input", "output", "in", "activations", "order", "frozen_names", "network_name"})


TORCH_MODULE_ATTRIBUTES = frozenset(
    """T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda
    double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half ipu load_state_dict modules mtia named_buffers named_children named_modules
    named_parameters parameters register_backward_hook register_buffer register_forward_hook
    register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
    set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu
    zero_grad""".split()
)


@record
class Layer:
    """One layer of a resolved network."""

    name: str
    config: LayerConfig
    span: Span  # the line that wrote it (inside a block body for block layers)
    arg_spans: Mapping[str, Span]  # argument -> where its value was written
    expect: Shape | None = None
    expect_span: Span | None = None
    expect_text: str | None = None
    frozen: bool = False
    calls: tuple[Span, ...] = ()  # block call sites that produced it, outermost first
    block: str | None = None  # outermost block instance (`cbapd1`), freezable by name
    origin: Origin = "own"  # in a derived network: kept from the base, or new
    inputs: tuple[str, ...] = ()  # the layers it reads (`input`: the network's input)
    residual: bool = False  # an add written `residual { B } [shortcut { S }]`: B's end + S's

    @property
    def kind(self) -> str:
        return self.config.kind

    def spec_text(self) -> str:
        return self.config.short()


@record
class Network:
    """A network with blocks, repeats and derivation expanded: its layers in definition order."""

    name: str
    span: Span
    input_shape: Shape
    input_span: Span
    layers: tuple[Layer, ...]
    base: str | None = None
    base_span: Span | None = None
    dropped: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # `output a b`, else the last layer (none: the input itself)
    instances: Mapping[str, str] = field(default_factory=dict, compare=False)  # block instance -> its call


@dataclass
class Resolved:
    """Every network that was resolved, the ones asked for, and what went wrong."""

    networks: dict[str, Network]
    targets: list[str]
    diagnostics: list[Diagnostic]
    sources: dict[str, str]
    files: list[Path] = field(default_factory=list)  # every file read, resolved
    parsed: dict[str, ast.SpecFile] = field(default_factory=dict)  # display path -> its AST


INPUT = "input"  # the network's input tensor, as layers name what they read


@dataclass
class Budget:
    """Expansion steps left for one input: a file and every file it uses. Every network's
    statements and `repeat` passes draw on it, and so do the base layers each derived
    network copies: a hundred networks each just under a per-network limit, or thousands of
    networks derived from one large base, are one input too large, not a hundred small ones."""

    left: int = MAX_EXPANSION
    spent: bool = False  # then no further network is expanded, and the error is said once

    def spend(self, steps: int) -> bool:
        """Take `steps`; False (nothing taken) when they are not left."""
        if steps > self.left:
            return False
        self.left -= steps
        return True
