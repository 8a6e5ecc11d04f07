"""The only package that talks to LanceDB. Everything else asks `get_store()`."""

from __future__ import annotations

from django.conf import settings

from .annotations import UNSET, AnnotationChange
from .commits import StoreBusy
from .engine import ResultPage
from .repository import TrajectoryStore, read_scope
from .schema import TRAJECTORY_SCHEMA

__all__ = [
    "TRAJECTORY_SCHEMA",
    "UNSET",
    "AnnotationChange",
    "ResultPage",
    "StoreBusy",
    "TrajectoryStore",
    "get_store",
    "read_scope",
    "reset_store",
]

_store: TrajectoryStore | None = None


def get_store() -> TrajectoryStore:
    """The process-wide store for `settings.TRAJSITE_DATA_DIR` (re-made if the setting changes)."""
    global _store
    if _store is None or _store.uri != settings.TRAJSITE_DATA_DIR:
        _store = TrajectoryStore(
            uri=settings.TRAJSITE_DATA_DIR, version_check_seconds=settings.TRAJSITE_VERSION_CHECK_SECONDS
        )
    return _store


def reset_store() -> None:
    global _store
    _store = None
