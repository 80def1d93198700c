"""`cnnspec` command line. Thin: parse arguments, call the library, print, exit.

Exit codes, as linters use them: 0 clean (warnings allowed), 1 the spec or the data has
errors, 2 usage errors, unreadable files or a missing optional dependency.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import warnings

from .. import __version__
from .common import EXIT_ERRORS, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, UsageError, say


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C so every `finally` removes its temporary files."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """numpy's and Pillow's warnings as one cnnspec line, without their source paths."""
    say("warning", str(message))


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil (and with it bz2, lzma,
    fnmatch): argparse's formatter asks on every add_argument, so every command paid it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):  # stdout closed, or not a terminal
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, **options) -> None:
        if options.get("width") is None:
            options["width"] = _terminal_columns() - 2  # the margin argparse leaves
        super().__init__(prog, **options)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with the formatter above; subcommands inherit it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


# Each subcommand's module (add_parser and cmd_NAME), in the order `cnnspec --help` lists them.
COMMANDS = {
    "check": "check",
    "fmt": "fmt",
    "draw": "draw",
    "export": "export",
    "run": "run",
    "bench": "bench",
    "calibrate": "calibrate",
    "import": "import_",
    "train": "train",
    "evaluate": "evaluate",
    "lsp": "lsp",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; given the arguments, only the subcommand they name gets its
    options (building all ten is 3% of the instructions of `cnnspec check specs/lenet5.cnn`)."""
    parser = _ArgumentParser(
        prog="cnnspec",
        description="Check, format, draw, export, run, import and train convolutional networks written as .cnn specs.",
    )
    parser.add_argument("--version", action="version", version=f"cnnspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, module in COMMANDS.items():
        if wanted in (None, name):  # only the command named is imported
            importlib.import_module(f"{__name__}.{module}").add_parser(sub)
    return parser


def _import_and_freeze(modules: tuple[str, ...]) -> None:
    """Import a command's modules, then put every object made so far out of the cyclic
    GC's reach (gc.freeze) and turn it back on. Why: importing the check path adds some
    15,000 objects the GC tracks, all alive until exit; collections while they are made,
    and the one at exit, walk them. Paused until here, then frozen, a whole `cnnspec check
    specs/lenet5.cnn` runs 9% fewer instructions (436M against 398M, valgrind), `fmt` 7%,
    `draw` 20%. (Not `export`: importing numpy and onnx this way made it no faster.)"""
    for name in modules:
        importlib.import_module(name)
    gc.freeze()
    gc.enable()


def _catch_termination() -> dict:
    """SIGTERM and SIGHUP raise Terminated; the handlers they replace, to put back."""
    handlers = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            try:
                handlers[signum] = signal.signal(signum, _terminate)
            except ValueError:  # not the main thread (an embedding program): leave them
                pass
    return handlers


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # cnnspec is the process; a library caller's GC is left alone
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        if sys.stderr is not None:
            print("cnnspec: error: standard output is closed", file=sys.stderr)
        return EXIT_USAGE
    if program:
        gc.disable()  # until the command's modules are in: see _import_and_freeze
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    handlers = _catch_termination()
    try:
        if program:
            _import_and_freeze(getattr(args, "modules", ()))
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = args.func(args)
        if not sys.stdout.closed:  # (the language server closes it when the client says exit)
            sys.stdout.flush()  # here, not at exit: a full disk is this command's error to report
        return code
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        return EXIT_OK
    except (UsageError, KeyboardInterrupt, Terminated, MemoryError, OSError) as exc:
        return _failed(exc)
    except Exception as exc:  # a bug: say so in one line; CNNSPEC_DEBUG=1 shows the traceback
        if os.environ.get("CNNSPEC_DEBUG"):
            raise
        return _internal_error(exc)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _failed(exc: BaseException) -> int:
    """What stopped a command that is not a bug in cnnspec: one line, and its exit code."""
    if isinstance(exc, UsageError):
        say("error", str(exc))
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        say("error", "interrupted; no output was written")
        return 130
    if isinstance(exc, Terminated):
        say("error", f"stopped by signal {exc.signum}; no output was written")
        return 128 + exc.signum
    if isinstance(exc, MemoryError):
        say("error", "out of memory (is the network or the batch too large for this machine?)")
        return EXIT_ERRORS
    assert isinstance(exc, OSError)
    if exc.errno is None:  # raised by cnnspec's own code without a system error: a bug
        return _internal_error(exc)
    # The machine refused a read or a write: a full disk, a closed or failing output.
    where = exc.filename if exc.filename is not None else "standard output"
    say("error", f"{where}: {exc.strerror or exc}")
    _quiet_stdout()
    return EXIT_USAGE


def _quiet_stdout() -> None:
    """After a failed write to standard output, what is still buffered is dropped instead of
    failing again when Python exits."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _internal_error(exc: BaseException) -> int:
    say(
        "internal error",
        f"{type(exc).__name__}: {str(exc)[:500]} (please report it; CNNSPEC_DEBUG=1 shows the traceback)",
    )
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
