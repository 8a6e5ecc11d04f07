"""The import page: upload dumps, watch the import run, read the result; resume or discard an
interrupted one; and the import history."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from trajectories.auth import DELETE_PERMISSION, can_delete
from trajectories.importing import uploads
from trajectories.importing.adapters import FORMAT_CHOICES, MAPPING
from trajectories.importing.jobs import missing_sources, reap
from trajectories.importing.pipeline import COUNTERS, ON_DUPLICATE_CHOICES
from trajectories.importing.uploads import REPLACE_PERMISSION_MESSAGE
from trajectories.importing.worker import alive_workers, upload_folder
from trajectories.models import ImportJob

log = logging.getLogger(__name__)


@staff_member_required
def import_page(request: HttpRequest) -> HttpResponse:
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        files = request.FILES.getlist("files")
        form = request.POST
        mapping, errors = uploads.checked(
            files=files, form=form, mapping_file=request.FILES.get("mapping"), user=request.user
        )
        status = 400 if errors else 200
        if not errors:
            try:
                job = uploads.queue(
                    files=files, form=form, mapping=mapping, user=request.user, origin=ImportJob.Origin.WEB
                )
            except OSError as error:
                errors, status = [f"The upload could not be stored: {error.strerror or error}."], 507
            else:
                return redirect("trajectories:import-job", job_id=job.pk)
    reap()
    context = {
        "errors": errors,
        "jobs": ImportJob.objects.select_related("created_by")[:25],
        "on_duplicate_choices": ON_DUPLICATE_CHOICES,
        "format_choices": [name for name in FORMAT_CHOICES if name != MAPPING],
        "form": request.POST if request.method == "POST" else {},
        "max_bytes": settings.TRAJSITE_UPLOAD_MAX_BYTES,
        "can_replace": can_delete(request.user),
    }
    return render(request, "trajectories/import.html", context, status=status)


@staff_member_required
def import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    reap()
    job = get_object_or_404(ImportJob, pk=job_id)
    context = {
        "job": job,
        "names": job.file_names,
        # A queued job waits for a worker: if none is alive, say so instead of waiting silently.
        "no_worker": job.status == ImportJob.Status.QUEUED and not alive_workers(),
        "missing": missing_sources(job) if job.is_resumable else [],
        "needs_delete_permission": job.options.get("on_duplicate") == "update" and not can_delete(request.user),
    }
    return render(request, "trajectories/import_job.html", context)


@staff_member_required
@require_POST
def resume_job(request: HttpRequest, job_id: int) -> HttpResponse:
    """Queue an interrupted or failed job for the import workers: what it wrote is skipped."""
    reap()
    job = get_object_or_404(ImportJob, pk=job_id)
    problem = _resume_problem(request, job)
    if problem:
        messages.error(request, problem)
        return redirect("trajectories:import-job", job_id=job.pk)
    # Queued only from the state the page showed, so a second click or a second user queues it once.
    ImportJob.objects.filter(pk=job.pk, status=job.status).update(
        status=ImportJob.Status.QUEUED, failure="", finished_at=None
    )
    return redirect("trajectories:import-job", job_id=job.pk)


def _resume_problem(request: HttpRequest, job: ImportJob) -> str | None:
    if not job.is_resumable:
        return f"Import #{job.pk} is {job.get_status_display()}: only failed or interrupted imports can be resumed."
    if job.options.get("on_duplicate") == "update" and not request.user.has_perm(DELETE_PERMISSION):
        return REPLACE_PERMISSION_MESSAGE[0].upper() + REPLACE_PERMISSION_MESSAGE[1:] + "."
    missing = missing_sources(job)
    if missing:
        return f"Its files are gone ({', '.join(missing)}); import them again, or discard this job."
    return None


@staff_member_required
@require_POST
def discard_job(request: HttpRequest, job_id: int) -> HttpResponse:
    """Give up an interrupted or failed job: its uploaded files are removed; what it wrote stays."""
    reap()
    job = get_object_or_404(ImportJob, pk=job_id)
    if not job.is_resumable:
        messages.error(request, f"Import #{job.pk} is {job.get_status_display()}: nothing to discard.")
        return redirect("trajectories:import-job", job_id=job.pk)
    if not ImportJob.objects.filter(pk=job.pk, status=job.status).update(status=ImportJob.Status.DISCARDED):
        messages.error(request, f"Import #{job.pk} was resumed meanwhile; it is not discarded.")
        return redirect("trajectories:import-job", job_id=job.pk)
    if job.origin == ImportJob.Origin.WEB:
        shutil.rmtree(upload_folder(job.pk), ignore_errors=True)
    messages.success(request, f"Import #{job.pk} discarded; the {job.imported:,} trajectories it imported stay.")
    return redirect("trajectories:import-job", job_id=job.pk)


@staff_member_required
def import_job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    reap()
    job = get_object_or_404(ImportJob, pk=job_id)
    fraction = job.bytes_read / job.bytes_total if job.bytes_total else 0.0
    return JsonResponse(
        {
            "status": job.status,
            "outcome": job.outcome,
            "finished": job.finished_at is not None,
            **{name: getattr(job, name) for name in COUNTERS},
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
