"""`/healthz` and `/readyz`: answered without a login and without any trajectory data.

- `/healthz`: is the deployment whole? The store opens, Redis answers, an import worker beat
  recently. 503 names what is not; for monitoring and alerts.
- `/readyz`: should this web process get traffic? The database and store answer and this process
  holds a projection to answer lists from. A cold process starts building it and says 503 until it
  is done; for a load balancer (it does not depend on the import worker).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

_warming = threading.Lock()


def _check(probe: Callable[[], str | None]) -> dict:
    started = time.perf_counter()
    try:
        problem = probe()
    except Exception as error:  # any failure is the answer, never a 500
        problem = f"{type(error).__name__}: {str(error)[:200]}"
    return {"ok": problem is None, "ms": round((time.perf_counter() - started) * 1000, 1), "problem": problem}


def _store() -> None:
    from trajectories.store import get_store

    get_store().versions()


def _redis() -> None:
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()


def _worker() -> str | None:
    from trajectories.importing.worker import WORKER_STALE_SECONDS, alive_workers

    alive = alive_workers()
    return None if alive else f"no import worker has beaten in the last {WORKER_STALE_SECONDS:.0f} s"


def _database() -> None:
    connection.ensure_connection()


def _projection() -> str | None:
    from trajectories.store import get_store

    store = get_store()
    if store.engine.warmed():
        return None
    if store.engine.ready():
        return "building this process's sort orders and analytics"
    if _warming.acquire(blocking=False):
        threading.Thread(target=_warm, args=(store,), name="trajsite-readyz-warm", daemon=True).start()
    return "building this process's projection of the store"


def _warm(store) -> None:
    try:
        store.engine.current()
    finally:
        _warming.release()


def _answer(checks: dict[str, dict]) -> JsonResponse:
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"ok": ok, "checks": checks}, status=200 if ok else 503)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return _answer({"store": _check(_store), "redis": _check(_redis), "import_worker": _check(_worker)})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    return _answer({"database": _check(_database), "store": _check(_store), "projection": _check(_projection)})
