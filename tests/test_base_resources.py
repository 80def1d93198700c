"""base.resources: the garbage collector paused for a check is handed back as it was."""

from __future__ import annotations

import gc
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
