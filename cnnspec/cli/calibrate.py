"""`cnnspec calibrate`: measure this machine for `check --latency`."""

from __future__ import annotations

import json
import re
import time

from .common import EXIT_OK, UsageError, safe_text
from .options import thread_count


def cmd_calibrate(args) -> int:
    from ..base.files import write_atomically
    from ..cost.latency import KERNELS, ROOFLINES, profile_folder
    from ..deploy.calibrate import calibrate

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.name) or args.name.lower() in ROOFLINES:
        raise UsageError(
            f"{safe_text(args.name)}: a device name is letters, digits, '.', '_' and '-', and not a named roofline"
        )
    started = time.perf_counter()
    profile = calibrate(args.name, args.threads, quick=args.quick)
    spent = time.perf_counter() - started
    path = profile_folder() / f"{args.name}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temp: temp.write_text(json.dumps(profile.to_json(), indent=1)))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"calibrated {args.name} in {spent:.0f} s: {profile.description}")
    print(f"{'kernel':<12} {'batch':>5} {'fixed':>9} {'GFLOP/s':>9} {'GB/s':>8} {'streamed GB/s':>14}")
    for batch, fits in profile.fits.items():
        for kind in KERNELS:
            c, a, b, s = fits[kind]
            rates = [f"{1e-9 / v:.1f}" if v else "-" for v in (a, b, s)]
            print(f"{kind:<12} {batch:>5} {c * 1e6:>6.1f} µs {rates[0]:>9} {rates[1]:>8} {rates[2]:>14}")
    print(f"wrote {safe_text(str(path))}; use it with: cnnspec check SPEC --latency {args.name}")
    return EXIT_OK


def add_parser(sub) -> None:
    command = sub.add_parser(
        "calibrate",
        help="time this machine for check --latency",
        description="Time kernels of each kind (convs of many shapes, depthwise convs, dense "
        "layers, pools, elementwise functions, data movement) with onnxruntime on this machine at "
        "batch 1 and 8, fit t = c + a·FLOPs + b·bytes + s·bytes of tensors larger than a core's cache per kind, and save the device profile in the "
        "user's cache folder ($XDG_CACHE_HOME/cnnspec/devices, else ~/.cache/cnnspec/devices).",
    )
    command.add_argument("name", nargs="?", default="this-cpu", help="the profile's name (default this-cpu)")
    command.add_argument("--threads", type=thread_count, help="onnxruntime threads (default: its own choice)")
    command.add_argument(
        "--quick", action="store_true", help="one sample per kernel kind: a rough profile in seconds"
    )
    command.set_defaults(func=cmd_calibrate)
