"""The only package that talks to LanceDB. Everything else asks `get_store()`.

The repository and the query engine load on first use: an import's worker processes need only the
schema and the annotation type, and LanceDB costs each process a second and ~100 MB to load.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .annotations import UNSET, AnnotationChange
from .commits import StoreBusy
from .schema import TRAJECTORY_SCHEMA

if TYPE_CHECKING:
    from .engine import ResultPage, served
    from .repository import TrajectoryStore, read_scope
    from .runs import ScopeTooLarge

_LAZY = {
    "ResultPage": ".engine",
    "ScopeTooLarge": ".runs",
    "served": ".engine",
    "TrajectoryStore": ".repository",
    "read_scope": ".repository",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "TRAJECTORY_SCHEMA",
    "UNSET",
    "AnnotationChange",
    "ResultPage",
    "ScopeTooLarge",
    "StoreBusy",
    "TrajectoryStore",
    "get_store",
    "is_object_store",
    "read_scope",
    "reset_store",
    "served",
    "version_check_seconds",
]

_store: TrajectoryStore | None = None
# The first requests of a worker arrive on several threads at once: one store is made, not one each
# (a thread holding another's store in its read scope found no tables open on it).
_making = threading.Lock()
log = logging.getLogger(__name__)


def get_store() -> TrajectoryStore:
    """The process-wide store for `settings.TRAJSITE_DATA_DIR` (re-made if the setting changes)."""
    store = _store
    if store is not None and store.uri == settings.TRAJSITE_DATA_DIR:
        return store
    with _making:
        return _made_store()


def _made_store() -> TrajectoryStore:
    global _store
    if _store is None or _store.uri != settings.TRAJSITE_DATA_DIR:
        from .repository import TrajectoryStore

        _store = TrajectoryStore(
            uri=settings.TRAJSITE_DATA_DIR,
            version_check_seconds=version_check_seconds(settings.TRAJSITE_DATA_DIR),
            background_rows=settings.TRAJSITE_BACKGROUND_BUILD_ROWS,
            projection_dir=settings.TRAJSITE_PROJECTION_DIR or None,
            shared_rows=settings.TRAJSITE_SHARED_PROJECTION_ROWS,
            build_elsewhere=build_in_child if settings.TRAJSITE_BUILD_PROCESS else None,
            cache_bytes=(
                settings.TRAJSITE_LANCE_INDEX_CACHE_MB * 2**20,
                settings.TRAJSITE_LANCE_METADATA_CACHE_MB * 2**20,
            ),
            budget_rows=settings.TRAJSITE_PROJECTION_BUDGET_ROWS,
        )
    return _store


# A child still building after this long (minutes at 10M under load, at the lowest priority) is given
# up: the worker builds on its own thread instead.
BUILD_TIMEOUT_SECONDS = 900


def build_in_child(*, version: int, previous: int | None) -> bool:
    """Write the shared projection of trajectories `version` in a child process (`manage.py
    build_projection`), which inherits the calling thread's lowest priority; whether it did."""
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "build_projection",
               "--table-version", str(version)]  # fmt: skip
    if previous is not None:
        command += ["--previous", str(previous)]
    # The settings this process runs with (a test's or a command's overrides), not only its environment's.
    env = {**os.environ, "TRAJSITE_DATA_DIR": str(settings.TRAJSITE_DATA_DIR),
           "TRAJSITE_PROJECTION_DIR": str(settings.TRAJSITE_PROJECTION_DIR)}  # fmt: skip
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("projection of version %s not built by a child process (%s): building it here", version, error)
        return False
    if done.returncode != 0:
        log.warning("projection of version %s not built by a child process: building it here\n%s",
                    version, done.stderr[-2000:])  # fmt: skip
        return False
    return True


def version_check_seconds(uri: str) -> float:
    """The configured interval, else 0 on a local disk and 1 s on object storage (s3://, gs://, az://)."""
    configured = settings.TRAJSITE_VERSION_CHECK_SECONDS
    if configured is not None:
        return configured
    return OBJECT_STORE_CHECK_SECONDS if is_object_store(uri) else 0.0


def is_object_store(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


OBJECT_STORE_CHECK_SECONDS = 1.0


def reset_store() -> None:
    global _store
    _store = None
