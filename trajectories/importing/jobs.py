"""Running an import as an `ImportJob`: the record of who imported what, when, and how it went."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from django.utils import timezone

from trajectories.models import ImportJob
from trajectories.signals import trajectories_changed
from trajectories.store import get_store

from .errors import ErrorSink
from .pipeline import ImportOptions, ImportProgress, ProgressCallback, run_import

# How often a running job's row is updated, so a page can show its progress.
_SAVE_EVERY_SECONDS = 2.0


def start_job(*, paths: list[str], options: ImportOptions, user=None, origin: str = ImportJob.Origin.CLI) -> ImportJob:
    recorded = {key: value for key, value in asdict(options).items() if key != "mapping"}
    recorded["mapping"] = options.mapping is not None
    return ImportJob.objects.create(sources=list(paths), options=recorded, created_by=user, origin=origin)


def run_job(
    *,
    job: ImportJob,
    options: ImportOptions,
    errors: ErrorSink,
    error_report: Path | None = None,
    on_progress: ProgressCallback | None = None,
    save_every: float = _SAVE_EVERY_SECONDS,
) -> ImportProgress:
    """Run the import recorded by `job`, keeping the row up to date; re-raises after marking failure."""
    options = replace(options, import_id=str(job.pk))
    last_saved = [0.0]

    def progress_hook(progress: ImportProgress) -> None:
        if on_progress is not None:
            on_progress(progress)
        if time.monotonic() - last_saved[0] >= save_every:
            last_saved[0] = time.monotonic()
            _copy_counts(job, progress)
            job.save()

    store = None if options.dry_run else get_store()
    try:
        progress = run_import(
            paths=job.sources,
            options=options,
            store=store,
            errors=errors,
            on_progress=progress_hook,
            progress_every=min(0.5, save_every),
        )
    except BaseException as error:
        job.status = ImportJob.Status.FAILED
        job.failure = f"{type(error).__name__}: {error}"
        _finish(job, errors, error_report)
        raise
    finally:
        if store is not None:
            trajectories_changed.send(sender=ImportJob, job_id=job.pk)
    _copy_counts(job, progress)
    job.status = ImportJob.Status.PARTIAL if errors.rejected else ImportJob.Status.SUCCEEDED
    _finish(job, errors, error_report)
    return progress


def _copy_counts(job: ImportJob, progress: ImportProgress) -> None:
    job.records = progress.records
    job.imported = progress.imported
    job.updated = progress.updated
    job.duplicates = progress.duplicates
    job.rejected = progress.rejected
    job.warnings = progress.warnings
    job.bytes_read = progress.bytes_read
    job.bytes_total = progress.bytes_total
    job.duration_seconds = progress.seconds


def _finish(job: ImportJob, errors: ErrorSink, error_report: Path | None) -> None:
    job.rejected = errors.rejected
    job.first_errors = errors.first + errors.first_warnings
    job.error_report = str(error_report) if error_report else ""
    job.finished_at = timezone.now()
    job.save()
