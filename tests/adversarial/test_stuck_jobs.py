"""Import jobs whose process dies: kill -9 of the command, of the web worker running an upload,
SIGTERM; long upload names; uploads left behind (issue: jobs stuck "running" forever)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import BASE_RECORD

from .conftest import ROOT

pytestmark = pytest.mark.adversarial
SITE_ENV = {"TRAJSITE_IMPORT_BATCH_SIZE": "100"}


def _records(prefix: str, count: int) -> bytes:
    return b"".join(orjson.dumps({**BASE_RECORD, "trajectory_id": f"{prefix}{i:05d}"}) + b"\n" for i in range(count))


def _job(site, job_id: int) -> dict:
    with sqlite3.connect(site.root / "site.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("select * from trajectories_importjob where id = ?", (job_id,)).fetchone())


def _latest_job_id(site) -> int:
    with sqlite3.connect(site.root / "site.sqlite3") as db:
        return db.execute("select max(id) from trajectories_importjob").fetchone()[0]


def _wait(condition, seconds: float = 60, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _importing(site, after: int) -> int | None:
    """The id of a job newer than `after` that has written something."""
    newest = _latest_job_id(site) or 0
    return newest if newest > after and _job(site, newest)["imported"] > 0 else None


def _start_import(site, path: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "manage.py"), "import_trajectories", str(path), "--no-progress", *extra]
    return subprocess.Popen(command, env=site.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _import_under_way(site, prefix: str) -> tuple[subprocess.Popen, int]:
    """A command importing 6,000 records in small batches, once it has written some."""
    path = site.root / f"{prefix}.jsonl"
    path.write_bytes(_records(prefix, 6000))
    before = _latest_job_id(site) or 0
    process = _start_import(site, path, "--batch-size", "50")
    return process, _wait(lambda: _importing(site, before), what="progress")


def _count(site, prefix: str) -> int:
    return sum(1 for trajectory_id in site.stored_ids() if trajectory_id.startswith(prefix))


def test_a_killed_command_is_shown_interrupted_and_resumes_exactly(site):
    process, job_id = _import_under_way(site, "k")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _job(site, job_id)["status"] == "running", "kill -9 leaves the row as it was"
    page = site.browser().get(f"/trajectories/import/{job_id}/").body.decode()
    assert "This import was interrupted" in page and "is gone" in page and 'id="resume-job"' in page
    assert _job(site, job_id)["status"] == "interrupted"
    written = _count(site, "k")
    assert 0 < written < 6000
    resumed = site.manage("import_trajectories", "--resume", str(job_id), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    ids = [i for i in site.stored_ids() if i.startswith("k")]
    assert len(ids) == len(set(ids)) == 6000
    job = _job(site, job_id)
    assert (job["status"], job["imported"], job["attempts"]) == ("succeeded", 6000, 2)


def test_sigterm_marks_the_job_interrupted_at_once(site):
    process, job_id = _import_under_way(site, "s")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"--resume {job_id}" in err
    job = _job(site, job_id)
    assert job["status"] == "interrupted" and job["finished_at"] is not None


def test_a_killed_web_worker_leaves_an_upload_that_resumes_from_the_page(site):
    browser = site.browser()
    page = browser.get("/trajectories/import/")
    answer = browser.post(
        "/trajectories/import/",
        {"on_duplicate": "skip"},
        page=page,
        files={"files": ("web.jsonl", _records("w", 8000))},
    )
    assert answer.status == 302, answer.body[:500]
    job_id = int(re.search(r"/import/(\d+)/", answer.headers["Location"]).group(1))
    _wait(lambda: _job(site, job_id)["imported"] > 0, what="the upload to start importing")
    os.kill(_job(site, job_id)["owner_pid"], signal.SIGKILL)
    status = _wait(
        lambda: (s := site.request("GET", f"/trajectories/import/{job_id}/status/")).status == 200 and s,
        what="the server",
    )
    page = _wait(
        lambda: b"interrupted" in (p := browser.get(f"/trajectories/import/{job_id}/")).body and p, what="interrupted"
    )
    assert status.status == 200
    uploads = site.root / "var" / "uploads" / str(job_id)
    assert uploads.exists(), "an interrupted upload keeps its file, to be resumed"
    browser.post(f"/trajectories/import/{job_id}/resume/", {}, page=page)
    _wait(lambda: _job(site, job_id)["status"] == "succeeded", what="the resumed import")
    ids = [i for i in site.stored_ids() if i.startswith("w")]
    assert len(ids) == len(set(ids)) == 8000
    assert _job(site, job_id)["imported"] == 8000
    assert not uploads.exists(), "a finished upload's files are removed"


def test_a_three_hundred_character_file_name_is_imported(site):
    browser = site.browser()
    name = "x" * 296 + ".jsonl"
    answer = browser.post("/trajectories/import/", {"on_duplicate": "skip"}, files={"files": (name, _records("n", 3))})
    assert answer.status == 302, answer.body[:500]
    job_id = int(re.search(r"/import/(\d+)/", answer.headers["Location"]).group(1))
    _wait(lambda: _job(site, job_id)["status"] == "succeeded", what="the import")
    page = browser.get(f"/trajectories/import/{job_id}/").body.decode()
    assert "xxxx…xxxx" in page


def test_a_discarded_upload_loses_its_files_not_its_rows(site):
    browser = site.browser()
    path = site.root / "var" / "uploads"
    job_id = _latest_job_id(site) + 1
    # An upload whose worker dies before anything reads it: simulated by a job row owned by a dead pid.
    with sqlite3.connect(site.root / "site.sqlite3") as db:
        db.execute(
            "insert into trajectories_importjob (id, created_at, origin, status, sources, options, records, imported,"
            " updated, duplicates, rejected, warnings, bytes_read, duration_seconds, first_errors, findings,"
            " error_report, failure, owner_host, owner_pid, attempts) values (?, datetime('now'), 'web', 'running',"
            " ?, '{}', 0, 0, 0, 0, 0, 0, 0, 0, '[]', '{}', '', '', ?, 999999, 1)",
            (job_id, orjson.dumps([str(path / str(job_id) / "0-a.jsonl")]).decode(), os.uname().nodename),
        )
    (path / str(job_id)).mkdir(parents=True)
    (path / str(job_id) / "0-a.jsonl").write_bytes(_records("d", 2))
    page = browser.get(f"/trajectories/import/{job_id}/")
    assert b'id="discard-job"' in page.body
    browser.post(f"/trajectories/import/{job_id}/discard/", {}, page=page)
    assert _job(site, job_id)["status"] == "discarded"
    assert not (path / str(job_id)).exists()
