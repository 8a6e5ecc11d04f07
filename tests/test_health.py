"""`/healthz`, `/readyz`, `Server-Timing` and the structured log lines."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time

import pytest
from django.utils import timezone

from trajectories.models import ImportWorker
from trajectories.query import TrajectoryQuery
from trajectories.store import get_store, reset_store

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_anyone_and_names_what_is_missing(client, store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id="secret-id")]))
    answer = client.get("/healthz")
    assert answer.status_code == 503, "no import worker is alive"
    checks = answer.json()["checks"]
    assert checks["store"]["ok"] and checks["redis"]["ok"]
    assert not checks["import_worker"]["ok"] and "no import worker" in checks["import_worker"]["problem"]
    ImportWorker.objects.create(host=socket.gethostname(), pid=1, heartbeat_at=timezone.now())
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json()["ok"]
    assert b"secret-id" not in answer.content and "no-cache" in answer["Cache-Control"]


def test_healthz_says_when_the_store_cannot_be_read(client, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings.TRAJSITE_DATA_DIR = str(blocker / "lancedb")
    reset_store()
    try:
        answer = client.get("/healthz")
    finally:
        reset_store()
    assert answer.status_code == 503 and not answer.json()["checks"]["store"]["ok"]


def test_readyz_is_not_ready_until_the_projection_is_built(client, store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id=f"r{i}") for i in range(5)]))
    reset_store()
    first = client.get("/readyz")
    assert first.status_code == 503 and "projection" in first.json()["checks"]["projection"]["problem"]
    deadline = time.monotonic() + 30
    while (answer := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.status_code == 200 and b"r1" not in answer.content


def test_readyz_waits_for_the_sort_orders_of_a_large_projection(
    client, store, record, run_import, write_jsonl, monkeypatch
):
    """A worker whose projection is built but not warmed (sort orders, analytics: seconds at 1M) is
    not ready yet: a load balancer sends it no traffic that would wait for them."""
    from trajectories.store import engine

    run_import(write_jsonl([record(trajectory_id=f"r{i}") for i in range(5)]))
    reset_store()
    release = threading.Event()
    monkeypatch.setattr(engine, "WARM_ROWS", 1)
    monkeypatch.setattr(engine, "_warm", lambda projection, **stop: release.wait(30))
    get_store().page(query=TrajectoryQuery())
    answer = client.get("/readyz")
    assert answer.status_code == 503 and "sort orders" in answer.json()["checks"]["projection"]["problem"]
    release.set()
    deadline = time.monotonic() + 30
    while (answer := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.status_code == 200


def _timings(response) -> dict[str, float]:
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([\d.]+)", response["Server-Timing"])}


def test_every_answer_says_where_its_time_went(staff_client, store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id=f"t{i}") for i in range(5)]))
    missed = _timings(staff_client.get("/api/trajectories/?reward_min=0.5"))
    assert set(missed) == {"store", "cache", "render", "total"}
    assert missed["store"] > 0 and missed["total"] >= missed["store"] + missed["cache"]
    hit = _timings(staff_client.get("/api/trajectories/?reward_min=0.5"))
    assert hit["store"] == 0 and hit["cache"] > 0, "a cached answer does not reach the store"


def test_slow_requests_and_imports_are_logged_as_json(
    staff_client, store, record, run_import, write_jsonl, settings, caplog
):
    settings.TRAJSITE_SLOW_REQUEST_MS = 0
    with caplog.at_level(logging.INFO, logger="trajsite.events"):
        run_import(write_jsonl([record(trajectory_id="e1"), {"broken": True}]))
        staff_client.get("/trajectories/?q=anything")
    lines = [json.loads(entry.getMessage()) for entry in caplog.records if entry.name == "trajsite.events"]
    finished = next(line for line in lines if line["event"] == "import_finished")
    assert (finished["status"], finished["imported"], finished["rejected"]) == ("partial", 1, 1)
    assert finished["records_per_second"] >= 0 and finished["seconds"] >= 0
    slow = next(line for line in lines if line["event"] == "slow_request")
    assert (slow["path"], slow["query"], slow["status"], slow["user"]) == ("/trajectories/", "q=anything", 200, "staff")


def test_a_permission_refusal_is_not_taken_for_a_storage_fault(rf):
    from django.core.exceptions import PermissionDenied

    from trajsite.middleware import StoreBusyMiddleware

    middleware = StoreBusyMiddleware(lambda request: None)
    assert middleware.process_exception(rf.get("/"), PermissionDenied("Permission denied")) is None
    answer = middleware.process_exception(rf.get("/"), OSError("Read-only file system (os error 30)"))
    assert answer.status_code == 503 and b"read-only" in answer.content
