"""The costly half of an import: a chunk of read units → Arrow rows, rejections and warnings, in order.

`process(chunk, plan=...)` depends on nothing but its arguments (no store, no Django), so the pipeline
runs it on its own thread for small imports and in worker processes for large ones (`processed`)
with the same outcome: parsing, discovering records inside documents, adapting, validating and
building Arrow columns is Python that holds the GIL, the part one core cannot go faster than.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trajectories.store import TRAJECTORY_SCHEMA

from . import adapters, readers
from .batches import DUPLICATE_IN_IMPORT, MAX_BATCH_BYTES, Batch, BatchBuilder
from .discovery import apply_context, records_of
from .errors import FieldError, Location, RecordError
from .mapping import Mapping
from .validation import Defaults, validate

# A chunk closes at this many units or bytes: big enough that shipping it costs little next to its
# work, small enough that a few in flight per worker stay within memory.
CHUNK_UNITS = 2000
CHUNK_BYTES = 4 * 1024 * 1024


class WorkerDied(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    """What processing a chunk needs to know of the import (sent to each worker once)."""

    format_name: str
    mapping: Mapping | None
    on_duplicate: str
    defaults: Defaults
    limits: readers.Limits


@dataclass(frozen=True, slots=True)
class Rejected:
    location: Location
    errors: tuple[FieldError, ...]


@dataclass(frozen=True, slots=True)
class Warned:
    location: Location
    field: str
    reason: str


@dataclass
class Outcome:
    """A processed chunk: its rows (in batches, ids unique within each) and everything to report, in
    input order."""

    batches: list[Batch] = field(default_factory=list)
    events: list[Rejected | Warned] = field(default_factory=list)
    records: int = 0
    valid: int = 0
    duplicates: int = 0  # later records of an id already in this chunk, not taken
    per_file: dict[str, int] = field(default_factory=dict)
    # Per file, where records were found inside documents: {"r.json": {"simulations": "50 records"}}.
    found: dict[str, dict[str, str]] = field(default_factory=dict)


def chunked(units: Iterable[readers.Unit]) -> Iterator[list[readers.Unit]]:
    """Consecutive units in chunks of at most CHUNK_UNITS units or about CHUNK_BYTES bytes."""
    chunk: list[readers.Unit] = []
    size = 0
    for unit in units:
        chunk.append(unit)
        size += len(unit.data) if isinstance(unit, readers.RawText) else 1024
        if len(chunk) >= CHUNK_UNITS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def processed(chunks: Iterable[list[readers.Unit]], *, plan: Plan, workers: int) -> Iterator[Outcome]:
    """Each chunk's outcome, in order: here, or on `workers` processes with a few chunks in flight each."""
    if workers <= 0:
        for chunk in chunks:
            yield process(chunk, plan=plan)
        return
    # spawn, not fork: this process runs LanceDB's and the writer's threads, which a fork would copy
    # mid-flight; the workers start clean (about a second), once per import.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(plan, os.getpid())
    )
    pending: deque[Future[Outcome]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(_process_here, chunk))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool as error:
        raise WorkerDied(
            "an import worker process ended unexpectedly (killed, or out of memory); the records before "
            "it are stored: import the same files again to add the rest"
        ) from error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_worker_plan: Plan | None = None
_WATCH_SECONDS = 0.5


def _start_worker(plan: Plan, parent: int) -> None:
    global _worker_plan
    _worker_plan = plan
    # Ctrl-C reaches the whole process group; the importing process decides what an interrupt means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), name="trajsite-import-watchdog", daemon=True).start()


def _exit_with(parent: int) -> None:
    """A worker whose importing process is gone (killed, out of memory) leaves too: its queue would
    keep it waiting forever."""
    while os.getppid() == parent:
        time.sleep(_WATCH_SECONDS)
    os._exit(1)


def _process_here(chunk: list[readers.Unit]) -> Outcome:
    assert _worker_plan is not None
    return process(chunk, plan=_worker_plan)


def process(chunk: list[readers.Unit], *, plan: Plan) -> Outcome:
    """The outcome of one chunk: every record in it adapted, validated and built into Arrow rows."""
    return _ChunkRun(plan).run(chunk)


class _ChunkRun:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.outcome = Outcome()
        self.builder = BatchBuilder(on_duplicate=plan.on_duplicate)
        self.adapt = _adapter_for(plan)
        self.recognise = plan.mapping.recognises if plan.mapping is not None else adapters.recognise
        self.records_path = plan.mapping.records if plan.mapping is not None else None

    def run(self, chunk: list[readers.Unit]) -> Outcome:
        for unit in chunk:
            for item in readers.parsed(unit, self.plan.limits):
                if isinstance(item, readers.UnreadableRecord):
                    self.outcome.records += 1
                    self._reject(item.location, [item.error])
                else:
                    self._take_document(item)
        self._build()
        return self.outcome

    def _reject(self, location: Location, errors: list[FieldError] | tuple[FieldError, ...]) -> None:
        self.outcome.events.append(Rejected(location, tuple(errors)))

    def _warn(self, location: Location, field_name: str, reason: str) -> None:
        self.outcome.events.append(Warned(location, field_name, reason))

    def _take_document(self, document: readers.RawRecord) -> None:
        """Every record the document holds (itself, or those discovered inside it), with its context."""
        found, records = records_of(document, recognise=self.recognise, records_path=self.records_path)
        defaults = self.plan.mapping.defaults(document.value) if self.plan.mapping is not None else {}
        file = document.location.file
        for line in found.report:
            path, _, what = line.partition(": ")
            self.outcome.found.setdefault(file, {})[path] = what
        self.outcome.per_file[file] = self.outcome.per_file.get(file, 0) + len(records)
        for record, where in zip(records, found.records, strict=True):
            self.outcome.records += 1
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
        for _, repair in item.repairs:
            self._warn(item.location, repair.field, repair.reason)
        try:
            value = _keyed(item.value, key) if key is not None else item.value
            source_format, record = self.adapt(value, item.location, kind)
            apply_context(record, context, defaults=defaults)
            validated = validate(
                record, source=str(item.location), source_format=source_format, defaults=self.plan.defaults
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, StopIteration, RecursionError) as error:
            # A record of a shape nobody foresaw (or a format forced on the wrong shape) is its own
            # rejection: it never sinks the file.
            reason = f"cannot be read as {source_format_of(self.plan)}: {type(error).__name__}: {error}"[:500]
            self._reject(item.location, [FieldError("record", reason)])
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
            self._reject(item.location, problems)
            return
        for warning in validated.warnings:
            self._warn(item.location, warning.field, warning.reason)
        self.outcome.valid += 1
        if not self.builder.add(validated, location=item.location):
            self._duplicate(item.location)
        if self.builder.nbytes >= MAX_BATCH_BYTES:
            # A document of huge rollouts: what is built so far goes to Arrow now, to bound memory.
            self._build()

    def _duplicate(self, location: Location) -> None:
        if self.plan.on_duplicate == "error":
            self.outcome.valid -= 1
            self._reject(location, [DUPLICATE_IN_IMPORT])
        else:
            self.outcome.duplicates += 1

    def _build(self) -> None:
        """The rows so far as Arrow; a row Arrow refuses is rejected alone, the rest kept."""
        if not len(self.builder):
            return
        self.outcome.batches.append(_built(self.builder, self._reject))
        self.builder = BatchBuilder(on_duplicate=self.plan.on_duplicate)


def source_format_of(plan: Plan) -> str:
    return "the mapping's shape" if plan.mapping is not None else f"format {plan.format_name!r}"


def _keyed(value: Any, key: str) -> Any:
    """A record found under an id key: the key names its task, or the trajectory when the task is named."""
    if not isinstance(value, dict):
        return value
    if not any(value.get(name) is not None for name in adapters.DATA_ID_KEYS):
        return {**value, "data_id": key}
    return value if value.get("trajectory_id") is not None else {**value, "trajectory_id": key}


def _adapter_for(plan: Plan) -> Callable[[Any, Location, str | None], tuple[str, dict]]:
    if plan.mapping is not None:
        mapping = plan.mapping
        return lambda value, location, _kind: (adapters.MAPPING, mapping(value, location))
    if plan.format_name != adapters.AUTO:
        return lambda value, location, _kind: adapters.to_canonical(value, location, format_name=plan.format_name)
    # Discovery has usually named the format already (the common case: a line that is one record).
    return lambda value, location, kind: adapters.to_canonical(value, location, format_name=kind or adapters.AUTO)


# What Arrow raises for a value its column cannot hold.
_CONVERSION_ERRORS = (pa.ArrowException, UnicodeError, TypeError, ValueError, OverflowError)
_TRAJECTORY_FIELDS = tuple(TRAJECTORY_SCHEMA.names)


def _built(builder: BatchBuilder, reject: Callable[[Location, list[FieldError]], None]) -> Batch:
    try:
        return builder.build()
    except _CONVERSION_ERRORS:
        pass
    for trajectory_id, row in list(builder.rows.items()):
        problem = _conversion_problem(row)
        if problem is not None:
            reject(builder.locations[trajectory_id], [problem])
            builder.remove(trajectory_id)
    return builder.build()


def _conversion_problem(row: dict) -> FieldError | None:
    for name in _TRAJECTORY_FIELDS:
        try:
            pa.array([row[name]], type=TRAJECTORY_SCHEMA.field(name).type)
        except _CONVERSION_ERRORS as error:
            return FieldError(name, f"the store cannot hold this value ({type(error).__name__}: {error})")
    return None
