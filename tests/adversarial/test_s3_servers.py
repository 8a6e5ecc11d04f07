"""Two web servers and two import workers on one S3 store (moto on loopback), one Redis, one
database: overlapping imports store each id once, parallel edits from both servers all stay."""

from __future__ import annotations

import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from tests.conftest import BASE_RECORD

from .conftest import running_site

pytestmark = pytest.mark.adversarial
API = "/api/trajectories/"


@pytest.fixture(scope="module")
def site(s3_server, tmp_path_factory):
    env = {**s3_server.env, "TRAJSITE_DATA_DIR": s3_server.fresh_uri(), "TRAJSITE_IMPORT_BATCH_SIZE": "250"}
    with running_site(tmp_path_factory.mktemp("s3-site"), env, servers=2) as started:
        started.start_worker()
        yield started


def _records(ids) -> bytes:
    return b"".join(orjson.dumps({**BASE_RECORD, "trajectory_id": f"s3-{i:05d}"}) + b"\n" for i in ids)


def _upload(site, url: str, name: str, body: bytes) -> int:
    browser = site.browser(url=url)
    page = browser.get("/trajectories/import/")
    answer = browser.post("/trajectories/import/", {"on_duplicate": "skip"}, page=page, files={"files": (name, body)})
    assert answer.status == 302, answer.body[:500]
    return int(re.search(r"/import/(\d+)/", answer.headers["Location"]).group(1))


def _job(site, job_id: int) -> dict:
    return site.request("GET", f"/api/imports/{job_id}/").json()


def _wait_finished(site, job_ids: list[int], seconds: float = 240) -> list[dict]:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        jobs = [_job(site, job_id) for job_id in job_ids]
        if all(job["finished_at"] for job in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"imports did not finish: {jobs}")


def test_overlapping_uploads_to_two_servers_store_each_id_once(site):
    first = _upload(site, site.urls[0], "first.jsonl", _records(range(0, 3000)))
    second = _upload(site, site.urls[1], "second.jsonl", _records(range(1500, 4500)))
    jobs = _wait_finished(site, [first, second])
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], jobs
    owners = {job["id"]: job for job in jobs}
    assert sum(job["imported"] for job in owners.values()) == 4500
    assert sum(job["duplicates"] for job in owners.values()) == 1500
    ids = [i for i in site.stored_ids() if i.startswith("s3-")]
    assert len(ids) == len(set(ids)) == 4500
    runs = _runs(site, [first, second])
    assert len({pid for pid, _, _ in runs}) == 2, "each upload ran in its own import worker"
    (_, start_a, end_a), (_, start_b, end_b) = runs
    assert start_a < end_b and start_b < end_a, "at the same time"
    for url in site.urls:
        assert site.request("GET", f"{API}?page_size=1", url=url).json()["count"] >= 4500


def _runs(site, job_ids: list[int]) -> list[tuple[int, float, float]]:
    """(worker pid, start, end) of each job, from the shared database."""
    from datetime import datetime

    with sqlite3.connect(site.root / "site.sqlite3") as db:
        rows = [
            db.execute(
                "select owner_pid, finished_at, duration_seconds from trajectories_importjob where id = ?", (i,)
            ).fetchone()
            for i in job_ids
        ]
    ends = [datetime.fromisoformat(finished).timestamp() for _, finished, _ in rows]
    return [(pid, end - seconds, end) for (pid, _, seconds), end in zip(rows, ends, strict=True)]


def test_parallel_edits_through_both_servers_all_stay(site):
    targets = [f"s3-{i:05d}" for i in range(10)]
    calls = [(site.urls[n % 2], targets[n % len(targets)], f"from-{n % 2}-{n:03d}") for n in range(120)]

    def edit(call):
        url, target, tag = call
        return site.request("PATCH", f"{API}{target}/", {"add_tags": [tag]}, url=url).status

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(edit, calls))
    assert statuses == [200] * len(calls)
    for target in targets:
        wanted = {tag for _, name, tag in calls if name == target}
        for url in site.urls:
            tags = set(site.request("GET", f"{API}{target}/", url=url).json()["tags"])
            assert wanted <= tags, (url, target, wanted - tags)
