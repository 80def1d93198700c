"""What every kind shares: argument schemas, the findings of a shape rule, and
`LayerConfig`, the base class whose subclasses are the kinds."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NamedTuple, Union

from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from ..base.records import record
from .functions import Activation

Shape = tuple[int, ...]


Size = tuple[int, ...]  # one entry per spatial axis: (length,), (height, width), (depth, height, width)


Pair = Size  # the 2-D name, kept for readers of 0.x


Pads = tuple[int, ...]  # begin and end of each spatial axis in turn: (top, bottom, left, right) in 2-D


Padding = Union[Literal["same"], Pads]  # `same` is resolved against the input size in `infer`


Matrix = tuple  # nested tuples of floats, checked against the tensor shape in `infer`


class Argument(NamedTuple):
    """How a spec argument becomes a value: `converter` (in resolve/bind.py) turns the written
    form into Python, `schema` (pydantic-core) validates it."""

    converter: str
    schema: cs.CoreSchema


POSITIVE = cs.int_schema(gt=0)


SIZE = cs.tuple_schema([POSITIVE], variadic_item_index=0, min_length=1, max_length=3)


PAIR = SIZE


PADS = cs.tuple_schema([cs.int_schema(ge=0)], variadic_item_index=0, min_length=2, max_length=6)


PADDING = cs.union_schema(
    [cs.literal_schema(["same"]), PADS],
    custom_error_type="padding",
    custom_error_message="pads must be 0 or more",
)


@record
class Problem:
    """A finding of a shape rule; `field` names the argument to point at (or None)."""

    severity: Literal["error", "warning"]
    code: str
    message: str
    help: str | None = None
    field: str | None = None


@record
class Window:
    """A sliding window along each spatial axis, as the receptive-field walk needs it."""

    extent: Size  # dilation * (kernel - 1) + 1
    stride: Size
    pads: Pads  # begin, end per axis, `same` already resolved


@dataclass
class Inferred:
    """What a layer's shape rule computed: output shape, tensors, MACs, window, problems."""

    output: Shape | None  # None: the shape could not be computed; stop this network
    tensors: dict[str, tuple[Shape, bool]] = field(default_factory=dict)  # name -> (shape, trainable)
    macs: int = 0
    window: Window | None = None
    covers_input: bool = False  # global pooling, flatten: the whole map feeds every output
    problems: list[Problem] = field(default_factory=list)
    in_features: int | None = None


@record
class LayerConfig:
    """Arguments of one layer, validated. Subclasses declare how the spec line maps here."""

    kind: ClassVar[str]
    prefix: ClassVar[str]  # stem of automatic names: conv1, bn1, ...
    example: ClassVar[str]  # a short, valid line of the kind, for help lines and the docs
    # What PyTorch and Keras call it (lower case, no underscores) -> how cnnspec writes it.
    foreign_names: ClassVar[dict[str, str]] = {}
    positional: ClassVar[tuple[str, ...]] = ()  # fields filled by bare arguments, in order
    flags: ClassVar[dict[str, tuple[str, object]]] = {}  # bare word -> (field, value)
    arguments: ClassVar[dict[str, Argument]] = {}  # every field, bare or KEY=VALUE
    _validator: ClassVar[SchemaValidator | None] = None  # per kind, read from the class's own __dict__

    @classmethod
    @functools.cache
    def required(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING)

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...]:
        """The words an argument accepts when it is a closed set (pool max|avg)."""
        return tuple(cls.arguments[name].schema.get("expected", ()))

    @classmethod
    def validate(cls, values: dict) -> LayerConfig:
        """Validate with the kind's schema; raises pydantic_core.ValidationError."""
        validator: SchemaValidator | None = cls.__dict__.get("_validator")
        if validator is None:
            required = cls.required()
            fields = {
                name: cs.typed_dict_field(argument.schema, required=name in required)
                for name, argument in cls.arguments.items()
            }
            validator = SchemaValidator(cs.typed_dict_schema(fields, extra_behavior="forbid"))
            cls._validator = validator  # built once per kind, on first use
        data = validator.validate_python(values)
        if data.get("activation") is not None:
            data["activation"] = Activation(**data["activation"])
        return cls(**data)

    @classmethod
    def preset(cls, word: str) -> dict:
        """Fields fixed by the word that names the kind (`relu` -> fn=relu)."""
        return {}

    @classmethod
    def positional_for(cls, word: str) -> tuple[str, ...]:
        return cls.positional

    @classmethod
    def name_prefix(cls, config: LayerConfig) -> str:
        return cls.prefix

    def short(self) -> str:
        return self.kind

    def infer(self, x: Shape) -> Inferred:
        return Inferred(output=x)

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        """A layer that reads several tensors (joins); `labels` name them for messages,
        `residual`: an add written as `residual { }` (its help speaks of a shortcut)."""
        return self.infer(shapes[0])

    def explain(self, x: Shape, y: Shape, pads: tuple[int, ...] | None) -> str:
        """How output y comes from input x, for the help line of a failed `->`."""
        return f"input {format_shape(x)} -> output {format_shape(y)}"

    @property
    def activation_name(self) -> str | None:
        return None

    def initial(self, suffix: str) -> float | None:
        """The value every element of a fresh tensor `suffix` starts at (a layer scale's
        1e-6, a PReLU's 0.25); None: drawn at random, or by the usual rule for its role."""
        return None

    # Joins read every tensor named on their line; all other kinds read exactly one.
    joins: ClassVar[bool] = False


def fit_defaults(config: LayerConfig, rank: int) -> None:
    """Sizes left at their 2-D defaults (stride 1, pad 0) take the rank of the kernel: a
    `conv 8 3x3x3` has stride (1, 1, 1). Only untouched defaults change, never a given value."""
    for name, default, per_axis in _size_defaults(type(config)):
        value = getattr(config, name)
        length = per_axis * rank
        if value is default and len(value) != length:
            object.__setattr__(config, name, (value[0],) * length)


_SIZE_DEFAULTS: dict[type, tuple[tuple[str, tuple, int], ...]] = {}


def _size_defaults(cls: type[LayerConfig]) -> tuple[tuple[str, tuple, int], ...]:
    """(field, its default, entries per axis: 2 for pads) of each field defaulting to a size;
    worked out once per kind (a config is made for every layer line)."""
    found = _SIZE_DEFAULTS.get(cls)
    if found is None:
        found = _SIZE_DEFAULTS[cls] = tuple(
            (f.name, f.default, 2 if cls.arguments[f.name].converter in PADS_CONVERTERS else 1)
            for f in dataclasses.fields(cls)
            if isinstance(f.default, tuple) and f.default
        )
    return found


PADS_CONVERTERS = ("padding", "pad_sizes")  # arguments written as begin/end per axis


def format_shape(shape: Shape) -> str:
    """(16, 5, 5) -> 16x5x5, the way shapes are written in a spec."""
    return "x".join(map(str, shape))


MAX_RANK = 3  # spatial axes: 1-D (sequences, audio), 2-D (images), 3-D (video, volumes)


AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


MAP_FORMS = {1: "CxL", 2: "CxHxW", 3: "CxDxHxW"}


def spatial_rank(x: Shape) -> int:
    """Spatial axes of a shape: 0 for a flat vector, 1 for CxL, 2 for CxHxW, 3 for CxDxHxW."""
    return len(x) - 1


def axis_names(rank: int) -> tuple[str, ...]:
    return AXIS_NAMES.get(rank, tuple(f"axis {i + 1}" for i in range(rank)))


def needs_spatial(x: Shape, what: str) -> Inferred | None:
    if len(x) >= 2:
        return None
    return Inferred(
        output=None,
        problems=[
            Problem(
                "error",
                "needs-spatial-input",
                f"{what} needs a map (CxL, CxHxW or CxDxHxW), but gets a flat vector of {x[0]}",
                "move it before `flatten`, or give `input` as CxHxW",
            )
        ],
    )
