"""CPU priority of bulk work: imports and projection builds give way to the requests of people
browsing (on Linux a thread has its own nice value, and the threads it starts inherit it)."""

from __future__ import annotations

import contextlib
import os
import threading

# Nice values: bulk work first lowers its own thread; a projection build, which only prepares the
# next answer, goes lowest.
IMPORT_NICE = 10
BUILD_NICE = 19


def lower_this_thread(nice: int) -> None:
    """Run the calling thread (and the threads and processes it starts) at `nice`, never raising it
    back: an unprivileged process cannot."""
    with contextlib.suppress(OSError, AttributeError):
        native = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, native) < nice:
            os.setpriority(os.PRIO_PROCESS, native, nice)


def this_thread_lowered() -> bool:
    """Whether the calling thread runs below normal priority (bulk work, not a request)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) > 0
    except (OSError, AttributeError):
        return False
