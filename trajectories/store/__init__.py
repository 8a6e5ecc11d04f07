"""The only package that talks to LanceDB. Everything else asks `get_store()`."""

from __future__ import annotations

from django.conf import settings

from .annotations import UNSET, AnnotationChange
from .commits import StoreBusy
from .engine import FACET_FIELDS, ResultPage
from .repository import TableStats, TrajectoryStore, WriteResult, read_scope
from .schema import ANNOTATION_SCHEMA, TRAJECTORY_SCHEMA

__all__ = [
    "ANNOTATION_SCHEMA",
    "FACET_FIELDS",
    "TRAJECTORY_SCHEMA",
    "UNSET",
    "AnnotationChange",
    "ResultPage",
    "StoreBusy",
    "TableStats",
    "TrajectoryStore",
    "WriteResult",
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
