"""Every file cnnspec reads or writes goes through here.

Reading: a spec (or a `use`d file) must be a regular file of at most MAX_SOURCE_BYTES,
read with that bound, so `/dev/zero` or a FIFO never hangs a check, and a binary file
(`/proc/self/environ`) is refused before any of it is echoed.

Writing: outputs appear only when complete (a temporary file beside the target, then a
rename); they are regular files only (never a device node or a FIFO, which a rename would
replace), and never one of the files the command read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

MAX_SOURCE_BYTES = 1024 * 1024  # ~30,000 lines; a 10,000-layer generated spec is ~0.3 MB


class UnreadableFile(OSError):
    """A file cnnspec was asked to read cannot be used; the message names the reason.
    An OSError, so that callers of `cnnspec.check` that caught OSError still do."""


class BadOutput(Exception):
    """An output path cannot be written safely; the message names the reason."""


def _stat(path: Path, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except PermissionError:
        raise UnreadableFile("permission denied") from None
    except OSError as exc:  # ELOOP (a symlink loop), ENAMETOOLONG, ...
        raise UnreadableFile(exc.strerror or type(exc).__name__) from None


def read_source(path: str | Path, limit: int = MAX_SOURCE_BYTES) -> str:
    """The text of a spec file: a regular file, at most `limit` bytes, UTF-8 (a BOM is
    dropped), without NUL bytes. Raises UnreadableFile."""
    info = _stat(Path(path), "spec")
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFile("is a directory, not a .cnn file")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile("not a regular file (a device, FIFO or socket is never read as a spec)")
    if info.st_size > limit:
        raise UnreadableFile(f"too large for a spec ({info.st_size:,} bytes; the limit is {limit:,})")
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)  # /proc files report size 0: bound the read itself
    except OSError as exc:
        raise UnreadableFile(exc.strerror or type(exc).__name__) from None
    return _spec_text(data, limit)


def read_source_stream(stream: BinaryIO, limit: int = MAX_SOURCE_BYTES) -> str:
    """The text of a spec piped in (`cnnspec check -`): the same rules as a file's, and
    the same bound on what is read. Raises UnreadableFile."""
    try:
        data = stream.read(limit + 1)
    except OSError as exc:
        raise UnreadableFile(exc.strerror or type(exc).__name__) from None
    return _spec_text(data, limit)


def _spec_text(data: bytes, limit: int) -> str:
    if len(data) > limit:
        raise UnreadableFile(f"too large for a spec (more than {limit:,} bytes)")
    if b"\0" in data:
        raise UnreadableFile("not a text file (it holds NUL bytes; expected a .cnn spec)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFile("not a UTF-8 text file (expected a .cnn spec)") from None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path (existing or not), or the
    same inode (a hard link)."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
        return _same_file(os.stat(a), os.stat(b))
    except (OSError, RuntimeError):  # one does not exist yet, or a symlink loop
        return False


def target(out: str | Path, protect: tuple[Path, ...] = ()) -> Path:
    """The resolved output path, checked before any work is done. Raises BadOutput when
    it is one of `protect` (the command's inputs, hard links included), not a regular
    file, in a missing folder, or in a folder this user cannot write to."""
    try:
        resolved = Path(out).resolve()
    except (RuntimeError, OSError):  # a symlink loop
        raise BadOutput("cannot resolve the path (a symbolic link loop?)") from None
    try:
        existing = os.stat(resolved)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise BadOutput(exc.strerror or type(exc).__name__) from None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise BadOutput("is a directory; give a file name")
        if not stat.S_ISREG(existing.st_mode):
            raise BadOutput("not a regular file (cnnspec never replaces a device node, FIFO or socket)")
        for path in protect:
            try:
                info = os.stat(path)
            except OSError:
                continue
            if _same_file(existing, info):
                raise BadOutput(f"refusing to overwrite {path}, which this command reads")
            if stat.S_ISDIR(info.st_mode) and resolved.is_relative_to(Path(path).resolve()):
                raise BadOutput(f"refusing to overwrite a file inside {path}, which this command reads")
    if not resolved.parent.is_dir():
        raise BadOutput(f"{Path(out).parent}: no such folder")
    if not os.access(resolved.parent, os.W_OK | os.X_OK):
        raise BadOutput(f"{Path(out).parent}: folder is not writable")
    return resolved


def temporary(final: Path) -> Path:
    """An empty temporary file beside `final`, with the permissions a new file gets."""
    import tempfile  # only commands that write pay for it

    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; an export is an ordinary file
    return Path(name)


def write_atomically(final: Path, write: Callable[[Path], object], keep_mode_of: Path | None = None) -> None:
    """`write(temp)` fills a temporary file beside `final`, which then replaces `final` in
    one rename: a reader never sees half a file, and an error or an interruption (Ctrl-C,
    SIGTERM) leaves the old file and no temporary one."""
    import shutil

    temp = temporary(final)
    try:
        write(temp)
        if keep_mode_of is not None:
            shutil.copymode(keep_mode_of, temp)
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def rewrite(path: Path, text: str) -> None:
    """New contents for a file the user named, keeping what they made of it: through a
    symbolic link the target is written (the link stays a link), and a file with several
    hard links is written in place so that every name sees the new text. The new text is
    complete in a temporary file first; an in-place write that fails says where it is."""
    final = path.resolve()
    data = text.encode("utf-8")
    if os.stat(final).st_nlink <= 1:
        write_atomically(final, lambda temp: temp.write_bytes(data), final)
        return
    temp = temporary(final)
    temp.write_bytes(data)
    try:
        with open(final, "r+b") as stream:
            stream.truncate(0)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror}; the formatted text is in {temp}") from None
    temp.unlink()


MAX_NPY_HEADER = 10_000  # bytes of an .npy header (numpy's own default limit)


def damaged_array_file_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged or crafted .npy or .npz raises: a bad header (numpy parses it
    with tokenize and ast: TokenError, SyntaxError, ValueError), a truncated or corrupt
    deflate stream (zlib.error), a compression method or encryption zipfile does not
    support (NotImplementedError, RuntimeError). (A function: `check` never imports zipfile.)"""
    import tokenize
    import zipfile
    import zlib

    return (
        ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error,
        NotImplementedError, RuntimeError,
    )  # fmt: skip


def npz_sizes(path: str | Path, names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Bytes each array of an .npz (or only `names`) will take once read, from the .npy
    headers alone: nothing is inflated. Raises ValueError for a header that is malformed,
    too long, or declares more data than its member holds (a zip stores the true size)."""
    try:
        return _npz_sizes(path, names)
    except damaged_array_file_errors() as exc:
        raise ValueError(f"not a readable .npz ({type(exc).__name__}: {str(exc)[:200]})") from None


def _npz_sizes(path: str | Path, names: tuple[str, ...] | None) -> dict[str, int]:
    import zipfile

    import numpy.lib.format as npformat

    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or (names is not None and name not in names):
                continue
            with archive.open(info) as member:
                version = npformat.read_magic(member)
                read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
                shape, _, dtype = read(member, max_header_size=MAX_NPY_HEADER)
                start = member.tell()
            count = 1
            for size in shape:
                count *= size
            nbytes = count * dtype.itemsize
            if start + nbytes > info.file_size:
                raise ValueError(f"'{name}' declares {nbytes:,} bytes but holds {info.file_size - start:,}")
            sizes[name] = nbytes
    return sizes


def npz_fits(path: str | Path, names: tuple[str, ...] | None = None, copies: int = 1) -> str | None:
    """None when the arrays (read `copies` times over, e.g. once more as float32) fit in
    free memory; else why not, checked before any member is inflated."""
    from .resources import gib, shortfall

    total = sum(npz_sizes(path, names).values()) * copies
    problem = shortfall(total)
    return f"its arrays take {gib(total)} once read: {problem}" if problem else None
