"""A web worker's heap handed back to the system (trajsite.memory), in this process's real C library."""

from __future__ import annotations

import ctypes
import threading
import time

from trajsite.memory import keep_heap_small


def _trims() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "trajsite-malloc-trim" and thread.is_alive())


def test_a_worker_trims_its_heap_on_a_thread_of_its_own_until_told_to_stop():
    try:
        glibc = hasattr(ctypes.CDLL("libc.so.6"), "malloc_trim")
    except OSError:
        glibc = False
    if not glibc:  # nothing is done, and it says so
        assert keep_heap_small(trim_seconds=0.01) is None
        return
    before = _trims()
    stop = keep_heap_small(trim_seconds=0.01)
    time.sleep(0.05)  # several trims have run: none raised, the thread lives on
    assert _trims() == before + 1
    stop()
    time.sleep(0.05)
    assert _trims() == before
