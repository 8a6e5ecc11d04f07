"""The store on object storage (moto's S3 server on loopback): import, list, filter, detail,
annotate, search, charts, optimize and snapshots answer as on a local disk, and a second server's
writes are seen through version checks against the store itself."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from tests.conftest import REALDATA
from trajectories import cache
from trajectories.query import TrajectoryQuery
from trajectories.store import AnnotationChange, TrajectoryStore, get_store

pytestmark = pytest.mark.django_db(transaction=True)


def _import(path, *args):
    """`import_trajectories` into the S3 store (the `run_import` fixture would pick a local one)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("import_trajectories", str(path), *args, "--no-progress", stdout=out, stderr=err)
    except Exception as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


AIRLINE = REALDATA / "tau-bench" / "historical_trajectories" / "gpt-4o-airline.json"


def test_the_site_runs_on_s3(s3_store, staff_client, record, write_jsonl):
    assert get_store() is s3_store and s3_store.uri.startswith("s3://")
    assert s3_store.version_check_seconds == 1.0, "on object storage a version check is requests: once a second"
    _, err, error = _import(AIRLINE)
    assert error is None, err
    asked = [{"role": "user", "content": "第{}题"}, {"role": "tool", "content": "错误:权限不足"}]
    chinese = [record(trajectory_id=f"zh{i}", steps=asked) for i in range(3)]
    assert _import(write_jsonl(chinese))[2] is None

    listed = staff_client.get("/api/trajectories/?page_size=5").json()
    assert listed["count"] == 203 and len(listed["results"]) == 5
    failed = staff_client.get("/api/trajectories/?reward_max=0.5").json()["count"]
    assert 0 < failed < 203
    some = listed["results"][0]["trajectory_id"]
    assert staff_client.get(f"/trajectories/{some}/").status_code == 200

    patched = staff_client.patch(
        f"/api/trajectories/{some}/", {"category": "s3-checked"}, content_type="application/json"
    )
    assert patched.status_code == 200
    assert staff_client.get("/api/trajectories/?category=s3-checked").json()["count"] == 1

    found = staff_client.get("/api/trajectories/?q=权限不足").json()
    assert sorted(row["trajectory_id"] for row in found["results"]) == ["zh0", "zh1", "zh2"]
    assert {"text": "权限不足", "match": True} in found["results"][0]["snippet"]["parts"]

    for page in ("/trajectories/stats/?by=iteration_id", "/trajectories/groups/", "/trajectories/"):
        assert staff_client.get(page).status_code == 200, page

    out = StringIO()
    call_command("optimize_store", stdout=out)
    assert "after: trajectories: 203 rows" in out.getvalue()
    assert staff_client.get("/api/trajectories/?category=s3-checked").json()["count"] == 1


def test_snapshots_and_restore_on_s3(s3_store, record, write_jsonl):
    _import(write_jsonl([record(trajectory_id="s0")], name="s0.jsonl"))
    s3_store.snapshot(tag="one")
    _import(write_jsonl([record(trajectory_id="s1")], name="s1.jsonl"))
    s3_store.restore(plan=s3_store.restore_plan(tag="one"))
    assert s3_store.matching_ids(query=TrajectoryQuery()) == ["s0"]


def test_a_second_server_sees_writes_through_the_store_not_only_redis(s3_store, settings, record, write_jsonl):
    _import(write_jsonl([record(trajectory_id=f"w{i}") for i in range(3)]))
    # Another web server: its own handles and projection, checking versions at most every 60 s.
    other = TrajectoryStore(uri=s3_store.uri, version_check_seconds=60)
    assert other.count_matching(query=TrajectoryQuery()) == 3
    s3_store.annotate(trajectory_ids=["w1"], change=AnnotationChange(category="elsewhere"), user="u")
    _import(write_jsonl([record(trajectory_id="w3")], name="more.jsonl"))
    # Within its interval and told nothing, it still answers from what it read...
    assert other.count_matching(query=TrajectoryQuery()) == 3
    # ...until the shared generation (Redis) moves: then it looks at the store's versions.
    cache.bump_generation()
    other.sync(force=True)
    assert other.count_matching(query=TrajectoryQuery()) == 4
    assert other.get(trajectory_id="w1")["category"] == "elsewhere"
    # Without Redis, the interval alone brings a server up to date (0: every read looks).
    checking = TrajectoryStore(uri=s3_store.uri, version_check_seconds=0.0)
    assert checking.count_matching(query=TrajectoryQuery()) == 4
    _import(write_jsonl([record(trajectory_id="w4")], name="last.jsonl"))
    assert checking.count_matching(query=TrajectoryQuery()) == 5
