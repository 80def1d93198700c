"""The layer kinds: one entry per kind, holding its arguments (each with the Pydantic
schema that validates it), its output-shape rule, its tensors (hence its parameter
count) and its multiply-accumulates. The ONNX lowering of each kind sits in
`onnx_export.py`.

Validation runs on pydantic-core, Pydantic's validation engine, with schemas written
out below: the same checks and messages as Pydantic models, without the ~70 ms that
importing pydantic and building model schemas adds to every `cnnspec check`.

Shapes are channels x height x width, `(C, H, W)`, or `(N,)` for a flat vector; the
batch dimension is never part of a shape here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NamedTuple, Optional, Union

from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from .records import record

Shape = tuple[int, ...]
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # top, bottom, left, right
Padding = Union[Literal["same"], Pads]  # `same` is resolved against the input size in `infer`
Matrix = tuple  # nested tuples of floats, checked against the tensor shape in `infer`

ACTIVATIONS = (
    "relu",
    "leakyrelu",
    "sigmoid",
    "tanh",
    "softmax",
    "elu",
    "gelu",
    "relu6",
    "silu",
    "swish",  # = silu
    "hardswish",
    "hardsigmoid",
)
DEFAULT_ALPHA = {"leakyrelu": 0.01, "elu": 1.0}
# He initialisation suits these; Glorot the others (see onnx_export / weights).
RELU_FAMILY = ("relu", "leakyrelu", "elu", "gelu", "relu6", "silu", "swish", "hardswish")


class Argument(NamedTuple):
    """How a spec argument becomes a value: `converter` (in resolve.py) turns the written
    form into Python, `schema` (pydantic-core) validates it."""

    converter: str
    schema: cs.CoreSchema


POSITIVE = cs.int_schema(gt=0)
PAIR = cs.tuple_schema([POSITIVE, POSITIVE])
PADDING = cs.union_schema(
    [cs.literal_schema(["same"]), cs.tuple_schema([cs.int_schema(ge=0)] * 4)],
    custom_error_type="padding",
    custom_error_message="pads must be 0 or more",
)
ACTIVATION = cs.typed_dict_schema(
    {
        "name": cs.typed_dict_field(cs.literal_schema(list(ACTIVATIONS))),
        "alpha": cs.typed_dict_field(cs.nullable_schema(cs.float_schema()), required=False),
    }
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
    """A sliding window along H and W, as the receptive-field walk needs it."""

    extent: tuple[int, int]  # dilation * (kernel - 1) + 1
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right, `same` already resolved


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

    @property
    def activation_name(self) -> str | None:
        return None

    # Joins read every tensor named on their line; all other kinds read exactly one.
    joins: ClassVar[bool] = False


# ------------------------------------------------------------------ window arithmetic


def resolve_same(n: int, extent: int, stride: int) -> tuple[int, int]:
    """Pads (begin, end) so that output = ceil(n / stride); odd pixel at the end (SAME_UPPER)."""
    out = -(-n // stride)
    total = max((out - 1) * stride + extent - n, 0)
    return total // 2, total - total // 2


def _same_help(hw: tuple[int, int], extent: tuple[int, int], stride: tuple[int, int], kernel) -> str:
    """Why `same` pads one side more, and the symmetric pad that keeps the output size.

    The total pad is (out - 1)·s + extent - n with out = ceil(n / s): odd at stride 1 only
    for an even kernel; at a larger stride it depends on the input size as well."""
    pads, causes = [], []
    for n, e, s in zip(hw, extent, stride):
        out = -(-n // s)
        total = max((out - 1) * s + e - n, 0)
        symmetric = -(-total // 2)
        pads.append(symmetric if (n + 2 * symmetric - e) // s + 1 == out else None)
        if total % 2:
            causes.append("the even kernel" if s == 1 else f"stride {s} on a size of {n}")
    cause = " and ".join(dict.fromkeys(causes))
    if None not in pads:
        text = str(pads[0]) if pads[0] == pads[1] else f"{pads[0]}x{pads[1]}"
        return (
            f"the odd total pad comes from {cause}; pad={text} pads both sides evenly and gives the same size"
        )
    if all(s == 1 for s in stride):
        return "use an odd kernel for symmetric padding"
    return f"the odd total pad comes from {cause}; an input size divisible by the stride pads evenly"


@record
class AxisResult:
    """A sliding window along one axis: the output size, its arithmetic, and the rows left out."""

    size: int
    arithmetic: str
    unused: int  # input rows/columns (not padding) that no window reaches


def window_axis(n: int, kernel: int, stride: int, dilation: int, p0: int, p1: int, ceil: bool) -> AxisResult:
    """floor((n + p0 + p1 - d*(f-1) - 1) / s) + 1, or the ceil form used by pooling."""
    extent = dilation * (kernel - 1) + 1
    span = n + p0 + p1 - extent
    rounding = "ceil" if ceil else "floor"
    if ceil and span >= 0:
        size = -(-span // stride) + 1
        # ONNX/PyTorch: a window that would start in the right padding is dropped.
        if (size - 1) * stride >= n + p0:
            size -= 1
        unused = 0
    else:
        size = span // stride + 1 if span >= 0 else math.floor(span / stride) + 1
        # After the last window, span % stride rows are left. A window narrower than its
        # stride leaves stride - extent rows after every window by design (a 1x1 conv with
        # stride 2 reads every other row): a remainder no wider than that gap is the same
        # pattern, not an edge the user loses.
        gap = max(stride - extent, 0)
        left = span % stride if span >= 0 else 0
        # The tail holds the right padding, and with a left padding wider than the input
        # it can reach into that too: count only the real rows in it.
        unused = max(min(left - p1, n), 0) if left > gap else 0
    arithmetic = f"{rounding}(({n} + {p0 + p1} - {extent}) / {stride}) + 1 = {size}"
    return AxisResult(size, arithmetic, unused)


def format_shape(shape: Shape) -> str:
    """(16, 5, 5) -> 16x5x5, the way shapes are written in a spec."""
    return "x".join(map(str, shape))


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _kernel(p: tuple[int, int]) -> str:
    return f"{p[0]}x{p[1]}"


class _Windowed(LayerConfig):
    """Shared by conv and pool: kernel, stride, padding, dilation over H and W."""

    # Whether uneven `same` padding changes the values (worth the asymmetric-same warning).
    uneven_same_matters: ClassVar[bool] = True

    def _stride(self) -> tuple[int, int]:
        return self.stride  # type: ignore[attr-defined]

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def _ceil(self) -> bool:
        return False

    def spatial(self, x: Shape, what: str) -> tuple[tuple[int, int] | None, Window, list[Problem]]:
        kernel: tuple[int, int] = self.kernel  # type: ignore[attr-defined]
        stride, dilation = self._stride(), self._dilation()
        extent = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
        _, h, w = x
        problems: list[Problem] = []
        pad = self.pad  # type: ignore[attr-defined]
        if pad == "same":
            top, bottom = resolve_same(h, extent[0], stride[0])
            left, right = resolve_same(w, extent[1], stride[1])
            if (top != bottom or left != right) and self.uneven_same_matters:
                problems.append(
                    Problem(
                        "warning",
                        "asymmetric-same",
                        f"pad=same with a {_kernel(kernel)} {what} and stride {_pair(stride)} on a "
                        f"{h}x{w} input pads unevenly: top/bottom {top}/{bottom}, left/right {left}/{right} "
                        "(the extra row/column goes at the end, as ONNX SAME_UPPER and "
                        "TensorFlow do; PyTorch's padding='same' differs)",
                        _same_help((h, w), extent, stride, kernel),
                        "pad",
                    )
                )
        else:
            top, bottom, left, right = pad
        pads = (top, bottom, left, right)
        window = Window(extent, stride, pads)
        axes, findings = [], []
        for n, k, s, d, p0, p1 in (
            (h, kernel[0], stride[0], dilation[0], top, bottom),
            (w, kernel[1], stride[1], dilation[1], left, right),
        ):
            result = window_axis(n, k, s, d, p0, p1, self._ceil())
            axes.append(result.size)
            findings.append(_axis_finding(what, kernel, n, k, s, d, p0 + p1, result))
        # Square maps usually go wrong the same way along both axes: say it once.
        if findings[0] and findings[0] == findings[1]:
            problems.append(findings[0].problem(x, "height and width", "row and column"))
        else:
            problems += [
                f.problem(x, axis, unit)
                for f, axis, unit in zip(findings, ("height", "width"), ("row", "column"))
                if f
            ]
        if any(p.severity == "error" for p in problems):
            return None, window, problems
        return (axes[0], axes[1]), window, problems


@record
class _AxisFinding:
    """What went wrong along one axis, worded so that both axes can share one message."""

    severity: Literal["error", "warning"]
    code: str
    template: str  # {axis}, {unit}, {units}, {verb} are filled in by `problem`
    help: str
    field: str
    count: int = 0

    def problem(self, x: Shape, axis: str, unit: str) -> Problem:
        units = unit if self.count == 1 else unit.replace("row", "rows").replace("column", "columns")
        verb = "is" if self.count == 1 and " and " not in unit else "are"
        text = self.template.format(axis=axis, unit=unit, units=units, verb=verb, shape=format_shape(x))
        return Problem(self.severity, self.code, text, self.help, self.field)


def _axis_finding(what, kernel, n, k, s, d, pad, result: AxisResult) -> _AxisFinding | None:
    if k > n + pad:
        return _AxisFinding(
            "error",
            "kernel-too-large",
            f"{what} {_kernel(kernel)} is larger than its padded input along the {{axis}} "
            f"({n} + {pad} padding): {result.arithmetic}",
            "use a smaller kernel, pad=same, or remove a pooling layer before it",
            "kernel",
        )
    if result.size <= 0:
        return _AxisFinding(
            "error",
            "empty-output",
            f"output {{axis}} would be {result.size}: {result.arithmetic} "
            f"(dilation {d} widens the {k}-wide {what} to {d * (k - 1) + 1})",
            "reduce dilation or add padding",
            "dilation" if d > 1 else "kernel",
        )
    if result.unused:
        return _AxisFinding(
            "warning",
            "dropped-pixels",
            f"the last {result.unused} {{units}} of the {{shape}} input {{verb}} never covered: "
            f"{result.arithmetic} (the floor drops the remainder)",
            "use pad=same, `ceil` (pooling), or an input size that fits the stride",
            "stride" if s != k else "kernel",
            result.unused,
        )
    return None


def _padding_text(pad: Padding) -> str:
    if pad == "same":
        return "pad=same"
    t, b, l_, r = pad
    if t == b == l_ == r:
        return "" if t == 0 else f"pad={t}"
    if t == b and l_ == r:
        return f"pad={t}x{l_}"
    return f"pad=({t},{b},{l_},{r})"


def _needs_spatial(x: Shape, what: str) -> Inferred | None:
    if len(x) == 3:
        return None
    return Inferred(
        output=None,
        problems=[
            Problem(
                "error",
                "needs-spatial-input",
                f"{what} needs a CxHxW input, but gets a flat vector of {x[0]}",
                "move it before `flatten`, or give `input` as CxHxW",
            )
        ],
    )


@record
class Activation:
    """An activation fused onto a conv or dense line (`relu`, `leakyrelu 0.2`)."""

    name: str
    alpha: Optional[float] = None

    def short(self) -> str:
        default = DEFAULT_ALPHA.get(self.name)
        return self.name if self.alpha in (None, default) else f"{self.name} {self.alpha:g}"


_ACTIVATION_FLAGS = {name: ("activation", name) for name in ACTIVATIONS}


# ------------------------------------------------------------------ the kinds


@record
class Conv(_Windowed):
    """`conv FILTERS KERNEL`: 2-D convolution (ONNX Conv, PyTorch Conv2d)."""

    kind: ClassVar[str] = "conv"
    prefix: ClassVar[str] = "conv"
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")
    flags: ClassVar[dict] = _ACTIVATION_FLAGS
    arguments: ClassVar[dict[str, Argument]] = {
        "filters": Argument("int", POSITIVE),
        "kernel": Argument("pair", PAIR),
        "stride": Argument("pair", PAIR),
        "pad": Argument("padding", PADDING),
        "dilation": Argument("pair", PAIR),
        "groups": Argument("int", POSITIVE),
        "bias": Argument("bool", cs.bool_schema()),
        "activation": Argument("activation", ACTIVATION),
        "weights": Argument("matrix", cs.any_schema()),
    }

    filters: int
    kernel: Pair
    stride: Pair = (1, 1)
    pad: Padding = (0, 0, 0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True
    activation: Optional[Activation] = None
    weights: Optional[Matrix] = None

    def _dilation(self) -> tuple[int, int]:
        return self.dilation

    @property
    def activation_name(self) -> str | None:
        return self.activation.name if self.activation else None

    def short(self) -> str:
        return _filter_text(self)

    def infer(self, x: Shape) -> Inferred:
        flat = _needs_spatial(x, "conv")
        if flat:
            return flat
        c = x[0]
        problems: list[Problem] = []
        problems += _groups_problems(c, self.filters, self.groups)
        hw, window, spatial_problems = self.spatial(x, "kernel")
        problems += spatial_problems
        # With groups that do not divide (an error above), count one channel per group, in
        # the weight and the MACs alike, so that the row stays consistent.
        per_group = max(c // self.groups, 1)
        tensors: dict[str, tuple[Shape, bool]] = {
            "weight": ((self.filters, per_group, *self.kernel), True),
        }
        if self.bias:
            tensors["bias"] = ((self.filters,), True)
        if hw is None:
            return Inferred(None, tensors, window=window, problems=problems)
        per_output = self.kernel[0] * self.kernel[1] * per_group
        macs = self.filters * hw[0] * hw[1] * per_output
        return Inferred((self.filters, *hw), tensors, macs, window, problems=problems)


def _filter_text(config: Conv | Deconv, extra: str = "") -> str:
    """`conv 16 3x3 stride=2 pad=1 ... relu`: the spec line of a conv or deconv, defaults left out."""
    parts = [f"{config.kind} {config.filters} {_kernel(config.kernel)}"]
    if config.stride != (1, 1):
        parts.append(f"stride={_pair(config.stride)}")
    parts += [_padding_text(config.pad), extra]
    if config.dilation != (1, 1):
        parts.append(f"dilation={_pair(config.dilation)}")
    if config.groups != 1:
        parts.append(f"groups={config.groups}")
    if not config.bias:
        parts.append("bias=false")
    if config.activation:
        parts.append(config.activation.short())
    return " ".join(p for p in parts if p)


def _groups_problems(channels: int, filters: int, groups: int) -> list[Problem]:
    if not (channels % groups or filters % groups):
        return []
    return [
        Problem(
            "error",
            "groups-mismatch",
            f"groups={groups} must divide both the {channels} input channels and the {filters} filters",
            _groups_help(channels, filters),
            "groups",
        )
    ]


def _groups_help(channels: int, filters: int) -> str:
    common = math.gcd(channels, filters)
    choices = [g for g in range(2, common + 1) if common % g == 0]
    if channels == filters:
        return f"groups={channels} makes it depthwise; divisors that work: 1, " + ", ".join(
            map(str, choices[:8])
        )
    return "groups that divide both: 1" + "".join(f", {g}" for g in choices[:8])


@record
class Pool(_Windowed):
    """`pool max|avg KERNEL`: max or average pooling (ONNX MaxPool/AveragePool)."""

    kind: ClassVar[str] = "pool"
    prefix: ClassVar[str] = "pool"
    positional: ClassVar[tuple[str, ...]] = ("mode", "kernel")
    flags: ClassVar[dict] = {"ceil": ("ceil", True)}
    arguments: ClassVar[dict[str, Argument]] = {
        "mode": Argument("word", cs.literal_schema(["max", "avg"])),
        "kernel": Argument("pair", PAIR),
        "stride": Argument("pair", cs.nullable_schema(PAIR)),
        "pad": Argument("padding", PADDING),
        "ceil": Argument("bool", cs.bool_schema()),
    }

    # Padding never enters a max, nor an average that leaves padding out of the count.
    uneven_same_matters: ClassVar[bool] = False

    mode: str  # max | avg
    kernel: Pair
    stride: Optional[Pair] = None  # default: the kernel
    pad: Padding = (0, 0, 0, 0)
    ceil: bool = False

    def _stride(self) -> tuple[int, int]:
        return self.stride or self.kernel

    def _ceil(self) -> bool:
        return self.ceil

    def short(self) -> str:
        parts = [f"pool {self.mode} {_pair(self.kernel)}"]
        if self.stride and self.stride != self.kernel:
            parts.append(f"stride={_pair(self.stride)}")
        parts.append(_padding_text(self.pad))
        if self.ceil:
            parts.append("ceil")
        return " ".join(p for p in parts if p)

    def infer(self, x: Shape) -> Inferred:
        flat = _needs_spatial(x, "pool")
        if flat:
            return flat
        hw, window, problems = self.spatial(x, "window")
        t, b, l_, r = window.pads
        if max(t, b) >= self.kernel[0] or max(l_, r) >= self.kernel[1]:
            # A window made only of padding pools nothing; ONNX Runtime rejects it too.
            problems.append(
                Problem(
                    "error",
                    "invalid-argument",
                    f"pool padding {_padding_text(self.pad)} must be smaller than the "
                    f"{_kernel(self.kernel)} window on every side",
                    "use pad=same or a smaller pad",
                    "pad",
                )
            )
            hw = None
        return Inferred(None if hw is None else (x[0], *hw), {}, 0, window, problems=problems)


@record
class GlobalPool(LayerConfig):
    """`globalpool max|avg`: one value per channel (ONNX GlobalMaxPool/GlobalAveragePool)."""

    kind: ClassVar[str] = "globalpool"
    prefix: ClassVar[str] = "gpool"
    positional: ClassVar[tuple[str, ...]] = ("mode",)
    arguments: ClassVar[dict[str, Argument]] = {"mode": Argument("word", cs.literal_schema(["max", "avg"]))}

    mode: str  # max | avg

    def short(self) -> str:
        return f"globalpool {self.mode}"

    def infer(self, x: Shape) -> Inferred:
        return _needs_spatial(x, "globalpool") or Inferred((x[0], 1, 1), covers_input=True)


@record
class BatchNorm(LayerConfig):
    """`batchnorm`: per-channel normalisation with learned scale and shift."""

    kind: ClassVar[str] = "batchnorm"
    prefix: ClassVar[str] = "bn"
    arguments: ClassVar[dict[str, Argument]] = {
        "eps": Argument("float", cs.float_schema(gt=0)),
        "momentum": Argument("float", cs.float_schema(gt=0, lt=1)),
    }

    eps: float = 1e-5
    momentum: float = 0.1  # PyTorch's convention, used in training

    def short(self) -> str:
        parts = ["batchnorm"]
        if self.eps != 1e-5:
            parts.append(f"eps={self.eps!r}")
        if self.momentum != 0.1:
            parts.append(f"momentum={self.momentum!r}")
        return " ".join(parts)

    def infer(self, x: Shape) -> Inferred:
        c: Shape = (x[0],)
        # As Keras counts: gamma and beta train, the running statistics do not.
        tensors = {
            "weight": (c, True),
            "bias": (c, True),
            "running_mean": (c, False),
            "running_var": (c, False),
        }
        return Inferred(x, tensors)


@record
class ActivationLayer(LayerConfig):
    """`relu`, `leakyrelu 0.1`, ... on a line of their own; the word is the function."""

    kind: ClassVar[str] = "activation"
    arguments: ClassVar[dict[str, Argument]] = {
        "fn": Argument("word", cs.literal_schema(list(ACTIVATIONS))),
        "alpha": Argument("float", cs.nullable_schema(cs.float_schema())),
    }

    fn: str
    alpha: Optional[float] = None

    @classmethod
    def preset(cls, word: str) -> dict:
        return {"fn": word}

    @classmethod
    def positional_for(cls, word: str) -> tuple[str, ...]:
        return ("alpha",) if word in DEFAULT_ALPHA else ()

    @classmethod
    def name_prefix(cls, config: LayerConfig) -> str:
        return config.fn  # type: ignore[attr-defined]

    @property
    def activation_name(self) -> str | None:
        return self.fn

    def short(self) -> str:
        return Activation(name=self.fn, alpha=self.alpha).short()


@record
class Dropout(LayerConfig):
    """`dropout RATE`: zeroes a fraction of the values while training; the identity otherwise."""

    kind: ClassVar[str] = "dropout"
    prefix: ClassVar[str] = "dropout"
    positional: ClassVar[tuple[str, ...]] = ("rate",)
    arguments: ClassVar[dict[str, Argument]] = {"rate": Argument("float", cs.float_schema(ge=0, lt=1))}

    rate: float

    def short(self) -> str:
        return f"dropout {self.rate:g}"


@record
class Flatten(LayerConfig):
    """`flatten`: CxHxW to one vector, in C, H, W order."""

    kind: ClassVar[str] = "flatten"
    prefix: ClassVar[str] = "flatten"

    def infer(self, x: Shape) -> Inferred:
        return Inferred((math.prod(x),), covers_input=True)


@record
class Dense(LayerConfig):
    """`dense UNITS`: fully connected (ONNX Gemm, PyTorch Linear)."""

    kind: ClassVar[str] = "dense"
    prefix: ClassVar[str] = "dense"
    positional: ClassVar[tuple[str, ...]] = ("units",)
    flags: ClassVar[dict] = _ACTIVATION_FLAGS
    arguments: ClassVar[dict[str, Argument]] = {
        "units": Argument("int", POSITIVE),
        "bias": Argument("bool", cs.bool_schema()),
        "activation": Argument("activation", ACTIVATION),
        "weights": Argument("matrix", cs.any_schema()),
    }

    units: int
    bias: bool = True
    activation: Optional[Activation] = None
    weights: Optional[Matrix] = None

    @property
    def activation_name(self) -> str | None:
        return self.activation.name if self.activation else None

    def short(self) -> str:
        parts = [f"dense {self.units}"]
        if not self.bias:
            parts.append("bias=false")
        if self.activation:
            parts.append(self.activation.short())
        return " ".join(parts)

    def infer(self, x: Shape) -> Inferred:
        problems = []
        n = math.prod(x)
        if len(x) != 1:
            problems.append(
                Problem(
                    "error",
                    "needs-flatten",
                    f"dense gets a {format_shape(x)} tensor, not a vector",
                    f"add `flatten` before it: it would give {n:,} inputs ({format_shape(x)})",
                )
            )
        tensors: dict[str, tuple[Shape, bool]] = {"weight": ((self.units, n), True)}
        if self.bias:
            tensors["bias"] = ((self.units,), True)
        return Inferred(
            (self.units,), tensors, n * self.units, problems=problems, in_features=n, covers_input=True
        )


@record
class Deconv(LayerConfig):
    """Transposed convolution (ONNX ConvTranspose, PyTorch ConvTranspose2d)."""

    kind: ClassVar[str] = "deconv"
    prefix: ClassVar[str] = "deconv"
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel")
    flags: ClassVar[dict] = _ACTIVATION_FLAGS
    arguments: ClassVar[dict[str, Argument]] = {
        "filters": Argument("int", POSITIVE),
        "kernel": Argument("pair", PAIR),
        "stride": Argument("pair", PAIR),
        "pad": Argument("padding", PADDING),
        "output_pad": Argument("pair", cs.tuple_schema([cs.int_schema(ge=0)] * 2)),
        "dilation": Argument("pair", PAIR),
        "groups": Argument("int", POSITIVE),
        "bias": Argument("bool", cs.bool_schema()),
        "activation": Argument("activation", ACTIVATION),
    }

    filters: int
    kernel: Pair
    stride: Pair = (1, 1)
    pad: Padding = (0, 0, 0, 0)  # `same` is refused in infer, with the reason
    output_pad: tuple[int, int] = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = True
    activation: Optional[Activation] = None

    @property
    def activation_name(self) -> str | None:
        return self.activation.name if self.activation else None

    def short(self) -> str:
        extra = f"output_pad={_pair(self.output_pad)}" if self.output_pad != (0, 0) else ""
        return _filter_text(self, extra)

    def infer(self, x: Shape) -> Inferred:
        flat = _needs_spatial(x, "deconv")
        if flat:
            return flat
        c, h, w = x
        problems: list[Problem] = []
        if self.pad == "same":
            return Inferred(
                None,
                problems=[
                    Problem(
                        "error",
                        "invalid-argument",
                        "deconv takes explicit pads (P, PHxPW or (top,bottom,left,right)), not same",
                        _deconv_scale_help(self.kernel, self.stride, self.dilation),
                        "pad",
                    )
                ],
            )
        problems += _groups_problems(c, self.filters, self.groups)
        for axis, (op, s) in enumerate(zip(self.output_pad, self.stride)):
            if op >= max(s, self.dilation[axis]):
                problems.append(
                    Problem(
                        "error",
                        "invalid-argument",
                        f"output_pad {op} must be smaller than the stride or the dilation",
                        "output_pad only picks among the sizes a stride allows",
                        "output_pad",
                    )
                )
                break
        t, b, l_, r = self.pad
        sizes = []
        for n, k, s, d, p0, p1, op in (
            (h, self.kernel[0], self.stride[0], self.dilation[0], t, b, self.output_pad[0]),
            (w, self.kernel[1], self.stride[1], self.dilation[1], l_, r, self.output_pad[1]),
        ):
            size = (n - 1) * s - p0 - p1 + d * (k - 1) + op + 1
            if size <= 0 and not problems:
                problems.append(
                    Problem(
                        "error",
                        "empty-output",
                        f"output size would be {size}: ({n} - 1)·{s} - {p0 + p1} + {d}·({k} - 1) + {op} + 1",
                        "reduce the padding",
                        "pad",
                    )
                )
            sizes.append(size)
        tensors: dict[str, tuple[Shape, bool]] = {
            "weight": ((c, max(self.filters // self.groups, 1), *self.kernel), True),
        }
        if self.bias:
            tensors["bias"] = ((self.filters,), True)
        if any(p.severity == "error" for p in problems):
            return Inferred(None, tensors, problems=problems)
        macs = c * h * w * self.filters * self.kernel[0] * self.kernel[1] // self.groups
        return Inferred((self.filters, sizes[0], sizes[1]), tensors, macs, problems=problems)


def _deconv_scale_help(kernel: Pair, stride: Pair, dilation: Pair) -> str:
    """The pads that make a deconv multiply the size by its stride, as `same` would:
    (n-1)·s - 2p + d·(k-1) + 1 + output_pad = n·s, so 2p = d·(k-1) + 1 - s + output_pad."""
    pads: list[int] = []
    extras: list[int] = []
    for k, s, d in zip(kernel, stride, dilation):
        extent = d * (k - 1) + 1
        if extent < s:
            return "a stride-S deconv with kernel S and no padding multiplies the size by S"
        extra = (extent - s) % 2
        if extra >= max(s, d):  # output_pad must stay below the stride or the dilation
            return "a stride-S deconv with kernel S and no padding multiplies the size by S"
        pads.append((extent - s + extra) // 2)
        extras.append(extra)
    pad, output_pad = _pair((pads[0], pads[1])), _pair((extras[0], extras[1]))
    return f"to multiply the size by {_pair(stride)}: pad={pad}" + (
        f" output_pad={output_pad}" if any(extras) else ""
    )


@record
class Upsample(LayerConfig):
    """`upsample 2 [nearest|bilinear]`: H and W times SCALE (ONNX Resize, F.interpolate)."""

    kind: ClassVar[str] = "upsample"
    prefix: ClassVar[str] = "up"
    positional: ClassVar[tuple[str, ...]] = ("scale", "mode")
    arguments: ClassVar[dict[str, Argument]] = {
        "scale": Argument("int", POSITIVE),
        "mode": Argument("word", cs.literal_schema(["nearest", "bilinear"])),
    }

    scale: int
    mode: str = "nearest"

    def short(self) -> str:
        return f"upsample {self.scale}" + ("" if self.mode == "nearest" else f" {self.mode}")

    def infer(self, x: Shape) -> Inferred:
        flat = _needs_spatial(x, "upsample")
        if flat:
            return flat
        return Inferred((x[0], x[1] * self.scale, x[2] * self.scale))


def _listed(labels: list[str], shapes: list[Shape]) -> str:
    return ", ".join(f"{label} {format_shape(shape)}" for label, shape in zip(labels, shapes))


@record
class _Join(LayerConfig):
    """What every join shares: several inputs, no tensors, no arguments of its own."""

    joins: ClassVar[bool] = True

    def infer(self, x: Shape) -> Inferred:  # one input: passes it through
        return Inferred(output=x)


@record
class Add(_Join):
    """Element-wise sum of equally shaped tensors (ResNet)."""

    kind: ClassVar[str] = "add"
    prefix: ClassVar[str] = "add"

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        if len(set(shapes)) == 1:
            return Inferred(shapes[0])
        return Inferred(
            None,
            problems=[
                Problem(
                    "error",
                    "merge-shape-mismatch",
                    f"add needs equal shapes, but gets {_listed(labels, shapes)}",
                    _residual_help(shapes) if residual else _projection_help(shapes),
                )
            ],
        )


def _projection(shapes: list[Shape]) -> str | None:
    """The 1x1 conv that turns the first input that differs into the first input's shape
    (channels, and the stride that shrinks it), or None when no such conv does."""
    target, other = shapes[0], next(s for s in shapes if s != shapes[0])
    if len(target) == 3 and len(other) == 3 and other[1] >= target[1] > 0:
        stride = other[1] // target[1]
        return f"conv {target[0]} 1x1" + (f" stride={stride}" if stride > 1 else "")
    return None


def _residual_help(shapes: list[Shape]) -> str:
    """`residual`: the first input is the body's end, the other the shortcut's."""
    conv = _projection(shapes)
    if conv is None:
        return "make the shapes match"
    return f"when the body changes the shape, project the input: `shortcut {{ {conv} }}` (or make the shapes match)"


def _projection_help(shapes: list[Shape]) -> str:
    """`add a b` and `add { } { }`: what gives the input that differs the first one's shape."""
    conv = _projection(shapes)
    if conv is None:
        return "make the shapes match"
    return (
        f"give every input the first one's shape {format_shape(shapes[0])}: e.g. `{conv}` on the one that "
        "differs (`from NAME` reads it)"
    )


@record
class Concat(_Join):
    """Concatenation along the channels (or of vectors)."""

    kind: ClassVar[str] = "concat"
    prefix: ClassVar[str] = "concat"

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        ranks = {len(s) for s in shapes}
        if ranks == {1}:
            return Inferred((sum(s[0] for s in shapes),))
        if ranks == {3} and len({s[1:] for s in shapes}) == 1:
            return Inferred((sum(s[0] for s in shapes), *shapes[0][1:]))
        return Inferred(
            None,
            problems=[
                Problem(
                    "error",
                    "merge-shape-mismatch",
                    f"concat joins along the channels and needs equal height and width, but gets "
                    f"{_listed(labels, shapes)}",
                    "resize one branch (pool, stride or upsample) so that H and W match",
                )
            ],
        )


@record
class Multiply(_Join):
    """Element-wise product; a Cx1x1 gate broadcasts over H and W (squeeze-and-excitation)."""

    kind: ClassVar[str] = "multiply"
    prefix: ClassVar[str] = "mul"

    def infer_many(self, shapes: list[Shape], labels: list[str], residual: bool = False) -> Inferred:
        full = max(shapes, key=lambda s: (len(s), math.prod(s)))
        for shape in shapes:
            gate = len(shape) == 3 and len(full) == 3 and shape == (full[0], 1, 1)
            if shape != full and not gate:
                return Inferred(
                    None,
                    problems=[
                        Problem(
                            "error",
                            "merge-shape-mismatch",
                            f"multiply needs equal shapes or a Cx1x1 gate with the same C, but gets "
                            f"{_listed(labels, shapes)}",
                            f"a gate for {format_shape(full)} is {full[0]}x1x1 (globalpool, then conv {full[0]} 1x1)"
                            if len(full) == 3
                            else "make the shapes match",
                        )
                    ],
                )
        return Inferred(full)


KINDS: dict[str, type[LayerConfig]] = {
    cls.kind: cls
    for cls in (
        Conv,
        Pool,
        GlobalPool,
        BatchNorm,
        Dropout,
        Flatten,
        Dense,
        Deconv,
        Upsample,
        Add,
        Concat,
        Multiply,
    )
}
KINDS.update({fn: ActivationLayer for fn in ACTIVATIONS})
