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
import psutil
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
    # The import worker's next look (or the page's) finds the dead owner; a command's job waits for its user.
    _wait(lambda: _job(site, job_id)["status"] == "interrupted", what="the job to be found interrupted")
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


def _upload(site, prefix: str, count: int) -> int:
    browser = site.browser()
    page = browser.get("/trajectories/import/")
    files = {"files": (f"{prefix}.jsonl", _records(prefix, count))}
    answer = browser.post("/trajectories/import/", {"on_duplicate": "skip"}, page=page, files=files)
    assert answer.status == 302, answer.body[:500]
    return int(re.search(r"/import/(\d+)/", answer.headers["Location"]).group(1))


def test_a_killed_web_worker_loses_no_upload(site):
    """The web server only stores and queues an upload: killing the worker that took it changes nothing."""
    job_id = _upload(site, "g", 3000)
    os.kill(_gunicorn_worker_pids(site)[0], signal.SIGKILL)
    _wait(lambda: _job(site, job_id)["status"] == "succeeded", what="the queued import")
    assert _job(site, job_id)["owner_pid"] in [p.pid for p in site.workers], "run by the import worker"
    ids = [i for i in site.stored_ids() if i.startswith("g")]
    assert len(ids) == len(set(ids)) == 3000


def test_a_killed_import_worker_leaves_a_job_the_next_worker_resumes(site):
    job_id = _upload(site, "w", 8000)
    _wait(lambda: _job(site, job_id)["imported"] > 0, what="the upload to start importing")
    running = _job(site, job_id)
    assert running["status"] == "running" and running["owner_pid"] == site.workers[0].pid
    site.workers[0].send_signal(signal.SIGKILL)
    site.workers[0].wait()
    progress = site.request("GET", f"/trajectories/import/{job_id}/status/")
    assert progress.status == 200
    uploads = site.root / "var" / "uploads" / str(job_id)
    assert uploads.exists(), "an interrupted upload keeps its file, to be resumed"
    site.workers.pop(0)
    site.start_worker()
    _wait(lambda: _job(site, job_id)["status"] == "succeeded", what="the resumed import")
    ids = [i for i in site.stored_ids() if i.startswith("w")]
    assert len(ids) == len(set(ids)) == 8000
    job = _job(site, job_id)
    assert (job["imported"], job["attempts"]) == (8000, 2)
    assert "is gone" in job["failure"] or job["failure"] == ""
    assert not uploads.exists(), "a finished upload's files are removed"


def test_sigterm_to_the_import_worker_queues_its_job_again(site):
    job_id = _upload(site, "t", 8000)
    _wait(lambda: _job(site, job_id)["imported"] > 0, what="the upload to start importing")
    site.workers[0].terminate()
    site.workers[0].wait(timeout=60)
    assert _job(site, job_id)["status"] == "interrupted"
    site.workers.pop(0)
    site.start_worker()
    _wait(lambda: _job(site, job_id)["status"] == "succeeded", what="the resumed import")
    ids = [i for i in site.stored_ids() if i.startswith("t")]
    assert len(ids) == len(set(ids)) == 8000


def _gunicorn_worker_pids(site) -> list[int]:
    port = site.url.rsplit(":", 1)[1]
    masters = [p for p in psutil.process_iter(["cmdline"]) if f"127.0.0.1:{port}" in " ".join(p.info["cmdline"] or [])]
    return [child.pid for master in masters for child in master.children()]


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
    site.stop_workers()  # else the import worker would resume the job before it could be discarded
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
    site.start_worker()
