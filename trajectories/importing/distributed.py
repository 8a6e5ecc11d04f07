"""Distributed import on Ray, for dumps no single machine should read (`manage.py import_distributed`).

Each input file is one Ray task that runs the importer's own chunk processing (`chunks.process`:
detection, documents, adapters, validation, derived columns: one shared function, not a copy) and
writes its rows as Lance fragments of a staging table beside the store. The driver commits every
task's fragments at once, then merges the staging table into the store in one commit with the same
duplicate rule as any import (the first record of an id wins; ids already stored are skipped, checked
inside the commit), and lays the records' annotations on the rows it stored.

Parallel: reading, parsing and validating (the Python that holds one core per process) and writing
the staged fragments. One process: the key dedupe (ids and order only) and the merge, which LanceDB
streams in Rust. Ray is an optional dependency (`requirements-distributed.txt`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajectories.store import TrajectoryStore

from . import chunks, readers
from .errors import ErrorSink, Location
from .pipeline import ImportOptions, ImportProgress, ProgressCallback
from .validation import Defaults

# Rejections and warnings a task sends back per file (all are counted; the rest are summarised).
MAX_EVENTS_PER_FILE = 10_000
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FileResult:
    """What one task made of one file: its staged fragments and everything to report."""

    path: str
    fragments: list[str] = field(default_factory=list)
    records: int = 0
    valid: int = 0
    repeated: int = 0
    bytes_read: int = 0
    rejected: int = 0
    warnings: int = 0
    events: list[chunks.Rejected | chunks.Warned] = field(default_factory=list)
    found: dict[str, dict[str, str]] = field(default_factory=dict)


def translate_file(*, path: str, file_index: int, name: str, plan: chunks.Plan, staging_uri: str) -> FileResult:
    """One file, start to end, on a Ray worker: rows staged as fragments, problems returned."""
    from trajectories.store import staging

    result = FileResult(path=name)
    counter = readers.ByteCounter()
    position = [0]

    def tables():
        units = readers.read_units([path], counter, names={path: name}, limits=plan.limits)
        for chunk in chunks.chunked(units):
            outcome = chunks.process(chunk, plan=plan)
            _count(result, outcome)
            for batch in outcome.batches:
                orders = [
                    staging.order_of(file_index=file_index, position=position[0] + i) for i in range(len(batch.ids))
                ]
                position[0] += len(batch.ids)
                annotations = [batch.annotations.get(key) for key in batch.ids]
                yield staging.staged(batch.trajectories, orders=orders, annotations=annotations)

    result.fragments = staging.write_fragments(tables(), uri=staging_uri)
    result.bytes_read = counter.read
    return result


def _count(result: FileResult, outcome: chunks.Outcome) -> None:
    result.records += outcome.records
    result.valid += outcome.valid
    result.repeated += outcome.duplicates
    for file, places in outcome.found.items():
        result.found.setdefault(file, {}).update(places)
    for event in outcome.events:
        if isinstance(event, chunks.Warned):
            result.warnings += 1
        else:
            result.rejected += 1
        if len(result.events) < MAX_EVENTS_PER_FILE:
            result.events.append(event)


def run_distributed(
    *,
    paths: list[str],
    options: ImportOptions,
    store: TrajectoryStore,
    errors: ErrorSink,
    address: str | None = None,
    workers: int = 2,
    on_progress: ProgressCallback | None = None,
    progress_every: float = 0.0,
) -> ImportProgress:
    """Import `paths` on a Ray cluster (`address`, or a local one of `workers` processes); progress
    is reported as each file's task ends (`progress_every` is the single-process importer's)."""
    import ray

    if options.on_duplicate != "skip":
        raise ValueError("a distributed import skips ids already stored (--on-duplicate skip); "
                         "'update' and 'error' need the single-process importer")  # fmt: skip
    started = time.monotonic()
    files = readers.expand_paths(paths)
    progress = ImportProgress(bytes_total=readers.total_bytes(files), files=files)
    defaults = Defaults(
        training_id=options.training_id,
        agent_name=options.agent_name,
        import_id=options.import_id,
        imported_at_us=time.time_ns() // 1000,
    )
    plan = chunks.Plan(
        format_name=options.format_name,
        mapping=options.mapping,
        on_duplicate="skip",
        defaults=defaults,
        limits=options.limits,
    )
    names = dict(options.display_names)
    staging_name = f"_staging_{options.import_id or defaults.imported_at_us}"
    staging_uri = store.staging_uri(name=staging_name)
    _start_ray(ray, address=address, workers=workers)
    # The workers write to the store's own place (a bucket): they get the driver's storage settings.
    storage = {name: value for name, value in os.environ.items() if name.startswith(("AWS_", "AZURE_", "GOOGLE_"))}
    task = ray.remote(max_retries=2)(_translate_task).options(runtime_env={"env_vars": storage} if storage else None)
    pending = [task.remote(path, index, names.get(path, path), plan, staging_uri) for index, path in enumerate(files)]
    fragments: list[str] = []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            result: FileResult = ray.get(done[0])
            fragments.extend(result.fragments)
            _report(result, progress, errors)
            progress.seconds = time.monotonic() - started
            if on_progress is not None:
                on_progress(progress)
        if fragments:
            from trajectories.store import staging

            staging.commit(uri=staging_uri, fragments=fragments)
            merged = store.merge_staged(name=staging_name, imported_at_us=defaults.imported_at_us)
            progress.imported = merged.inserted
            progress.duplicates += merged.repeated + merged.stored
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        store.drop_staging(name=staging_name)
    progress.seconds = time.monotonic() - started
    if on_progress is not None:
        on_progress(progress)
    return progress


def _translate_task(path: str, index: int, name: str, plan: chunks.Plan, staging_uri: str) -> FileResult:
    return translate_file(path=path, file_index=index, name=name, plan=plan, staging_uri=staging_uri)


def _start_ray(ray, *, address: str | None, workers: int) -> None:
    if ray.is_initialized():
        return
    # The workers import trajsite from this checkout: on a local cluster through PYTHONPATH; on a
    # remote one Ray ships it (working_dir), without data, caches or the virtualenv.
    if address:
        runtime_env: dict[str, Any] = {
            "working_dir": str(ROOT),
            "excludes": [".venv", "var", ".git", "tests", "benchmarks", "*.sqlite3"],
        }
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT)}}
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)


def _report(result: FileResult, progress: ImportProgress, errors: ErrorSink) -> None:
    progress.records += result.records
    progress.valid += result.valid
    progress.duplicates += result.repeated
    progress.bytes_read += result.bytes_read
    for file, places in result.found.items():
        progress.found.setdefault(file, {}).update(places)
    itemised = 0
    for event in result.events:
        if isinstance(event, chunks.Warned):
            errors.warn(event.location, event.field, event.reason)
        else:
            itemised += 1
            errors.reject(event.location, event.errors)
    unreported = result.rejected - itemised
    if unreported > 0:
        errors.rejected += unreported
        errors.warn(Location(result.path, 0), "file", f"{unreported:,} more rejections, not itemised")
    progress.rejected = errors.rejected
    progress.warnings = errors.warnings
