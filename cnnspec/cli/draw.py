"""`cnnspec draw`: a diagram of a network (SVG, HTML or PNG)."""

from __future__ import annotations

from pathlib import Path

from .common import EXIT_ERRORS, EXIT_OK, UsageError, checked_network, output_target, safe_text
from .options import batch_size


def cmd_draw(args) -> int:
    """The network as a diagram: .svg, .png or .html, chosen by the output's suffix."""
    from ..base.files import write_atomically
    from ..views.draw import layout, to_html, to_png, to_svg

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".html"):
        raise UsageError(f"{args.output}: draw writes .svg, .png or .html")
    network, result = checked_network(args.file, args.network, args)
    if network is None:
        return EXIT_ERRORS
    final = output_target(args.output, tuple(result.files))
    diagram = layout(network, args.collapse)
    if args.heat:
        _heat(diagram, network, args)

    def write(temp: Path) -> None:
        if suffix == ".png":
            try:
                to_png(diagram, temp)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        else:
            temp.write_text(to_svg(diagram) if suffix == ".svg" else to_html(diagram), encoding="utf-8")

    try:
        write_atomically(final, write)
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {safe_text(args.output)} ({diagram.width}x{diagram.height}, {len(diagram.boxes)} boxes)")
    return EXIT_OK


def _heat(diagram, network, args) -> None:
    """--heat time (predicted on --latency DEVICE) or memory (kept for backward, per image)."""
    from ..cost import training_memory
    from ..cost.latency import UnknownDevice, load_profile, predict
    from ..views.draw import add_heat
    from ..views.report import nbytes

    if args.heat == "memory":
        kept = {row.name: float(row.saved_per_image) for row in training_memory(network, 1).layers}
        add_heat(diagram, diagram.owner, kept, lambda value: f"keeps {nbytes(int(value))}")
        return
    try:
        profile = load_profile(args.latency)
    except UnknownDevice as exc:
        raise UsageError(f"--latency {safe_text(args.latency)}: {exc}") from None
    times = {row.name: row.seconds for row in predict(network, profile, args.batch).layers}
    add_heat(
        diagram, diagram.owner, times, lambda s: f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"
    )


def add_parser(sub) -> None:
    draw = sub.add_parser(
        "draw",
        help="draw the network: SVG, PNG or HTML",
        description="Draw a checked network top-down: one box per layer (kind, arguments, output shape, "
        "parameters), arrows labelled with tensor shapes, block instances framed, branches side by side, "
        "frozen layers grey. The output's suffix picks the format.",
    )
    draw.add_argument("file", metavar="FILE.cnn")
    draw.add_argument("-o", "--output", required=True, metavar="OUT.svg|OUT.png|OUT.html")
    draw.add_argument("--network", metavar="NAME", help="the network to draw when the file has several")
    draw.add_argument("--collapse", action="store_true", help="one box per block instance")
    draw.add_argument(
        "--heat",
        choices=("time", "memory"),
        help="fill each box by what it costs: its predicted time (on --latency DEVICE, at --batch) or "
        "the activations it keeps for backward per image; the costliest box is darkest",
    )
    draw.add_argument(
        "--latency",
        metavar="DEVICE",
        default="this-cpu",
        help="the device for --heat time (default this-cpu)",
    )
    draw.add_argument("--batch", type=batch_size, default=1, help="the batch for --heat time (default 1)")
    draw.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    draw.set_defaults(func=cmd_draw, modules=("cnnspec.views.draw", "cnnspec.views.report"))
