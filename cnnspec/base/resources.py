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
    return f"{n / 2**30:,.1f} GiB"


def shortfall(needed: int) -> str | None:
    """None when `needed` bytes fit in free memory, else a sentence saying how far off."""
    free = available_memory()
    if free is None or needed <= free * HEADROOM:
        return None
    return f"needs about {gib(needed)} of memory; this machine has {gib(free)} free"


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
