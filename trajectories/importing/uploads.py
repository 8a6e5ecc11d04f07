"""Uploaded dumps, from the import page or the API: checked with the command's rules, stored in a
folder of their own, and queued as an `ImportJob` for the import workers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.utils.text import get_valid_filename

from trajectories.auth import DELETE_PERMISSION
from trajectories.models import ImportJob

from . import worker
from .adapters import AUTO, FORMAT_CHOICES, MAPPING
from .jobs import start_job
from .mapping import MAX_MAPPING_BYTES, Mapping, MappingFileError
from .pipeline import ON_DUPLICATE_CHOICES, ImportOptions

ACCEPTED = (".jsonl", ".ndjson", ".json", ".traj", ".gz", ".parquet")
# Stored upload names stay far below the 255-byte limit of file names (a longer one was a 500).
_STORED_NAME_CHARS = 100
_SHOWN_NAME_CHARS = 200
REPLACE_PERMISSION_MESSAGE = "replacing stored trajectories ('update') needs the 'Can delete trajectories' permission"


def checked(*, files, form, mapping_file, user) -> tuple[Mapping | None, list[str]]:
    """The mapping read from `mapping_file`, and every problem with the upload (none: it can be queued)."""
    mapping, mapping_errors = _uploaded_mapping(mapping_file)
    return mapping, _check_uploads(files) + _check_permission(form, user) + mapping_errors + _check_format(form)


def _check_permission(form, user) -> list[str]:
    # Replacing a stored record destroys it as surely as deleting it does.
    if form.get("on_duplicate") == "update" and not user.has_perm(DELETE_PERMISSION):
        return [REPLACE_PERMISSION_MESSAGE[0].upper() + REPLACE_PERMISSION_MESSAGE[1:] + "."]
    return []


def _check_format(form) -> list[str]:
    chosen = form.get("format") or AUTO
    if chosen not in FORMAT_CHOICES or chosen == MAPPING:
        return [f"Format: {chosen!r} is not one of {', '.join(n for n in FORMAT_CHOICES if n != MAPPING)}."]
    return []


def _uploaded_mapping(upload) -> tuple[Mapping | None, list[str]]:
    """The mapping file given with the upload (YAML or JSON), read with the command's own rules."""
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
        if not upload.name.lower().endswith(ACCEPTED):
            problems.append(f"{upload.name}: not a .jsonl, .json, .traj, .parquet or .gz file")
        elif upload.size > settings.TRAJSITE_UPLOAD_MAX_BYTES:
            problems.append(
                f"{upload.name}: {upload.size:,} bytes is over the {settings.TRAJSITE_UPLOAD_MAX_BYTES:,} limit"
            )
    return problems


def queue(*, files, form, mapping: Mapping | None, user, origin: str) -> ImportJob:
    """Store the files under a new job's own folder and queue it; OSError when they cannot be stored."""
    options = ImportOptions(
        format_name=form.get("format") or AUTO,
        mapping=mapping,
        dry_run=bool(form.get("dry_run")),
        on_duplicate=form.get("on_duplicate") if form.get("on_duplicate") in ON_DUPLICATE_CHOICES else "skip",
        training_id=form.get("training_id", "").strip()[:200] or None,
        agent_name=form.get("agent_name", "").strip()[:200] or None,
        batch_size=settings.TRAJSITE_IMPORT_BATCH_SIZE,
    )
    job = start_job(paths=[], options=options, user=user, origin=origin)
    folder = worker.upload_folder(job.pk)
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
    worker.enqueue(job)
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
