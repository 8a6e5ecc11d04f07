"""The Redis cache against a real Redis: hits, invalidation on every write path, other processes,
Redis down, and writes made while it was down."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from rest_framework.test import APIClient

from trajectories import cache
from trajectories.query import TrajectoryQuery
from trajectories.store import AnnotationChange, TrajectoryStore

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
LIST = "/api/trajectories/"


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_superuser(username="cache-admin", password="pw-cache-123")
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def stored(store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id=f"t{i}", reward=i / 10, created_at=100 + i) for i in range(6)]))
    return store


def _ids(api, **params) -> list[str]:
    return [row["trajectory_id"] for row in api.get(LIST, params).json()["results"]]


def test_second_request_is_served_from_cache(api, stored):
    reads = stored.reads
    first = api.get(LIST, {"ordering": "reward", "page_size": 3}).json()
    assert stored.reads == reads + 1
    again = api.get(LIST, {"page_size": "3", "ordering": "reward", "format": "json"}).json()
    assert (again["count"], again["results"]) == (first["count"], first["results"])
    assert stored.reads == reads + 1, "same question, other parameter order: one key, no store read"
    api.get(f"{LIST}t1/")
    api.get(f"{LIST}t1/")
    api.get(f"{LIST}facets/")
    api.get(f"{LIST}facets/")
    assert stored.reads == reads + 4, "one read of the trajectory, two of the facets (rows, annotations)"


def test_cached_page_reads_are_counted_as_hits(staff_client, stored):
    for _ in range(3):
        staff_client.get("/trajectories/")
    out = StringIO()
    call_command("cache_stats", stdout=out)
    text = out.getvalue()
    assert "hit rate" in text and "keys:" in text
    stats = cache.stats()
    assert stats["hits"] >= 2 and stats["misses"] >= 2 and stats["keys"] >= 2
    call_command("cache_stats", "--clear", stdout=StringIO())
    assert cache.stats()["keys"] <= 2  # the generation, and the stats counters are gone


def test_every_write_path_shows_at_once(api, stored, record, write_jsonl, run_import, django_user_model):
    assert _ids(api, ordering="trajectory_id")[:2] == ["t0", "t1"]
    api.patch(f"{LIST}t0/", {"category": "patched"}, format="json")
    assert api.get(f"{LIST}t0/").json()["category"] == "patched"
    assert _ids(api, category="patched") == ["t0"]
    api.post(f"{LIST}bulk-update/", {"ids": ["t1", "t2"], "changes": {"is_bookmarked": True}}, format="json")
    assert _ids(api, is_bookmarked="true", ordering="trajectory_id") == ["t1", "t2"]
    api.delete(f"{LIST}t5/")
    assert api.get(f"{LIST}t5/").status_code == 404
    assert "t5" not in _ids(api)
    run_import(write_jsonl([record(trajectory_id="t9", created_at=999)], "more.jsonl"))
    assert _ids(api)[0] == "t9"
    assert api.get(f"{LIST}facets/").json()["agent_name"][0]["count"] == 6
    call_command("optimize_store", stdout=StringIO())
    assert api.get(LIST).json()["count"] == 6


def test_a_handle_keeps_its_version_until_synced(store, record, write_jsonl, run_import, settings):
    """LanceDB handles do not look for other writers' versions by themselves (read_consistency=None)."""
    run_import(write_jsonl([record(trajectory_id="a")]))
    reader = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR, version_check_seconds=3600)
    assert reader.page(query=TrajectoryQuery()).count == 1
    writer = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    writer.annotate(trajectory_ids=["a"], change=AnnotationChange(category="new"), user=None)
    assert reader.page(query=TrajectoryQuery()).rows[0]["category"] == "correct", "still the old version"
    reader.sync(force=True)
    assert reader.page(query=TrajectoryQuery()).rows[0]["category"] == "new"


def test_a_generation_bump_makes_a_lazy_process_read_the_newest_version(api, stored, settings):
    settings.TRAJSITE_VERSION_CHECK_SECONDS = 3600
    stored.version_check_seconds = 3600
    assert api.get(f"{LIST}t0/").json()["category"] == "correct"
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)  # another process's write, then its signal
    other.annotate(trajectory_ids=["t0"], change=AnnotationChange(category="elsewhere"), user=None)
    assert api.get(f"{LIST}t0/").json()["category"] == "correct", "no signal yet: this process may lag"
    cache.bump_generation()
    assert api.get(f"{LIST}t0/").json()["category"] == "elsewhere"


def test_an_edit_leaves_cached_what_does_not_read_its_fields(api, stored):
    """Tagging (edits every few seconds while a team reviews) must not make every cached answer start
    over: a list's rows and order and the statistics read no tags. A hit still shows the tags of now."""
    stats = api.get("/api/stats/", {"by": "agent_name"}).json()
    api.get(LIST, {"ordering": "reward"})
    api.get(f"{LIST}t1/")
    assert api.patch(f"{LIST}t1/", {"add_tags": ["seen"]}, format="json").status_code == 200
    reads = stored.reads
    page = api.get(LIST, {"ordering": "reward"}).json()
    assert next(row["tags"] for row in page["results"] if row["trajectory_id"] == "t1") == ["arith", "seen"]
    assert api.get(f"{LIST}t1/").json()["tags"] == ["arith", "seen"]
    assert api.get("/api/stats/", {"by": "agent_name"}).json() == stats
    assert stored.reads == reads, "the rows, the trajectory and the statistics from the cache"
    # What reads tags is asked again: a list by tag, the tag facet.
    assert _ids(api, tag="seen") == ["t1"]
    assert {"value": "seen", "count": 1} in api.get(f"{LIST}facets/").json()["tags"]
    # Whether a row succeeded is read by the statistics: its edit is counted at once.
    assert api.patch(f"{LIST}t2/", {"is_success": False}, format="json").status_code == 200
    moved = api.get("/api/stats/", {"by": "agent_name"}).json()
    assert moved["results"][0]["successes"] == stats["results"][0]["successes"] - 1


def test_another_process_edit_reaches_cached_rows_and_statistics(api, stored, settings, monkeypatch):
    """Another server's edit: its rows are shown as they are now, and what reads the edited field
    moves on, also when its signal never reaches Redis (the versions come from the store, checked at
    least every SIGNALLED_CHECK_SECONDS)."""
    monkeypatch.setattr(cache, "SIGNALLED_CHECK_SECONDS", 0.2)
    api.get(LIST, {"ordering": "reward"})
    stats = api.get("/api/stats/", {"by": "agent_name"}).json()
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    other.annotate(trajectory_ids=["t3"], change=AnnotationChange(add_tags=("elsewhere",)), user=None)
    time.sleep(0.25)
    page = api.get(LIST, {"ordering": "reward"}).json()
    assert next(row["tags"] for row in page["results"] if row["trajectory_id"] == "t3") == ["arith", "elsewhere"]
    assert api.get("/api/stats/", {"by": "agent_name"}).json() == stats
    other.annotate(trajectory_ids=["t3", "t4"], change=AnnotationChange(is_success=False), user=None)
    time.sleep(0.25)
    moved = api.get("/api/stats/", {"by": "agent_name"}).json()
    assert moved["results"][0]["successes"] == stats["results"][0]["successes"] - 2


def test_the_edit_counter_makes_a_lazy_process_read_the_newest_version(api, stored, settings, monkeypatch):
    """Without a signal a process may lag (here, by configuration, for an hour); the signal of a write
    makes it read the newest versions at once. With Redis answering and nothing signalled, the store
    is asked only every SIGNALLED_CHECK_SECONDS, not on every request."""
    settings.TRAJSITE_VERSION_CHECK_SECONDS = 3600
    stored.version_check_seconds = 3600
    monkeypatch.setattr(cache, "SIGNALLED_CHECK_SECONDS", 3600)
    assert api.get(f"{LIST}t0/").json()["tags"] == ["arith"]
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    other.annotate(trajectory_ids=["t0"], change=AnnotationChange(add_tags=("late",)), user=None)
    assert api.get(f"{LIST}t0/").json()["tags"] == ["arith"], "no signal yet: this process may lag"
    cache.bump_edits()  # what the other process's edit sends
    assert api.get(f"{LIST}t0/").json()["tags"] == ["arith", "late"]
    stored.version_check_seconds = 0  # the local-disk default: every read would look
    checks = stored.version_checks
    for _ in range(3):
        api.get(LIST, {"ordering": "reward"})
    assert stored.version_checks == checks, "nothing signalled: the store is not asked on every request"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _point_cache_at(settings, url: str) -> None:
    settings.CACHES = {name: {**config, "LOCATION": url} for name, config in settings.CACHES.items()}
    cache.reset_process_state()


def test_pages_work_with_redis_down_and_warn_once(api, staff_client, stored, settings, caplog):
    _point_cache_at(settings, f"redis://127.0.0.1:{_closed_port()}/0")
    with caplog.at_level(logging.WARNING, logger="trajectories.cache"):
        for _ in range(3):
            assert api.get(LIST).status_code == 200
            assert staff_client.get("/trajectories/").status_code == 200
            assert staff_client.get("/trajectories/t1/").status_code == 200
        api.patch(f"{LIST}t1/", {"category": "while-down"}, format="json")
        assert api.get(f"{LIST}t1/").json()["category"] == "while-down"
    assert [r.message for r in caplog.records].count(next(r.message for r in caplog.records)) == 1
    assert len(caplog.records) == 1


def test_write_while_redis_unreachable_leaves_no_stale_page(api, stored, settings):
    """Redis comes back with its old entries and old generation: the write still shows."""
    real = settings.CACHES["default"]["LOCATION"]
    assert api.get(f"{LIST}t2/").json()["category"] == "correct"
    assert _ids(api, category="late") == []
    _point_cache_at(settings, f"redis://127.0.0.1:{_closed_port()}/0")
    api.patch(f"{LIST}t2/", {"category": "late"}, format="json")  # the generation bump is lost
    _point_cache_at(settings, real)
    assert api.get(f"{LIST}t2/").json()["category"] == "late"
    assert _ids(api, category="late") == ["t2"]


def test_redis_restart_after_writes_while_down(api, stored, settings, tmp_path):
    server = shutil.which("redis-server")
    assert server, "make test installs redis-server"
    port = _closed_port()
    command = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    redis = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        _point_cache_at(settings, f"redis://127.0.0.1:{port}/0")
        assert api.get(f"{LIST}t3/").json()["category"] == "correct"
        redis.terminate()
        redis.wait()
        cache.health.down_since = None
        api.patch(f"{LIST}t3/", {"category": "after-restart"}, format="json")
        redis = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _wait_for_port(port)
        cache.reset_process_state()
        assert api.get(f"{LIST}t3/").json()["category"] == "after-restart"
        assert api.get(f"{LIST}t3/").json()["category"] == "after-restart"
    finally:
        redis.terminate()
        redis.wait()


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.mark.django_db(transaction=True)
def test_cli_import_in_another_process_shows_at_once_in_a_live_server(
    live_server, client, django_user_model, stored, record, tmp_path, settings
):
    user = django_user_model.objects.create_superuser(username="live", password="pw-live-123")
    client.force_login(user)
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"

    def count() -> int:
        request = urllib.request.Request(f"{live_server.url}{LIST}?format=json", headers={"Cookie": cookie})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())["count"]

    assert count() == 6
    assert count() == 6  # now cached in Redis
    dump = tmp_path / "cli.jsonl"
    dump.write_text("\n".join(json.dumps(record(trajectory_id=f"cli{i}")) for i in range(4)) + "\n")
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": settings.TRAJSITE_DATA_DIR,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "TRAJSITE_VAR_DIR": str(tmp_path),
        "REDIS_URL": settings.CACHES["default"]["LOCATION"],
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    subprocess.run(
        [*manage, "import_trajectories", str(dump), "--no-progress"], env=env, check=True, capture_output=True
    )
    assert count() == 10


def test_cached_pages_carry_each_users_own_token_and_name(django_user_model, stored):
    import re

    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    pages = []
    for name in ("alice", "bob"):
        user = django_user_model.objects.create_user(username=name, password=f"pw-{name}-123", is_staff=True)
        client.force_login(user)
        body = client.get("/trajectories/t1/").content.decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
        pages.append((body, token))
        assert f"<strong>{name}</strong>" in body
        assert "<trajsite:" not in body
        response = client.post(
            "/trajectories/t1/annotate/", {"toggle_bookmark": "on", "csrfmiddlewaretoken": token}, follow=True
        )
        assert response.redirect_chain, "the token in a cached page is this user's valid token"
        assert "Saved." in response.content.decode(), "a page with a message is rendered fresh"
    assert pages[0][1] != pages[1][1]
