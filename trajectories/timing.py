"""Where a request's time went, for its `Server-Timing` header and the slow-request log: time in the
store (reads that reach LanceDB or the projection) and in the cache (Redis), per request."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

STORE = "store"
CACHE = "cache"
_spent: ContextVar[dict[str, float] | None] = ContextVar("trajsite_time_spent", default=None)
_inside: ContextVar[frozenset[str]] = ContextVar("trajsite_time_inside", default=frozenset())


@contextlib.contextmanager
def measuring() -> Iterator[dict[str, float]]:
    """Collect the seconds spent per kind by everything run inside."""
    spent: dict[str, float] = {}
    token = _spent.set(spent)
    try:
        yield spent
    finally:
        _spent.reset(token)


@contextlib.contextmanager
def timed(kind: str) -> Iterator[None]:
    """Count the time inside as `kind`, once: a store read inside a store read is not counted twice."""
    spent = _spent.get()
    inside = _inside.get()
    if spent is None or kind in inside:
        yield
        return
    token = _inside.set(inside | {kind})
    started = time.perf_counter()
    try:
        yield
    finally:
        spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - started
        _inside.reset(token)
