"""The import worker's queue: claimed once, dead runs resumed exactly, hopeless jobs failed with why."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.conftest import all_rows
from trajectories.importing import worker
from trajectories.importing.errors import ErrorSink
from trajectories.importing.pipeline import ImportOptions, run_import
from trajectories.models import ImportJob, ImportWorker

pytestmark = pytest.mark.django_db(transaction=True)


def _queued(path, **fields) -> ImportJob:
    values = {"origin": ImportJob.Origin.WEB, "status": ImportJob.Status.QUEUED, "sources": [str(path)], **fields}
    return ImportJob.objects.create(options={"on_duplicate": "skip", "batch_size": 10}, **values)


def _dead_run(job: ImportJob) -> None:
    """As if the worker running `job` was killed: running, owned by a pid that does not exist."""
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, owner_host=socket.gethostname(), owner_pid=2**22 + 7, attempts=1
    )


def test_a_queued_job_runs_once_and_its_upload_is_removed(store, record, write_jsonl, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    job = _queued(tmp_path / "later")
    folder = worker.upload_folder(job.pk)
    folder.mkdir(parents=True)
    path = write_jsonl([record(trajectory_id=f"q{i}") for i in range(25)], name=f"uploads/{job.pk}/0-q.jsonl")
    ImportJob.objects.filter(pk=job.pk).update(sources=[str(path)])
    assert worker.run_once() == job.pk
    assert worker.run_once() is None, "nothing left: a job is claimed once"
    job.refresh_from_db()
    assert (job.status, job.imported, job.attempts) == ("succeeded", 25, 1)
    assert not folder.exists()


def test_a_killed_run_is_queued_again_and_completes_exactly(store, record, write_jsonl):
    records = [record(trajectory_id=f"k{i:03d}") for i in range(60)]
    path = write_jsonl(records)
    job = _queued(path)
    # Its first run stored the first 20 before its process died.
    head = write_jsonl(records[:20], name="head.jsonl")
    options = ImportOptions(import_id=str(job.pk), batch_size=10)
    run_import(paths=[str(head)], options=options, store=store, errors=ErrorSink())
    _dead_run(job)
    assert worker.run_once() == job.pk
    job.refresh_from_db()
    assert (job.status, job.imported, job.duplicates, job.attempts) == ("succeeded", 60, 0, 2)
    ids = [row["trajectory_id"] for row in all_rows(store)]
    assert len(ids) == len(set(ids)) == 60


def test_a_job_that_keeps_dying_is_failed_with_the_reason(store, record, write_jsonl):
    job = _queued(write_jsonl([record()]))
    _dead_run(job)
    ImportJob.objects.filter(pk=job.pk).update(attempts=worker.MAX_ATTEMPTS)
    assert worker.run_once() is None
    job.refresh_from_db()
    assert job.status == "failed" and f"stopped {worker.MAX_ATTEMPTS} times" in job.failure
    assert "is gone" in job.failure


def test_a_job_whose_files_are_gone_is_failed_not_queued(store, tmp_path):
    job = _queued(tmp_path / "vanished.jsonl")
    _dead_run(job)
    assert worker.run_once() is None
    job.refresh_from_db()
    assert job.status == "failed" and "its files are gone" in job.failure


def test_a_command_job_is_left_for_its_user(store, record, write_jsonl):
    job = _queued(write_jsonl([record()]), origin=ImportJob.Origin.CLI)
    _dead_run(job)
    assert worker.run_once() is None
    job.refresh_from_db()
    assert job.status == "interrupted", "resumed with import_trajectories --resume, not behind its user's back"


def test_the_worker_says_it_is_alive_while_it_serves(store):
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve, kwargs={"stop": stop, "poll": 0.05})
    thread.start()
    try:
        # Up to 30 s: its first beat waits behind this test's own database connection on a busy machine
        # (5 s were not always enough in CI).
        deadline = time.monotonic() + 30
        while not worker.alive_workers() and time.monotonic() < deadline:
            stop.wait(0.05)
        assert worker.alive_workers() == 1
    finally:
        stop.set()
        thread.join()
    assert not ImportWorker.objects.exists(), "a stopped worker removes its row"
