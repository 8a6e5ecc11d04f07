"""Committing to LanceDB while other processes commit too.

LanceDB commits are optimistic: a writer that finds another commit in its way either rebases (the
two touched different rows) or fails with a retryable conflict. Every write of the store goes through
`retrying`, which runs the whole operation again (re-reading what it depends on) until it commits or
a deadline passes; only then does the caller see `StoreBusy`, never a silently lost write.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Declaring the key makes a merge-insert record the keys it inserts, so two writers inserting the same
# new id conflict at commit instead of both succeeding (checked only with use_index(False) in lance 14).
PRIMARY_KEY_METADATA = {"lance-schema:unenforced-primary-key": "true"}
DEADLINE_SECONDS = 60.0
_CONFLICT_MARKERS = ("retryable commit conflict", "too many concurrent writers", "commit conflict")
_FIRST_PAUSE, _LONGEST_PAUSE = 0.005, 0.25


class StoreBusy(RuntimeError):
    """Other writers kept committing first until the deadline: nothing was written by this call."""


def is_conflict(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _CONFLICT_MARKERS)


def retrying(operation: Callable[[], T], *, action: str, deadline_seconds: float = DEADLINE_SECONDS) -> T:
    """`operation()` until it commits without a conflict; each attempt must re-read what it needs."""
    started = time.monotonic()
    pause = _FIRST_PAUSE
    attempts = 0
    while True:
        attempts += 1
        try:
            return operation()
        except Exception as error:
            if not is_conflict(error):
                raise
            if time.monotonic() - started >= deadline_seconds:
                raise StoreBusy(f"{action}: still conflicting with other writers after {attempts} attempts") from error
            log.debug("%s: commit conflict (attempt %s), retrying", action, attempts)
        # Jitter spreads writers that collided so the next round does not collide again.
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, _LONGEST_PAUSE)


# What the storage itself refused, as LanceDB reports it (errno text, or the object store's words).
_STORAGE_PROBLEMS = (
    (("no space left on device", "os error 28", "quota exceeded"), "the store's disk is full"),
    (("read-only file system", "os error 30"), "the store is read-only"),
    (("permission denied", "os error 13", "access denied", "forbidden"), "the store refused access"),
)


def storage_problem(error: BaseException) -> str | None:
    """A plain statement of a storage fault behind `error` (disk full, read-only, no access), or None."""
    text = str(error).lower()
    for markers, said in _STORAGE_PROBLEMS:
        if any(marker in text for marker in markers):
            return said
    return None
