"""The import page: upload dumps, watch the import run, read the result; resume or discard an
interrupted one; and the import history."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import SuspiciousFileOperation
from django.db import close_old_connections, connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import get_valid_filename
from django.views.decorators.http import require_POST

from trajectories import priority
from trajectories.auth import DELETE_PERMISSION, can_delete
from trajectories.importing.adapters import AUTO, FORMAT_CHOICES, MAPPING
from trajectories.importing.errors import ErrorSink
from trajectories.importing.jobs import claim, missing_sources, options_of, reap, run_job, start_job
from trajectories.importing.mapping import MAX_MAPPING_BYTES, Mapping, MappingFileError
from trajectories.importing.pipeline import COUNTERS, ON_DUPLICATE_CHOICES, ImportOptions
from trajectories.models import ImportJob

log = logging.getLogger(__name__)
_ACCEPTED = (".jsonl", ".ndjson", ".json", ".traj", ".gz", ".parquet")
_PAGE_SAVE_EVERY = 0.5
# Stored upload names stay far below the 255-byte limit of file names (a longer one was a 500).
_STORED_NAME_CHARS = 100
_SHOWN_NAME_CHARS = 200
REPLACE_PERMISSION_MESSAGE = "replacing stored trajectories ('update') needs the 'Can delete trajectories' permission"


@staff_member_required
def import_page(request: HttpRequest) -> HttpResponse:
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        files = request.FILES.getlist("files")
        mapping, mapping_errors = _uploaded_mapping(request)
        errors = _check_uploads(files) + _check_permission(request) + mapping_errors + _check_format(request)
        status = 400 if errors else 200
        if not errors:
            try:
                job = _start_upload(request, files, mapping)
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


def _check_permission(request: HttpRequest) -> list[str]:
    # Replacing a stored record destroys it as surely as deleting it does.
    if request.POST.get("on_duplicate") == "update" and not request.user.has_perm(DELETE_PERMISSION):
        return [REPLACE_PERMISSION_MESSAGE[0].upper() + REPLACE_PERMISSION_MESSAGE[1:] + "."]
    return []


def _check_format(request: HttpRequest) -> list[str]:
    chosen = request.POST.get("format") or AUTO
    if chosen not in FORMAT_CHOICES or chosen == MAPPING:
        return [f"Format: {chosen!r} is not one of {', '.join(n for n in FORMAT_CHOICES if n != MAPPING)}."]
    return []


def _uploaded_mapping(request: HttpRequest) -> tuple[Mapping | None, list[str]]:
    """The mapping file given with the upload (YAML or JSON), read with the command's own rules."""
    upload = request.FILES.get("mapping")
    if upload is None:
        return None, []
    if upload.size > MAX_MAPPING_BYTES:
        return None, [f"Mapping file: {upload.size:,} bytes is over the {MAX_MAPPING_BYTES:,}-byte limit."]
    suffix = ".json" if upload.name.lower().endswith(".json") else ".yaml"
    with tempfile.NamedTemporaryFile(suffix=suffix) as stream:
        for chunk in upload.chunks():
            stream.write(chunk)
        stream.flush()
        try:
            return Mapping.load(stream.name), []
        except MappingFileError as error:
            return None, [f"Mapping file {upload.name}: {str(error).split(': ', 1)[-1]}"]


def _check_uploads(files) -> list[str]:
    if not files:
        return ["Choose at least one file."]
    problems = []
    for upload in files:
        if not upload.name.lower().endswith(_ACCEPTED):
            problems.append(f"{upload.name}: not a .jsonl, .json, .traj, .parquet or .gz file")
        elif upload.size > settings.TRAJSITE_UPLOAD_MAX_BYTES:
            problems.append(
                f"{upload.name}: {upload.size:,} bytes is over the {settings.TRAJSITE_UPLOAD_MAX_BYTES:,} limit"
            )
    return problems


def _start_upload(request: HttpRequest, files, mapping: Mapping | None) -> ImportJob:
    options = ImportOptions(
        format_name=request.POST.get("format") or AUTO,
        mapping=mapping,
        dry_run=bool(request.POST.get("dry_run")),
        on_duplicate=request.POST.get("on_duplicate")
        if request.POST.get("on_duplicate") in ON_DUPLICATE_CHOICES
        else "skip",
        training_id=request.POST.get("training_id", "").strip()[:200] or None,
        agent_name=request.POST.get("agent_name", "").strip()[:200] or None,
        batch_size=settings.TRAJSITE_IMPORT_BATCH_SIZE,
    )
    job = start_job(paths=[], options=options, user=request.user, origin=ImportJob.Origin.WEB)
    folder = upload_folder(job.pk)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [_store_upload(folder, index, upload) for index, upload in enumerate(files)]
    except OSError as error:
        shutil.rmtree(folder, ignore_errors=True)
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED, failure=f"the upload could not be stored: {error}"
        )
        raise
    names = tuple((path, _shown_name(upload.name)) for path, upload in zip(paths, files, strict=True))
    job.sources = paths
    job.options = {**job.options, "display_names": [list(pair) for pair in names]}
    job.save(update_fields=["sources", "options"])
    _run_in_background(job.pk, replace(options, display_names=names))
    return job


def _store_upload(folder: Path, index: int, upload) -> str:
    # The user's file name never chooses a path: a fresh folder per job, a sanitised, short name in it.
    target = folder / f"{index}-{_stored_name(upload.name)}"
    with open(target, "wb") as stream:
        for chunk in upload.chunks():
            stream.write(chunk)
    return str(target)


def _stored_name(name: str) -> str:
    try:
        clean = get_valid_filename(Path(name).name)
    except SuspiciousFileOperation:
        return "upload"
    if len(clean) <= _STORED_NAME_CHARS:
        return clean
    suffix = "".join(Path(clean).suffixes[-2:])[-20:]
    return clean[: _STORED_NAME_CHARS - len(suffix)] + suffix


def _shown_name(name: str) -> str:
    name = Path(name).name
    if len(name) <= _SHOWN_NAME_CHARS:
        return name
    return name[: _SHOWN_NAME_CHARS // 2] + "…" + name[-_SHOWN_NAME_CHARS // 2 :]


def _run_in_background(job_id: int, options: ImportOptions) -> None:
    threading.Thread(target=_run_upload, args=(job_id, options), name=f"import-{job_id}", daemon=True).start()


def _run_upload(job_id: int, options: ImportOptions) -> None:
    priority.lower_this_thread(settings.TRAJSITE_IMPORT_NICE)  # this thread only: the server's requests go first
    close_old_connections()
    job = ImportJob.objects.get(pk=job_id)
    report = report_path(job_id)
    report.parent.mkdir(parents=True, exist_ok=True)
    errors = ErrorSink(report_path=report)
    try:
        run_job(job=job, options=options, errors=errors, error_report=report, save_every=_PAGE_SAVE_EVERY)
    except Exception:  # the job row records the failure; the thread must not die silently
        log.exception("import #%s failed", job_id)
    finally:
        errors.close()
        if job.status in (ImportJob.Status.SUCCEEDED, ImportJob.Status.PARTIAL) and job.origin == ImportJob.Origin.WEB:
            # Done: the uploaded files are not needed again (a failed job keeps them to be resumed).
            shutil.rmtree(upload_folder(job_id), ignore_errors=True)
        connection.close()


def upload_folder(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "uploads" / str(job_id)


def report_path(job_id: int) -> Path:
    return Path(settings.VAR_DIR) / "import-reports" / f"{job_id}.txt"


@staff_member_required
def import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    reap()
    job = get_object_or_404(ImportJob, pk=job_id)
    context = {
        "job": job,
        "names": job.file_names,
        "missing": missing_sources(job) if job.is_resumable else [],
        "needs_delete_permission": job.options.get("on_duplicate") == "update" and not can_delete(request.user),
    }
    return render(request, "trajectories/import_job.html", context)


@staff_member_required
@require_POST
def resume_job(request: HttpRequest, job_id: int) -> HttpResponse:
    """Run an interrupted or failed job again in the background: what it wrote is skipped."""
    reap()
    job = get_object_or_404(ImportJob, pk=job_id)
    problem = _resume_problem(request, job)
    if problem:
        messages.error(request, problem)
        return redirect("trajectories:import-job", job_id=job.pk)
    # Claimed here, so a second click or a second user cannot start it twice.
    if claim(job.pk, status=job.status):
        _run_in_background(job.pk, options_of(job))
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
