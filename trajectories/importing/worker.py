"""The import worker: runs queued `ImportJob`s (web and API uploads) in its own process, so no web
server thread ever imports, and a web server restarted mid-import loses nothing.

Several workers may run, on one host or many (they share the database): each claims a job with one
conditional update, so a job runs once. A worker killed mid-import leaves its job "running" with a
dead owner; the next worker's pass marks it interrupted (`jobs.reap`) and queues it again, and the
rerun skips what the first run wrote as duplicates. After `MAX_ATTEMPTS` runs, or when its files
are gone, the job is marked failed with the reason instead: never "running" or "queued" forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from trajectories import priority
from trajectories.models import ImportJob, ImportWorker

from .errors import ErrorSink
from .jobs import ImportInterrupted, claim, missing_sources, options_of, reap, run_job

log = logging.getLogger(__name__)
# Runs of one job before it is failed for good (a record that kills the process every time).
MAX_ATTEMPTS = 5
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
# A worker that has not beaten for this long is not counted as alive (`/healthz`).
WORKER_STALE_SECONDS = 30.0
_PAGE_SAVE_EVERY = 0.5


def upload_folder(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "uploads" / str(job_id)


def report_path(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "import-reports" / f"{job_id}.txt"


def enqueue(job: ImportJob) -> None:
    """Hand a job whose files are stored to the workers."""
    job.status = ImportJob.Status.QUEUED
    job.owner_pid = None
    job.heartbeat_at = timezone.now()
    job.save(update_fields=["status", "owner_pid", "heartbeat_at"])


def requeue_interrupted() -> list[int]:
    """Queue again the worker-run jobs that were cut short; fail those that cannot run again."""
    queued = []
    interrupted = ImportJob.objects.filter(status=ImportJob.Status.INTERRUPTED, origin__in=ImportJob.QUEUED_ORIGINS)
    for job in interrupted:
        unchanged = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.INTERRUPTED)
        missing = missing_sources(job)
        if missing:
            unchanged.update(status=ImportJob.Status.FAILED, failure=f"{job.failure}; its files are gone")
        elif job.attempts >= MAX_ATTEMPTS:
            reason = f"stopped {job.attempts} times, last: {job.failure}; not retried again"
            unchanged.update(status=ImportJob.Status.FAILED, failure=reason)
        elif unchanged.update(status=ImportJob.Status.QUEUED, finished_at=None):
            log.info("import #%s queued again after: %s", job.pk, job.failure)
            queued.append(job.pk)
    return queued


def claim_next() -> ImportJob | None:
    """The oldest queued job, now running in this process; None when the queue is empty."""
    for job_id in ImportJob.objects.filter(status=ImportJob.Status.QUEUED).order_by("pk").values_list("pk", flat=True):
        if claim(job_id, status=ImportJob.Status.QUEUED):
            return ImportJob.objects.get(pk=job_id)
    return None


def run_once() -> int | None:
    """One pass: find dead runs, queue them again, run the next job. Returns the job run, if any."""
    reap()
    requeue_interrupted()
    job = claim_next()
    if job is None:
        return None
    _Beat.current_job = job.pk
    try:
        run_queued(job)
    finally:
        _Beat.current_job = None
    return job.pk


def run_queued(job: ImportJob) -> None:
    """Run a claimed job to its end; its uploaded files go once it has stored everything."""
    report = report_path(job.pk)
    report.parent.mkdir(parents=True, exist_ok=True)
    errors = ErrorSink(report_path=report)
    options = options_of(job)
    try:
        run_job(job=job, options=options, errors=errors, error_report=report, save_every=_PAGE_SAVE_EVERY)
    except ImportInterrupted:
        raise
    except Exception:  # the job row records the failure; the worker goes on with the next job
        log.exception("import #%s failed", job.pk)
    finally:
        errors.close()
        if job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.PARTIAL) and job.origin != ImportJob.Origin.CLI:
            # Done: the uploaded files are not needed again (a failed job keeps them to be resumed).
            shutil.rmtree(upload_folder(job.pk), ignore_errors=True)


def serve(*, stop: threading.Event, poll: float = POLL_SECONDS, once: bool = False) -> None:
    """Run jobs until `stop` is set (SIGTERM interrupts a running import: it is queued again)."""
    priority.lower_this_thread(settings.TRAJSITE_IMPORT_NICE)
    beat = _Beat()
    try:
        while not stop.is_set():
            close_old_connections()
            try:
                ran = run_once()
            except DatabaseError as error:  # a locked SQLite, a database restart: try again shortly
                log.warning("import worker: %s", error)
                ran = None
            if once and ran is None:
                return
            if ran is None:
                stop.wait(poll)
    finally:
        beat.stop()


def alive_workers() -> int:
    since = timezone.now() - timedelta(seconds=WORKER_STALE_SECONDS)
    return ImportWorker.objects.filter(heartbeat_at__gte=since).count()


def interrupt_on_sigterm() -> None:
    """SIGTERM stops a running import at once (marked interrupted, queued again by the next worker)."""

    def stop(signum, frame):
        raise ImportInterrupted(f"worker {os.getpid()} received SIGTERM")

    signal.signal(signal.SIGTERM, stop)


class _Beat:
    """This worker's row in `ImportWorker`, touched every few seconds from its own thread."""

    current_job: int | None = None

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._key = {"host": socket.gethostname()[:255], "pid": os.getpid()}
        self._touch()
        self._thread = threading.Thread(target=self._run, name="import-worker-heartbeat", daemon=True)
        self._thread.start()

    def _touch(self) -> None:
        values = {"heartbeat_at": timezone.now(), "job_id": _Beat.current_job}
        ImportWorker.objects.update_or_create(**self._key, defaults=values)

    def _run(self) -> None:
        try:
            while not self._stopped.wait(HEARTBEAT_SECONDS):
                try:
                    self._touch()
                except DatabaseError as error:
                    log.warning("import worker heartbeat not recorded: %s", error)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        with contextlib.suppress(DatabaseError):  # the row goes stale on its own
            ImportWorker.objects.filter(**self._key).delete()
