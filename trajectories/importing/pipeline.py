"""The import pipeline: read → adapt → validate → batch on this thread; check ids and write on another.

`ImportRun` is one run over a set of files: `ImportRun(paths=..., options=..., store=..., errors=...).run()`.
Parsing is Python and holds the GIL; LanceDB writes run in Rust and release it, so a writer thread
lets the two cores overlap. The writer checks each batch's ids against the store right before writing
it, in order, so duplicates across batches, files and earlier imports are all caught in bulk. When a
run has written anything (even if it then fails), it sends `trajectories_changed` itself, so every
caller's caches are invalidated, not only the command's.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from django.conf import settings

from trajectories.signals import trajectories_changed
from trajectories.store import TRAJECTORY_SCHEMA, TrajectoryStore

from . import adapters, readers
from .batches import Batch, BatchBuilder
from .discovery import apply_context, records_of
from .errors import ErrorSink, FieldError, Location, RecordError
from .mapping import Mapping
from .validation import Defaults, validate

ON_DUPLICATE_CHOICES = ("skip", "update", "error")
# A batch also closes early past this many bytes of steps, so huge rollouts cannot pile up in memory.
MAX_BATCH_BYTES = 128 * 1024 * 1024
_PENDING_BATCHES = 2
# Ids a run tracks itself before folding them into the store's index (~100 bytes each).
REMEMBER_IDS = 1_000_000


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
        self.adapt = _adapter_for(options)
        self.recognise = _recogniser(options)
        self.records_path = options.mapping.records if options.mapping is not None else None
        self.builder = BatchBuilder(on_duplicate=options.on_duplicate)
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
        sources = readers.read_sources(
            self.files, self.counter, names=dict(self.options.display_names), limits=self.options.limits
        )
        for item in sources:
            if isinstance(item, readers.UnreadableRecord):
                self.progress.records += 1
                self.errors.reject(item.location, [item.error])
            else:
                self._take_document(item)
            if self.progress.records % 256 == 0 and time.monotonic() - last_report >= progress_every:
                last_report = time.monotonic()
                self._report()
        self._flush()

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

    def _take_document(self, document: readers.RawRecord) -> None:
        """Every record the document holds (itself, or those discovered inside it), with its context."""
        found, records = records_of(document, recognise=self.recognise, records_path=self.records_path)
        defaults = self.options.mapping.defaults(document.value) if self.options.mapping is not None else {}
        for line in found.report:
            path, _, what = line.partition(": ")
            self.progress.found.setdefault(document.location.file, {})[path] = what
        file = document.location.file
        self._per_file[file] = self._per_file.get(file, 0) + len(records)
        for record, where in zip(records, found.records, strict=True):
            self.progress.records += 1
            self._take(
                record,
                context=found.context,
                defaults=defaults,
                key=where.key,
                kind=where.kind,
                description=found.description,
            )

    def _take(
        self,
        item: readers.RawRecord,
        *,
        context: dict,
        defaults: dict,
        key: str | None,
        kind: str | None,
        description: str | None,
    ) -> None:
        errors = self.errors
        for _, repair in item.repairs:
            errors.warn(item.location, repair.field, repair.reason)
        try:
            value = _keyed(item.value, key) if key is not None else item.value
            source_format, record = self.adapt(value, item.location, kind)
            apply_context(record, context, defaults=defaults)
            validated = validate(record, source=str(item.location), source_format=source_format, defaults=self.defaults)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, StopIteration, RecursionError) as error:
            # A record of a shape nobody foresaw (or a format forced on the wrong shape) is its own
            # rejection: it never sinks the file.
            reason = f"cannot be read as {source_format_of(self.options)}: {type(error).__name__}: {error}"[:500]
            errors.reject(item.location, [FieldError("record", reason)])
            return
        except RecordError as error:
            problems = list(error.errors)
            if description is not None:
                # A document with nothing recognisable: say what it held, not only what it lacked.
                problems = [
                    FieldError(p.field, f"{p.reason}; no trajectories found in it: it is {description}")
                    if p.field == "record"
                    else p
                    for p in problems
                ]
            errors.reject(item.location, problems)
            return
        for warning in validated.warnings:
            errors.warn(item.location, warning.field, warning.reason)
        self.progress.valid += 1
        if not self.builder.add(validated, location=item.location):
            _in_batch_duplicate(item.location, self.options, errors, self.progress)
        if len(self.builder) >= self.options.batch_size or self.builder.nbytes >= MAX_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if len(self.builder) and self.writer is not None:
            self.writer.submit(_built(self.builder, self.errors))
        self.builder = BatchBuilder(on_duplicate=self.options.on_duplicate)


def source_format_of(options: ImportOptions) -> str:
    return "the mapping's shape" if options.mapping is not None else f"format {options.format_name!r}"


def _keyed(value: Any, key: str) -> Any:
    """A record found under an id key: the key names its task, or the trajectory when the task is named."""
    if not isinstance(value, dict):
        return value
    if not any(value.get(name) is not None for name in adapters.DATA_ID_KEYS):
        return {**value, "data_id": key}
    return value if value.get("trajectory_id") is not None else {**value, "trajectory_id": key}


def _recogniser(options: ImportOptions):
    if options.mapping is not None:
        return options.mapping.recognises
    return adapters.recognise


def _adapter_for(options: ImportOptions):
    if options.mapping is not None:
        return lambda value, location, _kind: (adapters.MAPPING, options.mapping(value, location))
    if options.format_name != adapters.AUTO:
        return lambda value, location, _kind: adapters.to_canonical(value, location, format_name=options.format_name)
    # Discovery has usually named the format already (the common case: a line that is one record).
    return lambda value, location, kind: adapters.to_canonical(value, location, format_name=kind or adapters.AUTO)


def _in_batch_duplicate(location: Location, options, errors: ErrorSink, progress: ImportProgress) -> None:
    if options.on_duplicate == "error":
        progress.valid -= 1
        errors.reject(location, [FieldError("trajectory_id", "duplicate of an earlier record in this import")])
    else:
        progress.in_import_duplicates += 1


def _built(builder: BatchBuilder, errors: ErrorSink) -> Batch:
    """The batch as Arrow tables; rows Arrow refuses are rejected one by one, the rest kept."""
    try:
        return builder.build()
    except _CONVERSION_ERRORS:
        pass
    for trajectory_id, row in list(builder.rows.items()):
        problem = _conversion_problem(row)
        if problem is not None:
            errors.reject(builder.locations[trajectory_id], [problem])
            builder.remove(trajectory_id)
    return builder.build()


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
            self._store.annotate_new(changes=changes, user="import")

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
        if len(self._written) >= self._remember_limit:
            # Bound memory on huge imports: fold what we wrote into the index, then probe it there.
            self._store.refresh_indexes()
            self._store_has_rows = True
            self._written.clear()

    def _report_existing(self, batch: Batch, existing: set[str]) -> None:
        if self._options.on_duplicate == "skip":
            self.duplicates += len(existing)
            return
        self.rejected += len(existing)
        for trajectory_id, location in zip(batch.ids, batch.locations, strict=True):
            if trajectory_id in existing:
                self._errors.reject(location, [FieldError("trajectory_id", f"{trajectory_id!r} is already stored")])


# What Arrow raises for a value its column cannot hold; anything else (I/O, a full disk) fails the job.
_CONVERSION_ERRORS = (pa.ArrowException, UnicodeError, TypeError, ValueError, OverflowError)


def _conversion_problem(row: dict) -> FieldError | None:
    for name in _TRAJECTORY_FIELDS:
        try:
            pa.array([row[name]], type=TRAJECTORY_SCHEMA.field(name).type)
        except _CONVERSION_ERRORS as error:
            return FieldError(name, f"the store cannot hold this value ({type(error).__name__}: {error})")
    return None


_TRAJECTORY_FIELDS = tuple(TRAJECTORY_SCHEMA.names)


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
