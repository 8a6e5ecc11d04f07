"""The import pipeline: read units here → process chunks (`chunks`: parse, adapt, validate, Arrow) →
gather them into writes here → check ids and write on a writer thread.

`ImportRun` is one run over a set of files: `ImportRun(paths=..., options=..., store=..., errors=...).run()`.
Processing is Python and holds the GIL, so a large import runs it in worker processes (one per core by
default); a small one runs it on this thread, where starting workers would cost more than it saves.
Outcomes come back in input order, so reports and duplicate rules read as if one process did it all.
LanceDB writes run in Rust and release the GIL. The writer checks each batch's ids against the store
right before writing it, in order, so duplicates across batches, files and earlier imports are all
caught in bulk. When a run has written anything (even if it then fails), it sends
`trajectories_changed` itself, so every caller's caches are invalidated, not only the command's.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings

from trajectories.signals import trajectories_changed
from trajectories.store import TrajectoryStore

from . import adapters, chunks, readers
from .batches import DUPLICATE_IN_IMPORT, MAX_BATCH_BYTES, Batch, PendingWrite
from .errors import ErrorSink, FieldError, Location
from .mapping import Mapping
from .validation import Defaults

ON_DUPLICATE_CHOICES = ("skip", "update", "error")
_PENDING_BATCHES = 2
# Ids a run tracks itself before folding them into the store's index (~100 bytes each).
REMEMBER_IDS = 1_000_000
# Rows written between two folds of new rows into the indexes during an import: content search scans
# rows not yet indexed (2,000 of them made a search 900 ms instead of 5 ms), and readers browse
# while long imports land. A fold adds a small index segment (tens of milliseconds), so past the first
# few the interval grows with the import (a quarter of what it wrote): ~25 segments for 10M rows.
INDEX_EVERY_ROWS = 20_000
IMPORT_DEADLINE_SECONDS = 600.0


@dataclass(frozen=True)
class ImportOptions:
    format_name: str = adapters.AUTO
    mapping: Mapping | None = None
    on_duplicate: str = "skip"
    training_id: str | None = None
    agent_name: str | None = None
    dry_run: bool = False
    batch_size: int = 5000
    limits: readers.Limits = field(default_factory=lambda: configured_limits())
    import_id: str | None = None
    # (path, name shown in errors and `source`) pairs, e.g. an upload's original file name.
    display_names: tuple[tuple[str, str], ...] = ()
    # Worker processes for parsing and validation; None: TRAJSITE_IMPORT_WORKERS for a large import.
    workers: int | None = None


@dataclass
class ImportCounts:
    """The counters of an import: what the progress display, the ImportJob row and its JSON status
    show (`COUNTERS` lists them; the ImportJob model has a column for each)."""

    records: int = 0
    imported: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    warnings: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None


COUNTERS = tuple(counter.name for counter in fields(ImportCounts))


@dataclass
class ImportProgress(ImportCounts):
    """The counters, and what only a running import knows."""

    valid: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)
    in_import_duplicates: int = 0
    # Per file, where records were found inside documents: {"r.json": {"simulations": "50 records"}}.
    found: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in COUNTERS}


ProgressCallback = Callable[[ImportProgress], None]


def configured_limits(
    *, max_line_bytes: int | None = None, max_document_bytes: int | None = None, max_values: int | None = None
) -> readers.Limits:
    """The reading limits from settings, or the ones given."""
    return readers.Limits(
        max_line_bytes=max_line_bytes or settings.TRAJSITE_IMPORT_MAX_LINE_BYTES,
        max_document_bytes=max_document_bytes or settings.TRAJSITE_IMPORT_MAX_DOCUMENT_BYTES,
        max_values=max_values or settings.TRAJSITE_IMPORT_MAX_JSON_VALUES,
    )


def run_import(
    *,
    paths: list[str],
    options: ImportOptions,
    store: TrajectoryStore | None,
    errors: ErrorSink,
    on_progress: ProgressCallback | None = None,
    progress_every: float = 0.5,
) -> ImportProgress:
    """Import every record under `paths`; returns the final counts. `store` may be None on dry runs."""
    run = ImportRun(paths=paths, options=options, store=store, errors=errors, on_progress=on_progress)
    return run.run(progress_every=progress_every)


class ImportRun:
    """One import of a set of files: the reading side runs on the caller's thread, `_Writer` on its own."""

    def __init__(
        self,
        *,
        paths: list[str],
        options: ImportOptions,
        store: TrajectoryStore | None,
        errors: ErrorSink,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.errors = errors
        self.on_progress = on_progress
        skipped: list[str] = []
        self.files = readers.expand_paths(paths, skipped=skipped)
        for path in skipped:
            errors.warn(Location(path, 0), "file", "not a regular file (a FIFO, device or link to one); skipped")
        self.progress = ImportProgress(bytes_total=readers.total_bytes(self.files), files=self.files)
        self.counter = readers.ByteCounter()
        self.defaults = Defaults(
            training_id=options.training_id,
            agent_name=options.agent_name,
            import_id=options.import_id,
            imported_at_us=time.time_ns() // 1000,
        )
        self.plan = chunks.Plan(
            format_name=options.format_name,
            mapping=options.mapping,
            on_duplicate=options.on_duplicate,
            defaults=self.defaults,
            limits=options.limits,
        )
        self.pending = PendingWrite(on_duplicate=options.on_duplicate)
        self.writer: _Writer | None = None
        self._per_file: dict[str, int] = {}
        self._started = time.monotonic()

    def run(self, *, progress_every: float = 0.5) -> ImportProgress:
        if not self.options.dry_run:
            self.writer = _Writer(
                store=self.store, options=self.options, errors=self.errors, imported_at_us=self.defaults.imported_at_us
            )
        try:
            try:
                self._read_all(progress_every)
            finally:
                if self.writer is not None:
                    self.writer.close()
            self._report()
            if self.wrote:
                self.store.refresh_indexes()
        finally:
            if self.writer is not None and self.writer.touched:
                # After the index refresh (its versions are the ones readers should move to), and
                # even when the run failed: whatever it wrote is stored, and caches must say so.
                trajectories_changed.send(sender=ImportRun, import_id=self.options.import_id)
        return self.progress

    def _read_all(self, progress_every: float) -> None:
        last_report = self._started
        units = readers.read_units(
            self.files, self.counter, names=dict(self.options.display_names), limits=self.options.limits
        )
        for outcome in chunks.processed(chunks.chunked(units), plan=self.plan, workers=self._workers()):
            self._take(outcome)
            if time.monotonic() - last_report >= progress_every:
                last_report = time.monotonic()
                self._report()
        self._flush()

    def _workers(self) -> int:
        """Worker processes for this run: none for a small import."""
        if self.options.workers is not None:
            return self.options.workers
        size = self.progress.bytes_total
        if size is not None and size < settings.TRAJSITE_IMPORT_PARALLEL_BYTES:
            return 0
        return settings.TRAJSITE_IMPORT_WORKERS

    @property
    def wrote(self) -> bool:
        return self.writer is not None and bool(self.writer.inserted + self.writer.updated)

    def _report(self) -> None:
        progress = self.progress
        if self.writer is not None:
            self.writer.copy_counts(progress)
        progress.bytes_read = self.counter.read
        progress.rejected = self.errors.rejected
        progress.warnings = self.errors.warnings
        progress.seconds = time.monotonic() - self._started
        for file, count in self._per_file.items():
            # Every file's count, first among what the import says of it.
            places = {path: what for path, what in progress.found.get(file, {}).items() if path != "(all)"}
            progress.found[file] = {"(all)": f"{count:,} record{'s' * (count != 1)} read", **places}
        if self.on_progress is not None:
            self.on_progress(replace(progress))

    def _take(self, outcome: chunks.Outcome) -> None:
        """A chunk's outcome, in order: its reports, then its rows into the next write."""
        progress = self.progress
        for event in outcome.events:
            if isinstance(event, chunks.Rejected):
                self.errors.reject(event.location, event.errors)
            else:
                self.errors.warn(event.location, event.field, event.reason)
        progress.records += outcome.records
        progress.valid += outcome.valid
        progress.in_import_duplicates += outcome.duplicates
        for file, count in outcome.per_file.items():
            self._per_file[file] = self._per_file.get(file, 0) + count
        for file, places in outcome.found.items():
            progress.found.setdefault(file, {}).update(places)
        for batch in outcome.batches:
            rest: Batch | None = batch
            while rest is not None:
                # Writes keep their size (`batch_size` rows) whatever the size of a chunk.
                piece, rest = rest.split(max(self.options.batch_size - len(self.pending), 1))
                for location in self.pending.add(piece):
                    _in_batch_duplicate(location, self.options, self.errors, progress)
                if len(self.pending) >= self.options.batch_size or self.pending.nbytes >= MAX_BATCH_BYTES:
                    self._flush()

    def _flush(self) -> None:
        if len(self.pending) and self.writer is not None:
            self.writer.submit(self.pending.build())
        self.pending = PendingWrite(on_duplicate=self.options.on_duplicate)


def _in_batch_duplicate(location: Location, options, errors: ErrorSink, progress: ImportProgress) -> None:
    if options.on_duplicate == "error":
        progress.valid -= 1
        errors.reject(location, [DUPLICATE_IN_IMPORT])
    else:
        progress.in_import_duplicates += 1


class _Writer:
    """Checks and writes batches in order on one background thread."""

    def __init__(
        self, *, store: TrajectoryStore, options: ImportOptions, errors: ErrorSink, imported_at_us: int
    ) -> None:
        self._store = store
        self._options = options
        self._errors = errors
        self._imported_at_us = imported_at_us
        # Written only by the writer thread, read by the reading thread for progress.
        self.inserted = 0
        self.updated = 0
        self.touched = False  # a write reached the store (even one that then failed half-way)
        self.duplicates = 0
        self.rejected = 0
        self._store_has_rows: bool | None = None
        self._written: set[str] = set()
        self._remember_limit = REMEMBER_IDS
        self._unindexed = 0  # rows written since the indexes last took in new rows
        self._total = 0
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=_PENDING_BATCHES)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="trajsite-import-writer", daemon=True)
        self._thread.start()

    def copy_counts(self, progress: ImportProgress) -> None:
        progress.imported = self.inserted
        progress.updated = self.updated
        progress.duplicates = progress.in_import_duplicates + self.duplicates

    def submit(self, batch: Batch) -> None:
        self._raise_failure()
        self._queue.put(batch)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._write(batch)
                except BaseException as error:
                    self._failure = error

    def _write(self, batch: Batch) -> None:
        if not batch.ids:
            return
        if self._options.on_duplicate == "update":
            self.touched = True
            written = self._store.upsert(trajectories=batch.trajectories, annotations=batch.annotations)
            self.inserted += written.inserted
            self.updated += written.updated
        else:
            existing = self._existing(batch.ids)
            if existing:
                self._report_existing(batch, existing)
                batch = _without(batch, existing)
            self._insert(batch)
        self._remember(batch.ids)

    def _insert(self, batch: Batch) -> None:
        if not batch.ids:
            return
        self.touched = True
        written = self._store.insert_new(trajectories=batch.trajectories)
        self.inserted += written.inserted
        ours = set(batch.ids)
        if written.inserted < len(batch.ids):
            # Another import stored some of these ids between our look and our commit; the commit kept
            # theirs. Which ones: the rows that do not carry this run's import time.
            ours = self._store.imported_by(trajectory_ids=batch.ids, imported_at_us=self._imported_at_us)
            self._report_existing(batch, set(batch.ids) - ours)
        changes = {key: change for key, change in batch.annotations.items() if key in ours}
        if changes:
            # An import is not a page: it waits out people's concurrent edits for minutes, not seconds.
            self._store.annotate_new(changes=changes, user="import", deadline_seconds=IMPORT_DEADLINE_SECONDS)

    def _existing(self, ids: list[str]) -> set[str]:
        """Ids already stored: those this run wrote (tracked here) plus an index probe for the rest."""
        if self._store_has_rows is None:
            # Rows left unindexed by an earlier, interrupted import must be found by the probe too.
            self._store.refresh_indexes()
            self._store_has_rows = self._store.count() > 0
        existing = {trajectory_id for trajectory_id in ids if trajectory_id in self._written}
        if self._store_has_rows:
            existing |= self._store.existing_ids(ids=ids, indexed_only=True)
        return existing

    def _remember(self, ids: list[str]) -> None:
        self._written.update(ids)
        self._unindexed += len(ids)
        self._total += len(ids)
        if len(self._written) >= self._remember_limit:
            # Bound memory on huge imports: fold what we wrote into the index, then probe it there.
            self._store.refresh_indexes()
            self._store_has_rows = True
            self._written.clear()
            self._unindexed = 0
        elif self._unindexed >= max(INDEX_EVERY_ROWS, self._total // 4):
            self._store.refresh_indexes()
            self._unindexed = 0

    def _report_existing(self, batch: Batch, existing: set[str]) -> None:
        if self._options.on_duplicate == "skip":
            self.duplicates += len(existing)
            return
        self.rejected += len(existing)
        for trajectory_id, location in zip(batch.ids, batch.locations, strict=True):
            if trajectory_id in existing:
                self._errors.reject(location, [FieldError("trajectory_id", f"{trajectory_id!r} is already stored")])


def _without(batch: Batch, existing: set[str]) -> Batch:
    stored = pa.array(sorted(existing), type=pa.string())
    kept = pc.invert(pc.is_in(batch.trajectories.column("trajectory_id"), value_set=stored))
    pairs = [(key, location) for key, location in zip(batch.ids, batch.locations, strict=True) if key not in existing]
    return Batch(
        trajectories=batch.trajectories.filter(kept),
        annotations={key: change for key, change in batch.annotations.items() if key not in existing},
        ids=[key for key, _ in pairs],
        locations=[location for _, location in pairs],
    )
