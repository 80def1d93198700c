"""base.resources: the garbage collector paused for a check is handed back as it was; the
peak of a measured run is read as made."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading

import pytest

import cnnspec
from cnnspec.base.resources import gc_paused
from tests.conftest import net


@pytest.fixture
def gc_state():
    before = gc.isenabled()
    yield
    (gc.enable if before else gc.disable)()


@pytest.mark.parametrize("enabled", [True, False])
def test_a_check_leaves_the_collector_as_it_found_it(enabled, gc_state):
    (gc.enable if enabled else gc.disable)()
    seen = []
    with gc_paused():
        seen.append(gc.isenabled())
    cnnspec.check_source(net("conv 4 3x3\nrelu"))
    assert seen == [False] and gc.isenabled() is enabled


def test_nested_and_concurrent_pauses_end_with_the_last(gc_state):
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with gc_paused():
        thread.start()
        assert inside.wait(5)
        with gc_paused():
            assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's check still runs
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_the_peak_meter_reads_a_block_allocated_and_freed_in_between():
    """A measured run's reading (resources.peak_meter, after exact_allocation): a 64 MiB
    array made and freed between the start and the reading counts, whole and once; made
    before the start, it does not. In a process of its own (exact allocation is for the
    rest of a process)."""
    code = (
        "import json, numpy as np\n"
        "from cnnspec.base import resources\n"
        "assert resources.exact_allocation()\n"
        "start = resources.peak_meter()\n"
        "kept = np.ones(2**23)\n"  # 64 MiB, before the start
        "read = start()\n"
        "made = np.ones(2**23)\n"
        "del made\n"
        "print(json.dumps([read(), start()()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    during, after = json.loads(done.stdout)
    # within a MiB: Linux counts resident pages per thread and adds them up every 64 faults
    assert 63 * 2**20 <= during <= 65 * 2**20 and after < 2**20  # freed at once: nothing left to read
