"""Time per layer on a device, predicted from the checked network: each layer is a kernel
of a kind (conv, depthwise conv, dense, pool, elementwise, data movement), its work in
FLOPs and bytes moved, and a device profile that says what those cost.

A profile is either measured on this machine (`cnnspec calibrate`: kernels of each kind
timed with onnxruntime, one small least-squares fit per kind, t = c + a·FLOPs + b·bytes +
s·streamed bytes, the last the bytes of tensors too large for a core's cache)
or a roofline from a device's published peak FLOP/s and memory bandwidth, t = max(FLOPs /
peak, bytes / bandwidth): an estimate, said to be one. A layer is bound by compute or by
memory as its arithmetic intensity (FLOPs per byte) lies above or below the device's
ridge point, peak / bandwidth: why a depthwise conv is slow for its MACs.

Layers onnxruntime fuses into the conv or dense layer before them (batch norm, most
activations, a residual add and the activation after it) are predicted as that one
kernel, as nn-Meter predicts fused kernels."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..base.records import record
from ..infer import CheckedLayer, CheckedNetwork
from ..kinds import rule_for

FP32 = 4
KERNELS = ("conv", "depthwise", "dense", "pool", "elementwise", "movement")

# Published fp32 peaks (FLOP/s, without tensor cores) and memory bandwidth (bytes/s).
ROOFLINES = {
    "h100": ("NVIDIA H100 SXM", 67e12, 3.35e12),
    "a100": ("NVIDIA A100 40GB", 19.5e12, 1.555e12),
    "l4": ("NVIDIA L4", 30.3e12, 300e9),
    "t4": ("NVIDIA T4", 8.1e12, 320e9),
    "rtx4090": ("NVIDIA GeForce RTX 4090", 82.6e12, 1008e9),
    "jetson-orin": ("NVIDIA Jetson AGX Orin 64GB (GPU)", 5.3e12, 204.8e9),
    "rpi5": ("Raspberry Pi 5 (4x Cortex-A76, NEON)", 153.6e9, 17e9),
}
MAX_PROFILE_BYTES = 1 << 20
# A tensor larger than this does not stay in a core's cache between the kernel that writes
# it and the one that reads it: its bytes come from the shared cache or DRAM, at a few times
# the cost (a 1x1 conv on a 96x112x112 map ran at a third of the FLOP/s of one on 14x14).
CACHE_BYTES = 1 << 20
FIT_TERMS = 4  # c, a, b, s
LAUNCH = 5e-6  # seconds a roofline device spends starting one kernel


class UnknownDevice(Exception):
    """No profile by that name: the message lists what there is."""


@record
class Profile:
    name: str
    description: str
    calibrated: bool
    peak_flops: float  # FLOP/s
    bandwidth: float  # bytes/s
    fits: dict  # batch measured ("1", "8") -> kernel -> [c, a, b, s]: s, s per FLOP, per byte, per streamed byte
    overhead: float = 0.0  # seconds per inference beyond its kernels

    @property
    def ridge(self) -> float:
        return self.peak_flops / self.bandwidth

    def seconds(
        self, kernel: str, flops: float, nbytes: float, streamed: float = 0.0, batch: int = 1
    ) -> float:
        """A kernel's time. Calibrated: the fit at the batch measured, or between the two
        measured batches on a log scale (FLOPs and bytes already count the batch)."""
        if not self.calibrated:
            return LAUNCH + max(flops / self.peak_flops, nbytes / self.bandwidth)
        measured = sorted(int(b) for b in self.fits)
        low = max([b for b in measured if b <= batch], default=measured[0])
        high = min([b for b in measured if b >= batch], default=measured[-1])

        def at(b: int) -> float:
            c, a, w, s = self.fits[str(b)][kernel]
            return c + a * flops + w * nbytes + s * streamed

        if low == high:
            return at(low)
        share = (math.log(batch) - math.log(low)) / (math.log(high) - math.log(low))
        return (1 - share) * at(low) + share * at(high)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "calibrated": self.calibrated,
            "peak_flops": self.peak_flops,
            "bandwidth": self.bandwidth,
            "fits": self.fits,
            "overhead": self.overhead,
        }


def profile_folder() -> Path:
    """Where `cnnspec calibrate` keeps device profiles: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnspec" / "devices"


def _number(value, low: float = 0.0) -> bool:
    """A finite JSON number of at least `low` (a bool is not a number here)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
    )


def _profile_problem(profile: Profile) -> str | None:
    """Why a profile read from a file cannot be used (it is a file anyone may edit), or None."""
    if not (isinstance(profile.name, str) and isinstance(profile.description, str)):
        return "not a device profile (its name or description is not text)"
    if not (isinstance(profile.calibrated, bool) and isinstance(profile.fits, dict)):
        return "not a device profile (calibrated or fits of the wrong type)"
    if not (
        _number(profile.peak_flops, 1e-30) and _number(profile.bandwidth, 1e-30) and _number(profile.overhead)
    ):
        return "not a device profile (peak_flops and bandwidth must be positive numbers, overhead at least 0)"
    if not profile.calibrated:
        return None
    if not profile.fits or not all(
        isinstance(b, str) and b.isdecimal() and int(b) >= 1 for b in profile.fits
    ):
        return "not a device profile (fits must be keyed by batch sizes of 1 or more)"
    return next(filter(None, map(_fits_problem, profile.fits.values())), None)


def _fits_problem(fits) -> str | None:
    """Why one batch size's fits cannot be used, or None."""
    if not isinstance(fits, dict) or set(fits) != set(KERNELS):
        return "a profile of another cnnspec version"
    if any(not isinstance(fits[kind], list) or len(fits[kind]) != FIT_TERMS for kind in KERNELS):
        return "a profile of another cnnspec version"
    if not all(_number(value) for kind in KERNELS for value in fits[kind]):
        return "not a device profile (a fitted cost that is not a number of at least 0)"
    return None


def load_profile(device: str) -> Profile:
    """A calibrated profile (by name from the cache folder, or a .json path), else a named
    roofline. Raises UnknownDevice naming the choices."""
    path = Path(device) if device.endswith(".json") else profile_folder() / f"{device}.json"
    if path.is_file():
        try:
            if path.stat().st_size > MAX_PROFILE_BYTES:  # a profile is a few kilobytes
                raise ValueError("too large")
            data = json.loads(path.read_text(encoding="utf-8"))
            profile = Profile(**{key: data[key] for key in Profile.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnknownDevice(
                f"{path}: not a device profile ({type(exc).__name__}); run `cnnspec calibrate` again"
            ) from None
        problem = _profile_problem(profile)
        if problem:
            raise UnknownDevice(f"{path}: {problem}; run `cnnspec calibrate` again")
        return profile
    if device.lower() in ROOFLINES:
        description, peak, bandwidth = ROOFLINES[device.lower()]
        return Profile(device.lower(), description, False, peak, bandwidth, {})
    calibrated = sorted(p.stem for p in profile_folder().glob("*.json")) if profile_folder().is_dir() else []
    raise UnknownDevice(
        f"no device '{device}': calibrated here: {', '.join(calibrated) or 'none (run `cnnspec calibrate`)'}; "
        f"rooflines: {', '.join(ROOFLINES)}"
    )


# ------------------------------------------------------------------ kernels and fusion


def _kernel_of(entry: CheckedLayer) -> str | None:
    return rule_for(KERNEL_OF, entry.kind, "the latency estimate")(entry)


KERNEL_OF = {
    "conv": lambda e: "depthwise" if e.layer.config.groups > 1 else "conv",
    "deconv": lambda e: "conv",
    "dense": lambda e: "dense",
    "pool": lambda e: "pool",
    "globalpool": lambda e: "pool",
    "batchnorm": lambda e: "elementwise",
    "layernorm": lambda e: "elementwise",
    "scale": lambda e: "elementwise",
    "prelu": lambda e: "elementwise",
    "activation": lambda e: "elementwise",
    "add": lambda e: "elementwise",
    "multiply": lambda e: "elementwise",
    "concat": lambda e: "movement",
    "slice": lambda e: "movement",
    "shuffle": lambda e: "movement",
    "pad": lambda e: "movement",
    "upsample": lambda e: "movement",
    "flatten": lambda e: "movement",  # onnxruntime runs it as a kernel of its own
    "dropout": lambda e: None,  # removed at inference
    "droppath": lambda e: None,
}
FUSED_ACTIVATIONS = ("relu", "leakyrelu", "sigmoid", "tanh", "relu6", "hardsigmoid")


def _fuses_into(entry: CheckedLayer, group_kind: str) -> bool:
    """Whether onnxruntime runs this layer inside the conv/dense group it follows."""
    fn = getattr(entry.layer.config, "fn", None)
    if entry.kind == "batchnorm":
        return group_kind in ("conv", "depthwise")
    if entry.kind == "activation":
        return fn in FUSED_ACTIVATIONS
    if entry.kind == "add":  # a residual sum, on x86 (NCHWc) fused into the conv
        return group_kind in ("conv", "depthwise") and len(entry.inputs) == 2
    return entry.kind in ("dropout", "droppath")


@record
class LayerTime:
    name: str
    group: str  # the layer whose kernel runs this one: itself, or the conv it is fused into
    kernel: str | None  # None: no kernel of its own (fused, a reshape, removed at inference)
    seconds: float  # its group's time, on the group's first layer; 0 on the layers fused into it
    flops: float
    nbytes: float
    streamed: float  # of nbytes, those of tensors larger than a core's cache

    def bound(self, profile: Profile) -> str:
        if self.kernel is None or not self.seconds:
            return ""
        return "compute" if self.flops / max(self.nbytes, 1) >= profile.ridge else "memory"


@record
class Latency:
    profile: Profile
    batch: int
    layers: tuple[LayerTime, ...]

    @property
    def total(self) -> float:
        return sum(layer.seconds for layer in self.layers) + self.profile.overhead

    def groups(self) -> dict[str, float]:
        """Seconds per kernel, keyed by each layer of its group (how a profiler names it)."""
        by_group = {layer.group: layer.seconds for layer in self.layers if layer.seconds}
        return {layer.name: by_group[layer.group] for layer in self.layers if layer.group in by_group}


def _streamed(*sizes: float) -> float:
    return float(sum(size for size in sizes if size > CACHE_BYTES))


def _work(entry: CheckedLayer, network_inputs: dict[str, tuple], batch: int) -> tuple[float, float, float]:
    """(FLOPs, bytes moved, bytes streamed) of one layer on a batch: 2·MACs for conv and
    dense, else one operation per output value (a pool, one per window element); its inputs
    and output read and written once, its weights once."""
    out = math.prod(entry.output_shape)
    sizes = [math.prod(network_inputs[name]) for name in entry.inputs]
    ins = sum(sizes)
    if entry.macs:
        flops = 2.0 * entry.macs * batch
    elif entry.kind == "pool":
        kernel = entry.layer.config.kernel  # type: ignore[attr-defined]
        flops = float(out * math.prod(kernel) * batch)
    elif entry.kind in ("globalpool", "concat", "slice", "shuffle", "pad", "upsample"):
        flops = float(ins * batch) if entry.kind == "globalpool" else 0.0
    else:
        flops = float(out * batch)
    streamed = _streamed(*(FP32 * batch * size for size in (*sizes, out)), FP32 * entry.params)
    return flops, float(FP32 * (batch * (ins + out) + entry.params)), streamed


def predict(network: CheckedNetwork, profile: Profile, batch: int = 1) -> Latency:
    """Seconds per layer (per fused kernel) and in total for one run on a batch."""
    shapes: dict[str, tuple] = {"input": network.input_shape}
    readers: dict[str, int] = {}
    for entry in network.layers:
        shapes[entry.name] = entry.output_shape
        for name in entry.inputs:
            readers[name] = readers.get(name, 0) + 1
    open_groups: dict[str, str] = {}  # the last layer of a conv or dense group -> its first layer
    group_of: dict[str, str] = {}
    kernel_of: dict[str, str | None] = {}
    work: dict[str, list[float]] = {}  # group -> [flops, bytes, streamed]
    for entry in network.layers:
        flops, nbytes, streamed = _work(entry, shapes, batch)
        joined = next(
            (
                open_groups[name]
                for name in entry.inputs
                if name in open_groups
                and readers.get(name) == 1
                and _fuses_into(entry, kernel_of[open_groups[name]] or "")
            ),
            None,
        )
        if joined is not None:
            for name in entry.inputs:
                open_groups.pop(name, None)
            open_groups[entry.name] = joined
            group_of[entry.name], kernel_of[entry.name] = joined, None
            if entry.kind == "add":  # the residual is read too
                residual = FP32 * batch * math.prod(entry.output_shape)
                work[joined][1] += residual
                work[joined][2] += _streamed(residual)
            continue
        kernel = _kernel_of(entry)
        group_of[entry.name], kernel_of[entry.name] = entry.name, kernel
        if kernel is not None:
            work[entry.name] = [flops, nbytes, streamed]
        if kernel in ("conv", "depthwise", "dense"):
            open_groups[entry.name] = entry.name
    layers = []
    for entry in network.layers:
        group, kernel = group_of[entry.name], kernel_of[entry.name]
        flops, nbytes, streamed = work.get(entry.name, [0.0] * 3) if group == entry.name else [0.0] * 3
        seconds = profile.seconds(kernel, flops, nbytes, streamed, batch) if kernel is not None else 0.0
        layers.append(LayerTime(entry.name, group, kernel, seconds, flops, nbytes, streamed))
    return Latency(profile, batch, tuple(layers))
