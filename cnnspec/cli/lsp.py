"""`cnnspec lsp`: the language server."""

from __future__ import annotations

from .common import EXIT_OK, UsageError


def cmd_lsp(args) -> int:
    """The language server, on stdin and stdout."""
    try:
        import pygls  # noqa: F401
    except ImportError:
        raise UsageError("the language server needs pygls: pip install 'cnnspec[lsp]'") from None
    from ..views.lsp import serve

    serve()
    return EXIT_OK


def add_parser(sub) -> None:
    lsp = sub.add_parser(
        "lsp",
        help="a language server for editors (stdio)",
        description="Speak the Language Server Protocol on stdin/stdout: diagnostics as you type, hover "
        "with shapes and costs, go to definition, completion. Needs the lsp extra (pygls).",
    )
    lsp.set_defaults(func=cmd_lsp)
