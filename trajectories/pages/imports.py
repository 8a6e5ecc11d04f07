"""The import page: upload dumps, watch the import run, read the result; and the import history."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db import close_old_connections, connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import get_valid_filename

from trajectories.importing.errors import ErrorSink
from trajectories.importing.jobs import run_job, start_job
from trajectories.importing.pipeline import ON_DUPLICATE_CHOICES, ImportOptions
from trajectories.models import ImportJob

log = logging.getLogger(__name__)
_ACCEPTED = (".jsonl", ".ndjson", ".json", ".traj", ".gz")
_PAGE_SAVE_EVERY = 0.5


@staff_member_required
def import_page(request: HttpRequest) -> HttpResponse:
    errors: list[str] = []
    if request.method == "POST":
        files = request.FILES.getlist("files")
        errors = _check_uploads(files)
        if not errors:
            job = _start_upload(request, files)
            return redirect("trajectories:import-job", job_id=job.pk)
    context = {
        "errors": errors,
        "jobs": ImportJob.objects.select_related("created_by")[:25],
        "on_duplicate_choices": ON_DUPLICATE_CHOICES,
        "max_bytes": settings.TRAJSITE_UPLOAD_MAX_BYTES,
    }
    return render(request, "trajectories/import.html", context, status=400 if errors else 200)


def _check_uploads(files) -> list[str]:
    if not files:
        return ["Choose at least one file."]
    problems = []
    for upload in files:
        if not upload.name.lower().endswith(_ACCEPTED):
            problems.append(f"{upload.name}: not a .jsonl, .json, .traj or .gz file")
        elif upload.size > settings.TRAJSITE_UPLOAD_MAX_BYTES:
            problems.append(
                f"{upload.name}: {upload.size:,} bytes is over the {settings.TRAJSITE_UPLOAD_MAX_BYTES:,} limit"
            )
    return problems


def _start_upload(request: HttpRequest, files) -> ImportJob:
    options = ImportOptions(
        on_duplicate=request.POST.get("on_duplicate")
        if request.POST.get("on_duplicate") in ON_DUPLICATE_CHOICES
        else "skip",
        training_id=request.POST.get("training_id", "").strip()[:200] or None,
        agent_name=request.POST.get("agent_name", "").strip()[:200] or None,
    )
    job = start_job(paths=[], options=options, user=request.user, origin=ImportJob.Origin.WEB)
    folder = _upload_folder(job.pk)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, upload in enumerate(files):
        # The user's file name never chooses a path: a fresh folder per job, a sanitised name in it.
        target = folder / f"{index}-{get_valid_filename(Path(upload.name).name)}"
        with open(target, "wb") as stream:
            for chunk in upload.chunks():
                stream.write(chunk)
        paths.append(str(target))
    job.sources = paths
    job.save(update_fields=["sources"])
    names = tuple((path, Path(upload.name).name) for path, upload in zip(paths, files, strict=True))
    options = replace(options, display_names=names)
    threading.Thread(target=_run_upload, args=(job.pk, options), name=f"import-{job.pk}", daemon=True).start()
    return job


def _run_upload(job_id: int, options: ImportOptions) -> None:
    close_old_connections()
    job = ImportJob.objects.get(pk=job_id)
    report = _upload_folder(job_id) / "errors.txt"
    errors = ErrorSink(report_path=report)
    try:
        run_job(job=job, options=options, errors=errors, error_report=report, save_every=_PAGE_SAVE_EVERY)
    except Exception:  # the job row records the failure; the thread must not die silently
        log.exception("import #%s failed", job_id)
    finally:
        errors.close()
        connection.close()


def _upload_folder(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "uploads" / str(job_id)


@staff_member_required
def import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(ImportJob, pk=job_id)
    return render(request, "trajectories/import_job.html", {"job": job, "names": _names(job)})


@staff_member_required
def import_job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    job = get_object_or_404(ImportJob, pk=job_id)
    fraction = job.bytes_read / job.bytes_total if job.bytes_total else 0.0
    return JsonResponse(
        {
            "status": job.status,
            "finished": job.finished_at is not None,
            "records": job.records,
            "imported": job.imported,
            "duplicates": job.duplicates,
            "rejected": job.rejected,
            "bytes_read": job.bytes_read,
            "bytes_total": job.bytes_total,
            "fraction": round(fraction, 4),
            "records_per_second": round(job.records_per_second),
        }
    )


@staff_member_required
def import_job_report(request: HttpRequest, job_id: int) -> FileResponse:
    job = get_object_or_404(ImportJob, pk=job_id)
    report = Path(job.error_report) if job.error_report else None
    if report is None or not report.is_file():
        raise Http404("this import has no error report")
    return FileResponse(open(report, "rb"), as_attachment=True, filename=f"import-{job.pk}-errors.txt")


def _names(job: ImportJob) -> list[str]:
    return [
        Path(source).name.split("-", 1)[-1] if job.origin == ImportJob.Origin.WEB else source for source in job.sources
    ]
