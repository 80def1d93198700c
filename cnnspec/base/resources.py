"""Memory checked before it is allocated: weights at export, activations at run.

Python's MemoryError arrives only for allocations the kernel refuses outright; a request
just under the machine's size is granted and then the process is killed. So `export`,
`run` and `train` compare what they will need with what the machine has free first.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading

HEADROOM = 0.9  # leave a tenth for the interpreter, onnxruntime and the rest


def available_memory() -> int | None:
    """Bytes this process may still allocate (MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    """A memory size for a message: GiB, or MiB below 1 GiB (where 0.1 GiB against 0.2
    GiB free reads as a contradiction)."""
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def shortfall(needed: int) -> str | None:
    """None when `needed` bytes fit in free memory, else a sentence saying how far off."""
    free = available_memory()
    if free is None or needed <= free * HEADROOM:
        return None
    reserve = ", a tenth of which cnnspec leaves to the rest" if needed <= free else ""
    return f"needs about {gib(needed)} of memory; this machine has {gib(free)} free{reserve}"


_gc_lock = threading.Lock()
_gc_pauses = 0  # nested or concurrent pauses: only the last to end turns the GC back on
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector off while a spec is checked. A check makes tens of
    thousands of small objects that all stay alive (the AST, the layers), and collections
    triggered while they are made walk all of them again: a 6,000-layer spec spent a third
    of its time there. Nothing a check makes needs the cycle collector to be freed, and it
    is switched back on (if it was on) when the last pause ends, from any thread."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


# glibc's mallopt parameters (malloc.h): blocks of at least MMAP_THRESHOLD bytes are mapped
# on their own and unmapped when freed; the heap's free top is trimmed above TRIM_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_EXACT_BLOCK = 64 << 10


def exact_allocation() -> bool:
    """Have malloc return every block of 64 KiB or more to the kernel as soon as it is
    freed (glibc; by default it raises that threshold as blocks are freed and keeps them),
    so that what a process holds resident is what it has alive: then a run measured on a
    small batch predicts a large one to a few percent. False where this C library cannot
    be told so (not glibc) or the peak cannot be read (not Linux)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc" or peak_meter() is None:
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _EXACT_BLOCK) and libc.mallopt(_M_TRIM_THRESHOLD, _EXACT_BLOCK)
        )
    except (OSError, AttributeError):
        return False


def peak_meter():
    """A function that starts a measurement and returns one that reads it: the bytes this
    process's resident memory has peaked above where it stood at the start (Linux's VmHWM,
    reset through /proc/self/clear_refs). None where that cannot be done."""

    def start():
        release_free_memory()  # else freeing what was freed before lowers the resident memory mid-run
        with open("/proc/self/clear_refs", "w", encoding="ascii") as stream:
            stream.write("5")  # resets VmHWM to the resident memory now
        before = _status("VmRSS:")
        return lambda: max(_status("VmHWM:") - before, 0)

    try:
        start()()
    except (OSError, StopIteration, ValueError):
        return None
    return start


def resident_memory() -> int:
    """Bytes this process holds resident now (Linux; 0 where that cannot be read)."""
    try:
        return _status("VmRSS:")
    except (OSError, StopIteration, ValueError):
        return 0


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith(key)) * 1024


def release_free_memory() -> None:
    """Hand the memory this process has freed but malloc still keeps back to the kernel
    (glibc's malloc_trim; elsewhere nothing)."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
