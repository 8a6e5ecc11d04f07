"""Running an import as an `ImportJob`: who imported what, when, how it went, and whether its
process is still alive.

A running job names its process (host, pid, start time) and beats every few seconds. A job whose
process is gone (kill -9, out of memory, a web worker restarted mid-upload) is found by `reap` and
shown as interrupted; running it again (`resume`) completes it exactly, since what it wrote before is
skipped as duplicates.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

import psutil
from django.db import DatabaseError, connection
from django.utils import timezone

from trajectories.events import log_event
from trajectories.models import ImportJob
from trajectories.store import commits, get_store

from . import readers
from .errors import ErrorSink
from .mapping import Mapping
from .pipeline import COUNTERS, ImportOptions, ImportProgress, ProgressCallback, run_import

log = logging.getLogger(__name__)
# How often a running job's row is updated, so a page can show its progress.
_SAVE_EVERY_SECONDS = 2.0
HEARTBEAT_SECONDS = 5.0
# A job on another host is presumed dead after this long without a heartbeat.
STALE_AFTER_SECONDS = 60.0


class ImportInterrupted(BaseException):
    """The importing process was asked to stop (SIGTERM): the job is interrupted, not failed."""


def start_job(*, paths: list[str], options: ImportOptions, user=None, origin: str = ImportJob.Origin.CLI) -> ImportJob:
    recorded = {key: value for key, value in asdict(options).items() if key != "mapping"}
    recorded["mapping"] = options.mapping.definition if options.mapping is not None else None
    # Owned from the start: a process killed while an upload is still being stored shows as interrupted.
    return ImportJob.objects.create(sources=list(paths), options=recorded, created_by=user, origin=origin, **_owner())


def options_of(job: ImportJob) -> ImportOptions:
    """The options a job was started with, to run it again."""
    recorded = dict(job.options)
    mapping = recorded.pop("mapping", None)
    limits = recorded.pop("limits", None)
    names = recorded.pop("display_names", ())
    known = set(ImportOptions.__dataclass_fields__)
    options = ImportOptions(**{key: value for key, value in recorded.items() if key in known})
    return replace(
        options,
        mapping=Mapping(**mapping) if isinstance(mapping, dict) else None,
        limits=readers.Limits(**limits) if isinstance(limits, dict) else options.limits,
        display_names=tuple(tuple(pair) for pair in names),
    )


def run_job(
    *,
    job: ImportJob,
    options: ImportOptions,
    errors: ErrorSink,
    error_report: Path | None = None,
    on_progress: ProgressCallback | None = None,
    save_every: float = _SAVE_EVERY_SECONDS,
    runner=run_import,
) -> ImportProgress:
    """Run the import recorded by `job`, keeping its row up to date; re-raises after marking the end.
    `runner` is the importer (`run_import`, or the distributed one), called with its keywords."""
    options = replace(options, import_id=str(job.pk))
    _claim(job)
    last_saved = [0.0]

    def progress_hook(progress: ImportProgress) -> None:
        if on_progress is not None:
            on_progress(progress)
        if time.monotonic() - last_saved[0] >= save_every:
            last_saved[0] = time.monotonic()
            _copy_counts(job, progress)
            job.heartbeat_at = timezone.now()
            try:
                job.save(update_fields=[*COUNTERS, "findings", "duration_seconds", "heartbeat_at"])
            except DatabaseError as error:  # progress only: the next save brings it up to date
                log.warning("import #%s: progress not recorded: %s", job.pk, error)

    store = None if options.dry_run else get_store()
    heartbeat = _Heartbeat(job.pk)
    try:
        progress = runner(
            paths=job.sources,
            options=options,
            store=store,
            errors=errors,
            on_progress=progress_hook,
            progress_every=min(0.5, save_every),
        )
    except (ImportInterrupted, KeyboardInterrupt) as error:
        _end(job, ImportJob.Status.INTERRUPTED, errors, error_report, failure=f"stopped: {error or 'interrupted'}")
        raise
    except BaseException as error:
        _end(job, ImportJob.Status.FAILED, errors, error_report, failure=_failure(error))
        raise
    finally:
        heartbeat.stop()
    _copy_counts(job, progress)
    if job.attempts > 1 and store is not None:
        _count_earlier_runs(job, store)
    status = ImportJob.Status.PARTIAL if errors.rejected else ImportJob.Status.SUCCEEDED
    _end(job, status, errors, error_report)
    return progress


def _failure(error: BaseException) -> str:
    """Why a run failed, plainly first when the storage refused: what it stored stays, resuming continues."""
    problem = commits.storage_problem(error)
    detail = f"{type(error).__name__}: {error}"
    if problem is None:
        return detail
    return f"{problem}; the batches stored before stay, resume once it is fixed ({detail[:300]})"


def claim(job_id: int, *, status: str) -> bool:
    """Mark a job in `status` as running in this process; False when another caller got it first."""
    return bool(ImportJob.objects.filter(pk=job_id, status=status).update(**_owner(), failure="", finished_at=None))


def _claim(job: ImportJob) -> None:
    for name, value in _owner().items():
        setattr(job, name, value)
    job.finished_at = None
    job.failure = ""
    job.attempts += 1
    _save_surely(job)


def _owner() -> dict:
    me = psutil.Process()
    return {
        "status": ImportJob.Status.RUNNING,
        "owner_host": socket.gethostname()[:255],
        "owner_pid": me.pid,
        "owner_started": me.create_time(),
        "heartbeat_at": timezone.now(),
    }


def _count_earlier_runs(job: ImportJob, store) -> None:
    """A resumed job: rows its earlier runs wrote were skipped as duplicates in this one."""
    total = store.count_imported(import_id=str(job.pk))
    job.duplicates = max(job.duplicates - (total - job.imported), 0)
    job.imported = total


def _copy_counts(job: ImportJob, progress: ImportProgress) -> None:
    for name, value in progress.counts().items():
        setattr(job, name, value)
    job.findings = progress.found
    job.duration_seconds = progress.seconds


def _end(job: ImportJob, status: str, errors: ErrorSink, error_report: Path | None, *, failure: str = "") -> None:
    job.status = status
    job.failure = failure
    job.rejected = errors.rejected
    job.first_errors = errors.first + errors.first_warnings
    job.error_report = str(error_report) if error_report else ""
    job.finished_at = timezone.now()
    _save_surely(job)
    log_event(
        "import_finished",
        job=job.pk,
        status=status,
        origin=job.origin,
        attempt=job.attempts,
        **{name: getattr(job, name) for name in COUNTERS},
        seconds=round(job.duration_seconds, 2),
        records_per_second=round(job.records_per_second),
        failure=failure or None,
        warning=status not in (ImportJob.Status.SUCCEEDED, ImportJob.Status.PARTIAL),
    )


def _save_surely(job: ImportJob, attempts: int = 20) -> None:
    """The row that says how a job ended must land: a busy database (SQLite's locks) is waited out."""
    for attempt in range(attempts):
        try:
            job.save()
            return
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class _Heartbeat:
    """Marks the job alive every few seconds from its own thread, whatever the import is busy with."""

    def __init__(self, job_id: int) -> None:
        self._job_id = job_id
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"import-{job_id}-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(HEARTBEAT_SECONDS):
                try:
                    running = ImportJob.objects.filter(pk=self._job_id, status=ImportJob.Status.RUNNING)
                    running.update(heartbeat_at=timezone.now())
                except DatabaseError as error:
                    log.warning("import #%s: heartbeat not recorded: %s", self._job_id, error)
        finally:
            connection.close()


def reap() -> list[int]:
    """Mark running jobs whose process is gone as interrupted; returns their ids."""
    found = []
    for job in ImportJob.objects.filter(status=ImportJob.Status.RUNNING):
        reason = _why_dead(job)
        if reason is None:
            continue
        stopped = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING, heartbeat_at=job.heartbeat_at)
        if stopped.update(status=ImportJob.Status.INTERRUPTED, failure=reason, finished_at=timezone.now()):
            found.append(job.pk)
    return found


def _why_dead(job: ImportJob) -> str | None:
    where = f"pid {job.owner_pid} on {job.owner_host or 'an unknown host'}"
    if job.owner_host == socket.gethostname() and job.owner_pid:
        return None if _alive(job.owner_pid, job.owner_started) else f"its process ({where}) is gone"
    last = job.heartbeat_at or job.created_at
    if timezone.now() - last > timedelta(seconds=STALE_AFTER_SECONDS):
        return f"no sign of its process ({where}) since {last:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _alive(pid: int, started: float | None) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        # A recycled pid belongs to another process: its start time differs.
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's live process
        return True


def missing_sources(job: ImportJob) -> list[str]:
    """Sources a resumed job could not read again (stdin, files removed since, an unfinished upload)."""
    if not job.sources:
        return ["(its upload never finished)"]
    return [path for path in job.sources if path == readers.STDIN or not os.path.exists(path)]
