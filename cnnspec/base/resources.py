"""Memory checked before it is allocated: weights at export, activations at run.

Python's MemoryError arrives only for allocations the kernel refuses outright; a request
just under the machine's size is granted and then the process is killed. So `export`,
`run` and `train` compare what they will need with what the machine has free first.
"""

from __future__ import annotations

import os

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
