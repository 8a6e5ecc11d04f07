"""Keeping a web worker's heap from holding on to memory it freed.

A worker allocates and frees large numpy arrays all day, from many threads: each annotations version
copies the columns an edit touched (8 MB per column at 1M rows), requests build masks and orders.
glibc's malloc serves such blocks from per-thread arenas once a large block has been freed (it raises
its mmap threshold), and keeps what is freed there. In a 5-minute load at 1M rows the two workers'
heaps held 2.5-3.0 GB (with LanceDB's caches bounded); arenas no more numerous than cores and a periodic
`malloc_trim`, handing free pages back to the system, brought that to 1.6-2.2 GB (README, "Load, faults
and memory at 1M").
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
TRIM_SECONDS = 10.0


def keep_heap_small(*, trim_seconds: float = TRIM_SECONDS) -> Callable[[], None] | None:
    """Limit malloc's arenas to the cores and trim the heap every `trim_seconds` on a daemon thread:
    what stops the trimming, or None where the C library is not glibc (nothing is done). Call it early
    in a process: threads that already allocated keep their arenas."""
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's name: find_library would run ldconfig in every worker
        trim, options = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    options.argtypes, options.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    options(_M_ARENA_MAX, max(2, os.cpu_count() or 2))
    stop = threading.Event()

    def trim_now_and_then() -> None:
        while not stop.wait(trim_seconds):
            trim(0)

    threading.Thread(target=trim_now_and_then, name="trajsite-malloc-trim", daemon=True).start()
    return stop.set
