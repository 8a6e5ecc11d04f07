"""The trajectory store: every LanceDB call in trajsite goes through `TrajectoryStore`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lance
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import Bitmap, BTree

from trajectories.analysis import ChangeQuery, GroupQuery
from trajectories.derived import DERIVED, derived_columns, from_text
from trajectories.fields import SEARCH_TEXT
from trajectories.query import TextMatch, TrajectoryQuery

from . import builder, commits, snapshots, staging, textsearch, upkeep
from .annotations import AnnotationChange, blank_annotation
from .engine import RECORD_COLUMNS, QueryEngine, ResultPage
from .latest import LatestVersions
from .mapped import ProjectionFiles
from .projection import PROJECTED_COLUMNS, Projection
from .runs import RUN, RunEngines
from .schema import (
    ANNOTATION_SCHEMA,
    ANNOTATIONS_TABLE,
    KEY,
    TRAJECTORIES_TABLE,
    TRAJECTORY_SCHEMA,
)

_SCHEMAS = {TRAJECTORIES_TABLE: TRAJECTORY_SCHEMA, ANNOTATIONS_TABLE: ANNOTATION_SCHEMA}
# Annotation rows rewritten per commit: a bulk change of a million rows is many small commits, so a
# concurrent single edit conflicts with (and retries) one chunk, not the whole bulk action.
ANNOTATE_CHUNK = 50_000
# An import's new annotation rows per commit: small, so each retry under concurrent edits is quick.
NEW_ANNOTATION_CHUNK = 2_000
# LanceDB's caches for the tables and datasets a store reads, shared by every version it opens (index
# pages stay cached across versions) and bounded: under its defaults (GBs) every version's manifest
# stayed cached, and a worker's heap grew by ~85 KB per annotations version for as long as people edited.
INDEX_CACHE_BYTES = 512 * 2**20
METADATA_CACHE_BYTES = 32 * 2**20


# Per request (or per command step): the table versions read once and reused by every read in it.
_scope: ContextVar[dict | None] = ContextVar("trajsite_store_read_scope", default=None)


@contextlib.contextmanager
def read_scope() -> Iterator[None]:
    """Reads inside share one version check: the first `sync()` looks, the rest reuse its answer
    (a write through this store in the scope makes the next read look again)."""
    token = _scope.set({})
    try:
        yield
    finally:
        _scope.reset(token)


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    updated: int


@dataclass(frozen=True)
class StagedMerge:
    """A distributed import's merge: rows staged, later repeats of an id in the input (not taken),
    rows inserted, and ids the store held already (left as they were)."""

    staged: int
    repeated: int
    inserted: int
    stored: int


@dataclass(frozen=True)
class TableStats:
    name: str
    rows: int
    fragments: int
    small_fragments: int
    version: int
    indexes: tuple[str, ...]


class TrajectoryStore:
    def __init__(
        self,
        *,
        uri: str,
        version_check_seconds: float = 0.0,
        background_rows: int = 100_000,
        projection_dir: str | Path | None = None,
        shared_rows: int = 100_000,
        build_elsewhere: Callable[..., bool] | None = None,
        cache_bytes: tuple[int, int] = (INDEX_CACHE_BYTES, METADATA_CACHE_BYTES),
        budget_rows: int = 0,
    ) -> None:
        """`version_check_seconds`: how stale a read may be when nobody says data changed.

        Table handles never look for new versions by themselves (read_consistency_interval=None:
        on object storage every check is a request). `sync()` moves them to the newest version when
        forced (the cache generation changed: another process wrote) or when this interval has passed
        (or a caller's longer `max_age`); 0 checks on every read: a listing of the table's versions,
        ~0.3 ms locally for a few hundred, ~3 ms for the thousands busy editing leaves.

        `projection_dir`: where projections of `shared_rows` rows or more are written once and mapped
        by every process of this machine (None: each process holds its own). `build_elsewhere`: how a
        new version's shared files are written by a process of their own (see `QueryEngine`).
        `cache_bytes`: the bounds of LanceDB's index and metadata caches, each of which the tables and
        the datasets of this store have once. `budget_rows`: past this many trajectories, projections
        are held per training run, at most this many rows of them (runs.py); 0: no budget.
        """
        self.uri = uri
        self.version_check_seconds = version_check_seconds
        index_bytes, metadata_bytes = cache_bytes
        self._tables_session = lancedb.Session(
            index_cache_size_bytes=index_bytes, metadata_cache_size_bytes=metadata_bytes
        )
        self._db = lancedb.connect(uri, read_consistency_interval=None, session=self._tables_session)
        self._session = lance.Session(index_cache_size_bytes=index_bytes, metadata_cache_size_bytes=metadata_bytes)
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced_at = 0.0
        self._dirty = True
        self._probes: dict[str, Any] = {}
        self._datasets: dict[str, Any] = {}  # each table's dataset at the version in _known_versions
        # The version each table's LanceDB handle (`_tables`) must reach before its next use, and the
        # version it reached: syncs only note what they found (see `_sync`).
        self._wanted: dict[str, int] = {}
        self._reached: dict[str, int] = {}
        self._catching_up = threading.Lock()
        self._known_versions: dict[str, int] = {}
        self._latest_versions = LatestVersions()
        self._folding = threading.Lock()  # one merge of small annotation fragments at a time
        self.reads = 0
        self.version_checks = 0  # how often sync() looked for new versions (tests pin it per request)
        files = ProjectionFiles(root=Path(projection_dir)) if projection_dir else None
        self.budget_rows = budget_rows
        self.engine = QueryEngine(
            open_tables=self._open_tables,
            background_rows=background_rows,
            files=files,
            shared_rows=shared_rows,
            build_elsewhere=build_elsewhere,
        )
        if budget_rows:
            self.engine = RunEngines(
                whole=self.engine, open_tables=self._open_tables, budget_rows=budget_rows,
                background_rows=background_rows,
            )  # fmt: skip

    def write_shared_projection(self, *, version: int, previous: int | None) -> Path | None:
        """Write the shared projection of the trajectories at `version` (`previous`: the version the
        web workers serve, whose files it appends to); its directory, None when not shared here."""
        if self.engine.files is None:
            return None
        dataset = self._table(TRAJECTORIES_TABLE).to_lance()
        return builder.write_version(
            dataset=dataset.checkout_version(version),
            previous=dataset.checkout_version(previous) if previous is not None else None,
            files=self.engine.files,
        )

    def _open_tables(self):
        """The (trajectories, annotations) datasets at the newest versions seen, pinned. Not the LanceDB
        tables: a table's `.version` and `.to_lance()` each cross to its event-loop thread (and the
        latter opens the dataset anew), ~0.4 and ~1.4 ms alone and far more with busy threads, on
        every read of every request."""
        self.sync()
        return self._datasets[TRAJECTORIES_TABLE], self._datasets[ANNOTATIONS_TABLE]

    def _dataset(self, name: str):
        """One table's dataset at the newest version seen (after a sync)."""
        self.sync()
        return self._datasets[name]

    def sync(self, *, force: bool = False, max_age: float = 0.0) -> tuple[int, int]:
        """Move the table handles to the newest versions (see __init__ for when); returns the
        (trajectories, annotations) versions they read. Threads of a process share the handles:
        the check and the versions it returns are taken under one lock. Inside a `read_scope()`,
        only the first call looks. `max_age`: a caller that knows no other process wrote (the cache
        generations say so) accepts versions checked that long ago."""
        scope = _scope.get()
        # Keyed by the store itself, not its URI: another store of the same URI in this process (a test's,
        # a command's) has opened no tables on this one's look.
        if scope is not None and not force and self in scope:
            return scope[self]
        versions = self._sync(force=force, max_age=max_age)
        if scope is not None:
            scope[self] = versions
        return versions

    def _sync(self, *, force: bool, max_age: float) -> tuple[int, int]:
        with self._sync_lock:
            now = time.monotonic()
            known = self._known_versions
            due = force or self._dirty or now - self._synced_at >= max(self.version_check_seconds, max_age)
            if due or len(known) < 2:
                self.version_checks += 1
                for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
                    # The latest version is a cheap look; the handle is re-opened only when it moved,
                    # forced or not (a forced look follows every write another process signals).
                    probe = self._probe(name)
                    latest = self._latest_versions.of(probe)
                    if latest != known.get(name) or name not in self._datasets:
                        # Checked out from the probe at the version just found: the table handle's
                        # checkout_latest() lists every version (~4% of each request's time under
                        # load, with the threads behind it waiting on this lock). The handle catches
                        # up when something next uses it (`_table`).
                        self._datasets[name] = probe.checkout_version(latest)
                        known[name] = self._wanted[name] = latest
                self._synced_at = now
                self._dirty = False
            return known[TRAJECTORIES_TABLE], known[ANNOTATIONS_TABLE]

    def _wrote(self) -> None:
        """After a write through this store: the next read re-checks versions."""
        self._dirty = True
        scope = _scope.get()
        if scope is not None:
            scope.pop(self, None)

    def _newest(self, name: str):
        """The table's dataset at its newest version, whatever version this process's handles read: a
        new object each time (a write moves the dataset it is made through to the version it commits),
        checked out from the probe instead of opened anew (see `_open_tables`)."""
        probe = self._probe(name)
        return probe.checkout_version(self._latest_versions.of(probe))

    def _probe(self, name: str):
        probe = self._probes.get(name)
        if probe is None:
            probe = self._probes[name] = self._table(name).to_lance(session=self._session)
        return probe

    def cache_bytes(self) -> int:
        """What LanceDB's caches of this store hold now (index pages and metadata, tables and datasets)."""
        return self._tables_session.size_bytes + self._session.size_bytes()

    def versions(self) -> tuple[int, int]:
        """(trajectories, annotations) table versions after a sync."""
        return self.sync()

    def versions_read(self, *, annotation_fields: frozenset[str] | None = None) -> tuple[int, int]:
        """The versions an answer of this process is computed from (see `QueryEngine.answering_versions`;
        finding the projection syncs the tables first)."""
        return self.engine.answering_versions(annotation_fields)

    def annotations_of(self, *, trajectory_ids: list[str]) -> list[dict[str, Any]] | None:
        """The annotation fields of each trajectory, from memory; None when one is not held."""
        return self.engine.annotations_of(trajectory_ids)

    # --- tables -----------------------------------------------------------------------------

    def _table(self, name: str):
        """The LanceDB table, at least at the version the last sync found (its writes, counts and
        index builds start there)."""
        table = self._tables.get(name)
        if table is None:
            with self._lock:
                table = self._tables.get(name)
                if table is None:
                    table = self._tables[name] = self._open_or_create(name)
        wanted = self._wanted.get(name, -1)
        if self._reached.get(name, -1) < wanted:
            # Under a lock: a thread arriving meanwhile waits for the handle instead of using it behind.
            with self._catching_up:
                if self._reached.get(name, -1) < wanted:
                    table.checkout_latest()
                    self._reached[name] = wanted
        return table

    def _open_or_create(self, name: str):
        try:
            table = self._db.open_table(name)
        except ValueError:
            try:
                return self._db.create_table(name, schema=_SCHEMAS[name])
            except ValueError:  # another process created it first
                table = self._db.open_table(name)
        missing = [field for field in _SCHEMAS[name] if field.name not in table.schema.names]
        if missing:
            # Stores made before a column existed (the search text): added empty, rows keep their data.
            commits.retrying(lambda: _add_columns(table, missing), action=f"adding columns to {name}")
            table.checkout_latest()
        if table.schema.field(KEY).metadata is None:
            # Stores made before keys were declared: declare it, so concurrent inserts stay unique.
            commits.retrying(
                lambda: _latest(table).update_field_metadata({KEY: commits.PRIMARY_KEY_METADATA}),
                action=f"declaring the key of {name}",
            )
            table.checkout_latest()
        return table

    # --- reads ------------------------------------------------------------------------------

    def count(self) -> int:
        return self._dataset(TRAJECTORIES_TABLE).count_rows()  # exactly the version synced

    def count_imported(self, *, import_id: str) -> int:
        """Rows stored by one import job, over all its runs (a resumed job counts what it wrote before)."""
        return self._newest(TRAJECTORIES_TABLE).count_rows(filter=pc.field("import_id") == import_id)

    def existing_ids(self, *, ids: list[str], indexed_only: bool = False) -> set[str]:
        """Which of `ids` are stored already, in one indexed lookup.

        `indexed_only` skips rows not yet in the trajectory_id index: an importer that tracks the
        ids it wrote itself uses it so the lookup stays an index probe instead of a scan.
        """
        if not ids:
            return set()
        dataset = self._dataset(TRAJECTORIES_TABLE)
        rows = dataset.to_table(
            columns=["trajectory_id"],
            filter=pc.field("trajectory_id").isin(ids),
            fast_search=indexed_only,
        )
        return set(rows.column("trajectory_id").to_pylist())

    def get(self, *, trajectory_id: str) -> dict[str, Any] | None:
        """One trajectory with its steps and annotations."""
        self.reads += 1
        if self.engine.ready():
            # A loaded projection of the newest rows (following an edit costs milliseconds) finds the
            # row by binary search and takes it from its own version. One still being rebuilt after an
            # import answers for the rows it holds (rows are never changed in place); a row it lacks
            # may be new, and after a delete or a compaction a row it holds may be gone: the store says.
            # Its annotations must be the newest too (a large change is re-read in the background).
            projection = self.engine.current()
            rows_version, annotations_version = self.sync()
            newest = projection.version == rows_version
            current = projection.annotations.version == annotations_version
            if current and (newest or self.engine.holds_unchanged(projection)):
                found = self.engine.get(trajectory_id, projection)
                if found is not None or newest:
                    return found
        # A pyarrow expression, not SQL text: the id is a value, never part of a filter string.
        dataset = self._dataset(TRAJECTORIES_TABLE)
        rows = dataset.to_table(columns=list(RECORD_COLUMNS), filter=pc.field(KEY) == trajectory_id, limit=1)
        if rows.num_rows == 0:
            return None
        record = rows.to_pylist()[0]
        record.update(self.annotations(trajectory_ids=[trajectory_id])[trajectory_id])
        return record

    def annotations(self, *, trajectory_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Annotation fields for each id, blank where nothing was ever annotated."""
        self.sync()
        result = {}
        for trajectory_id in trajectory_ids:
            blank = blank_annotation(trajectory_id)
            del blank["trajectory_id"]
            result[trajectory_id] = blank
        for row in self._annotation_rows(trajectory_ids):
            result[row.pop("trajectory_id")] = row
        return result

    def _annotation_rows(self, trajectory_ids: list[str]) -> list[dict[str, Any]]:
        if not trajectory_ids:
            return []
        dataset = self._dataset(ANNOTATIONS_TABLE)
        return dataset.to_table(filter=pc.field("trajectory_id").isin(trajectory_ids)).to_pylist()

    def page(self, *, query: TrajectoryQuery) -> ResultPage:
        """One page of summary rows (no steps) matching `query`, with the exact total count."""
        self.reads += 1
        return self.engine.page(query)

    def count_matching(self, *, query: TrajectoryQuery) -> int:
        self.reads += 1
        return self.engine.count(query)

    def neighbours(
        self, *, query: TrajectoryQuery, trajectory_id: str
    ) -> tuple[str | None, str | None, int | None, int]:
        """The ids before and after `trajectory_id` in the query's order, its 0-based index, the count."""
        return self.engine.neighbours(query, trajectory_id)

    def records(self, *, trajectory_ids: list[str]):
        """Full records (with steps) for export, in batches, from one consistent version."""
        return self.engine.records(trajectory_ids)

    def similar(self, *, trajectory_id: str, query: TrajectoryQuery, k: int) -> list[dict[str, Any]] | None:
        return self.engine.similar(trajectory_id, query, k=k)

    def clusters(self, *, query: TrajectoryQuery, k: int) -> dict[str, Any]:
        return self.engine.clusters(query, k=k)

    def ordered_records(self, *, query: TrajectoryQuery, progress=None):
        """Every matching record in the query's order, streamed from one consistent version."""
        return self.engine.ordered_records(query, progress=progress)

    def group_pairs(self, *, query: TrajectoryQuery, min_gap: float, progress=None):
        return self.engine.group_pairs(query, min_gap=min_gap, progress=progress)

    def imported_matching(
        self, *, import_id: str | None, queries: dict[str, TrajectoryQuery], rules: dict[str, str], batch: int = 20_000
    ) -> Iterator[dict[str, list[str]]]:
        """The rows one import stored (None: every row), `batch` at a time: per named query, the ids it matches there
        (words and patterns scanned in memory: no index is read). `rules` add a condition no list
        parameter states: `run_max_steps` keeps the rows whose step count is their run's largest."""
        dataset = self._newest(TRAJECTORIES_TABLE)
        columns = [*PROJECTED_COLUMNS, SEARCH_TEXT] if SEARCH_TEXT in dataset.schema.names else None
        if columns is None:
            return
        longest = _run_max_steps(dataset) if "run_max_steps" in rules.values() else {}
        only = None if import_id is None else pc.field("import_id") == import_id
        reader = dataset.to_batches(columns=columns, filter=only, batch_size=batch)
        annotation_dataset = self._newest(ANNOTATIONS_TABLE)  # the tags given since, not this handle's
        for chunk in reader:
            table = pa.Table.from_batches([chunk])
            ids = table.column(KEY)
            annotations = annotation_dataset.to_table(filter=pc.field(KEY).isin(ids))
            projection = Projection.of_rows(table, annotations=annotations)
            found = {}
            for name, query in queries.items():
                mask = projection.mask(query)
                mask = np.ones(projection.rows, dtype=bool) if mask is None else mask.copy()
                if rules.get(name) == "run_max_steps":
                    mask &= _at_run_max(table, longest)
                # Rows tagged already are left alone: a rerun rewrites nobody's annotation.
                mask &= ~projection.column("tags").mask(TextMatch(exact=(f"monitor:{name}",)), projection.rows)
                found[name] = ids.filter(pa.array(mask)).to_pylist()
            yield found

    def facets(
        self, *, query: TrajectoryQuery | None = None, names: tuple[str, ...] | None = None
    ) -> dict[str, list[tuple[str, int]]]:
        self.reads += 1
        return self.engine.facets(query) if names is None else self.engine.facets(query, names)

    def matching_ids(self, *, query: TrajectoryQuery) -> list[str]:
        return self.engine.matching_ids(query)

    def stats_by(self, *, query: TrajectoryQuery, by: str, buckets: int | None = None) -> list[dict[str, Any]]:
        self.reads += 1
        return self.engine.stats(query, by=by, buckets=buckets)

    def histograms(self, *, query: TrajectoryQuery, names: tuple[str, ...]):
        self.reads += 1
        return self.engine.histograms(query, names=names)

    def mix(self, *, query: TrajectoryQuery, by: str, of: str, buckets: int | None = None):
        self.reads += 1
        return self.engine.mix(query, by=by, of=of, buckets=buckets)

    def pivot(self, *, query: TrajectoryQuery, rows_by: str, columns_by: str, buckets: int) -> dict[str, Any]:
        self.reads += 1
        return self.engine.pivot(query, rows_by=rows_by, columns_by=columns_by, buckets=buckets)

    def curves(
        self, *, query: TrajectoryQuery, split: str, by: str, buckets: int | None = None
    ) -> list[dict[str, Any]]:
        self.reads += 1
        return self.engine.curves(query, split=split, by=by, buckets=buckets)

    def question_changes(self, *, query: ChangeQuery) -> tuple[list[dict[str, Any]], int]:
        self.reads += 1
        return self.engine.question_changes(query)

    def groups(self, *, query: GroupQuery) -> tuple[list[dict[str, Any]], int]:
        self.reads += 1
        return self.engine.groups(query)

    def group(
        self, *, training_id: str | None, iteration_id: int | None, data_id: str, k: int = 1
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        self.reads += 1
        return self.engine.group(training_id=training_id, iteration_id=iteration_id, data_id=data_id, k=k)

    # --- writes -----------------------------------------------------------------------------

    def insert_new(
        self, *, trajectories: pa.Table, annotations: dict[str, AnnotationChange] | None = None
    ) -> WriteResult:
        """Add the rows whose ids are not stored, in one commit; the rest are left as they are.

        The check is part of the commit (a merge-insert on the declared key), so an id inserted by a
        concurrent importer after the caller looked is still stored once. `inserted` counts ours.
        """
        inserted = 0
        if trajectories.num_rows:
            merged = self._merge(TRAJECTORIES_TABLE, trajectories, replace=False)
            inserted = merged.num_inserted_rows
        if annotations:
            self.annotate_each(changes=annotations, user="import")
        self._wrote()
        return WriteResult(inserted=inserted, updated=0)

    def upsert(self, *, trajectories: pa.Table, annotations: dict[str, AnnotationChange] | None = None) -> WriteResult:
        """Insert new ids and replace stored ones, atomically per call; annotations are laid over."""
        result = WriteResult(inserted=0, updated=0)
        if trajectories.num_rows:
            merged = self._merge(TRAJECTORIES_TABLE, trajectories, replace=True)
            result = WriteResult(inserted=merged.num_inserted_rows, updated=merged.num_updated_rows)
        if annotations:
            self.annotate_each(changes=annotations, user="import")
        self._wrote()
        return result

    def imported_by(self, *, trajectory_ids: list[str], imported_at_us: int) -> set[str]:
        """Which of these ids are stored with this `imported_at` (microseconds): whose insert won a race."""
        rows = self._newest(TRAJECTORIES_TABLE).to_table(
            columns=[KEY, "imported_at"], filter=pc.field(KEY).isin(trajectory_ids)
        )
        stamps = pc.cast(rows.column("imported_at"), pa.int64()).to_pylist()
        keys = rows.column(KEY).to_pylist()
        return {key for key, stamp in zip(keys, stamps, strict=True) if stamp == imported_at_us}

    def annotate(self, *, trajectory_ids: list[str], change: AnnotationChange, user: str | None) -> int:
        """Apply `change` to the stored trajectories among `trajectory_ids`; returns how many."""
        if change.is_empty():
            return 0
        ids = list(dict.fromkeys(trajectory_ids))
        stored = self._present(ids)
        return self.annotate_each(changes={key: change for key in ids if key in stored}, user=user)

    def annotate_each(self, *, changes: dict[str, AnnotationChange], user: str | None) -> int:
        """Apply each trajectory's own change, field by field, atomically against concurrent writers;
        returns how many trajectories were annotated (a trajectory deleted meanwhile is not).

        Each chunk is read, changed and committed on the version it was read from, with LanceDB's own
        retries off: if another writer changed one of these rows first, the commit conflicts and the
        chunk is read and changed again. So edits of different fields, `add_tags` and bulk actions
        all compose instead of the last full row winning.
        """
        ids = list(changes)
        now = datetime.now(tz=UTC)
        done = 0
        for start in range(0, len(ids), ANNOTATE_CHUNK):
            chunk = ids[start : start + ANNOTATE_CHUNK]
            rows, created, before, after = commits.retrying(
                lambda chunk=chunk: self._rewrite_annotations(chunk, changes, now=now, user=user),
                action="annotating",
            )
            done += len(rows) - self._drop_orphans(created)
            self.engine.annotations_written(rows, before=before, after=after)
        self._wrote()
        self._fold_edits_later()
        return done

    def _fold_edits_later(self) -> None:
        """Merge the small fragments edits leave (see `upkeep`), on a thread of its own."""
        if self._folding.acquire(blocking=False):
            threading.Thread(target=self._fold_edits, name="trajsite-fold-edits", daemon=True).start()

    def _fold_edits(self) -> None:
        try:
            if upkeep.fold_small_fragments(lambda: self._newest(ANNOTATIONS_TABLE)):
                self._wrote()
        finally:
            self._folding.release()

    def annotate_new(
        self,
        *,
        changes: dict[str, AnnotationChange],
        user: str | None,
        deadline_seconds: float = commits.DEADLINE_SECONDS,
    ) -> int:
        """`annotate_each` for trajectories just inserted, which have no annotation row yet: the rows
        are inserted if absent, without reading first (an import's hot path), in chunks each retried
        on its own until `deadline_seconds` (people editing other rows meanwhile make commits conflict;
        an import waits them out instead of failing). Any id that has a row after all (a user was
        quicker, or a stale row) gets the read-change-commit path instead."""
        now = datetime.now(tz=UTC)
        items = list(changes.items())
        for start in range(0, len(items), NEW_ANNOTATION_CHUNK):
            chunk = dict(items[start : start + NEW_ANNOTATION_CHUNK])
            rows = pa.Table.from_pylist(
                [{**c.apply(blank_annotation(key)), "updated_at": now, "updated_by": user} for key, c in chunk.items()],
                schema=ANNOTATION_SCHEMA,
            )

            def insert(rows=rows):
                dataset = self._newest(ANNOTATIONS_TABLE)
                merge = dataset.merge_insert(KEY).when_not_matched_insert_all().conflict_retries(0)
                return merge.use_index(False).execute(rows)

            merged = commits.retrying(insert, action="storing imported annotations", deadline_seconds=deadline_seconds)
            if merged["num_inserted_rows"] < len(chunk):
                self._annotate_the_rest(chunk, now=now, user=user)
        self._wrote()
        return len(items)

    def _annotate_the_rest(self, changes: dict[str, AnnotationChange], *, now, user) -> None:
        table = self._newest(ANNOTATIONS_TABLE).to_table(
            columns=[KEY, "updated_at"], filter=pc.field(KEY).isin(list(changes))
        )
        ours = pc.equal(table.column("updated_at"), pa.scalar(now, ANNOTATION_SCHEMA.field("updated_at").type))
        mine = set(table.filter(ours).column(KEY).to_pylist())
        rest = {key: change for key, change in changes.items() if key not in mine}
        if rest:
            self.annotate_each(changes=rest, user=user)

    def _rewrite_annotations(self, ids: list[str], changes: dict[str, AnnotationChange], *, now, user):
        dataset = self._newest(ANNOTATIONS_TABLE)
        current = {row[KEY]: row for row in dataset.to_table(filter=pc.field(KEY).isin(ids)).to_pylist()}
        # A new annotation row only for a trajectory that exists now: one deleted since the caller
        # looked (a delete racing this edit) must not be given a row that a re-import would inherit.
        created = [key for key in ids if key not in current]
        if created:
            present = self._present(created)
            created = [key for key in created if key in present]
            ids = [key for key in ids if key in current or key in present]
        rows = []
        for key in ids:
            row = changes[key].apply(current.get(key) or blank_annotation(key))
            rows.append({**row, "updated_at": now, "updated_by": user})
        before = dataset.version
        if rows:
            merge = dataset.merge_insert(KEY).when_matched_update_all()
            if created:
                # New rows: the key-column scan carries the check that makes a concurrent insert of the
                # same id conflict. Updates alone conflict on the rows they replace: the index may find them.
                merge = merge.when_not_matched_insert_all()
            merge.conflict_retries(0).use_index(not created).execute(
                pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)
            )
        return rows, created, before, dataset.version

    def _drop_orphans(self, created: list[str]) -> int:
        """Rows just created for trajectories deleted in the meantime are removed again; how many."""
        if not created:
            return 0
        orphans = sorted(set(created) - self._present(created))
        if orphans:
            table = self._table(ANNOTATIONS_TABLE)
            predicate = pc.field(KEY).isin(orphans)
            commits.retrying(lambda: _latest(table).delete(predicate), action="removing orphan annotations")
        return len(orphans)

    def _present(self, ids: list[str]) -> set[str]:
        """Which ids the newest trajectories version holds (whatever this process's handle reads).

        The projection answers for the rows it holds when they are all in that version: an edit asks
        this up to three times, and with an import running each look at the table scans every row
        not yet in the key index (~10-100 ms each under load)."""
        dataset = self._newest(TRAJECTORIES_TABLE)
        held = self.engine.held_in(dataset, ids)
        rest = [key for key in ids if key not in held]
        if not rest:
            return held
        rows = dataset.to_table(columns=[KEY], filter=pc.field(KEY).isin(rest))
        return held | set(rows.column(KEY).to_pylist())

    def delete(self, *, trajectory_ids: list[str]) -> int:
        """Delete trajectories and their annotations; returns how many were stored."""
        stored = sorted(self._present(list(dict.fromkeys(trajectory_ids))))
        if not stored:
            return 0
        trajectories, annotations = self._table(TRAJECTORIES_TABLE), self._table(ANNOTATIONS_TABLE)
        predicate = pc.field(KEY).isin(stored)
        commits.retrying(lambda: _latest(trajectories).delete(predicate), action="deleting trajectories")
        # Only the annotations of ids still gone: one re-imported in between keeps its new annotations.
        gone = sorted(set(stored) - self._present(stored))
        if gone:
            predicate = pc.field(KEY).isin(gone)
            commits.retrying(lambda: _latest(annotations).delete(predicate), action="deleting annotations")
        self.sync(force=True)
        return len(stored)

    def _merge(self, name: str, rows: pa.Table, *, replace: bool):
        # use_index(False): the indexed path of lance 14 leaves out the inserted-key check that makes
        # concurrent inserts of one id conflict; a scan of the key column costs ~0.1 s at 1M rows.
        def merge():
            builder = self._table(name).merge_insert(KEY)
            if replace:
                builder = builder.when_matched_update_all()
            return builder.when_not_matched_insert_all().use_index(False).execute(rows)

        return commits.retrying(merge, action=f"writing {name}")

    def floor_table(self, name: str, schema: pa.Schema):
        """A fresh table beside the store's own, appended to without any check: what the import
        benchmark's floor writes to (never used by the site)."""
        if name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            raise ValueError(f"{name!r} is one of the store's own tables")
        return self._db.create_table(name, schema=schema, mode="overwrite")

    # --- maintenance ------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """BTREE on trajectory_id for both tables and the full-text index of the steps' text; new rows
        are folded in by `refresh_indexes` (after every import) and `optimize`. Under a budget, a BITMAP
        on training_id and a BTREE on data_id too: what finds a run's rows and a question's across runs."""
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            table = self._table(name)
            commits.retrying(lambda table=table: _ensure_key_index(table), action=f"indexing {name}")
        table = self._table(TRAJECTORIES_TABLE)
        if self.budget_rows:
            commits.retrying(lambda: _ensure_across_indexes(table), action="indexing training runs and questions")
        commits.retrying(lambda: _ensure_text_index(table), action="building the full-text index")

    def backfill_derived(self, *, batch: int = 2_000, progress=None) -> int:
        """Compute the derived columns (search text, answered, embedding) of rows that lack them: a
        store made before a column existed holds nulls there (see `_open_or_create`). The rows are
        found in one scan, then written back `batch` at a time by key, each only if the row is still
        the one read (same `imported_at`: an import that replaced it meanwhile computed its own).
        Safe beside imports and edits; it rewrites those rows. Returns the rows filled."""
        table = self._table(TRAJECTORIES_TABLE)
        dataset = _latest(table)
        missing = " OR ".join(f"{name} IS NULL" for name in DERIVED)
        found = dataset.to_table(columns=[KEY], filter=missing, with_row_id=False, with_row_address=False)
        ids = found.column(KEY).to_pylist()
        output = pa.schema([TRAJECTORY_SCHEMA.field(name) for name in (KEY, "imported_at", *DERIVED)])
        filled = 0
        for start in range(0, len(ids), batch):
            chosen = ids[start : start + batch]
            rows = dataset.to_table(
                columns=[KEY, "imported_at", "steps", "final_answer", "tools", SEARCH_TEXT],
                filter=pc.field(KEY).isin(chosen),
            ).to_pylist()
            values = [_derived(row) for row in rows]
            update = pa.Table.from_pylist(values, schema=output)
            commits.retrying(
                lambda update=update: (
                    table.merge_insert(KEY)
                    .when_matched_update_all(where="target.imported_at = source.imported_at")
                    .use_index(False)  # lance 14 panics on a partial-column update through the key index
                    .execute(update)
                ),
                action="filling derived columns",
            )
            filled += len(values)
            if progress is not None:
                progress(filled, len(ids))
        self._wrote()
        return filled

    def text_index_state(self) -> dict[str, int | bool]:
        """Whether content search has its index, and how many rows it scans until the next refresh."""
        self.sync()
        return textsearch.index_state(self._dataset(TRAJECTORIES_TABLE))

    def refresh_indexes(self) -> None:
        """Fold rows written since the last index build into the indexes (cheap; no data rewrite).
        The full-text index gets a new segment for them (20 ms for 2,000 rows at a million): merging
        them into it rewrites the whole index (97 s at a million rows), which `optimize` does."""
        self.ensure_indexes()
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            table = self._table(name)
            names = [index.name for index in table.list_indices()]
            text = [index for index in names if index == textsearch.INDEX_NAME]
            others = [index for index in names if index not in text]
            if others:
                commits.retrying(
                    lambda table=table, others=others: _latest(table).optimize.optimize_indices(index_names=others),
                    action=f"refreshing {name}",
                )
            if text:
                commits.retrying(
                    lambda table=table, text=text: _latest(table).optimize.optimize_indices(
                        index_names=text, num_indices_to_merge=0
                    ),
                    action=f"refreshing the full-text index of {name}",
                )
        self.sync(force=True)

    def optimize(self, *, keep_versions: timedelta) -> list[TableStats]:
        """Compact fragments, update indexes and prune versions older than `keep_versions`."""
        self.ensure_indexes()
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            table = self._table(name)
            commits.retrying(
                lambda table=table: snapshots.optimize(table, keep_versions=keep_versions), action="optimizing"
            )
        self._wrote()
        return self.stats()

    # --- distributed imports ----------------------------------------------------------------

    def staging_uri(self, *, name: str) -> str:
        """Where a distributed import's workers write their fragments: a table of its own beside the
        store's (on the same disk or bucket, so every worker of the cluster reaches it)."""
        return f"{self.uri.rstrip('/')}/{name}.lance"

    def merge_staged(self, *, name: str, imported_at_us: int) -> StagedMerge:
        """Merge a committed staging table into the store in one commit: the first staged record of
        each id, inserted only where the id is not stored (the check inside the commit), then the
        annotations its records carried on the rows this import stored; the staging table is dropped."""
        uri = self.staging_uri(name=name)
        kept = staging.first_of_each_id(uri=uri)
        table = self._table(TRAJECTORIES_TABLE)

        def merge():
            rows = pa.RecordBatchReader.from_batches(TRAJECTORY_SCHEMA, staging.kept_rows(uri=uri, kept=kept))
            builder = table.merge_insert(KEY).when_not_matched_insert_all().use_index(False)
            return builder.execute(rows)

        inserted = commits.retrying(merge, action="merging a distributed import").num_inserted_rows
        self._wrote()
        for changes in staging.annotated(uri=uri, kept=kept):
            ours = self.imported_by(trajectory_ids=list(changes), imported_at_us=imported_at_us)
            mine = {key: change for key, change in changes.items() if key in ours}
            if mine:
                self.annotate_new(changes=mine, user="import")
        self.refresh_indexes()
        self.drop_staging(name=name)
        unique = kept.staged - kept.duplicates
        return StagedMerge(staged=kept.staged, repeated=kept.duplicates, inserted=inserted, stored=unique - inserted)

    def drop_staging(self, *, name: str) -> None:
        with contextlib.suppress(ValueError, FileNotFoundError):
            self._db.drop_table(name)

    # --- snapshots and undo -----------------------------------------------------------------

    def _both(self) -> dict[str, Any]:
        return {name: self._table(name) for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE)}

    def snapshot(self, *, tag: str) -> dict[str, int]:
        """Tag both tables' newest versions as `tag` (kept by every cleanup until the tag is removed)."""
        return snapshots.create(self._both(), tag=tag)

    def snapshots(self) -> list[snapshots.Snapshot]:
        return snapshots.listed(self._both())

    def restore_plan(self, *, tag: str | None = None, version: int | None = None) -> snapshots.RestorePlan:
        return snapshots.plan(self._both(), tag=tag, version=version, main=TRAJECTORIES_TABLE)

    def restore(self, *, plan: snapshots.RestorePlan) -> list[str]:
        """Carry out `plan` (the current state is tagged first, so this too can be undone)."""
        try:
            return snapshots.restore(self._both(), plan, safety_tag=snapshots.safety_tag(plan))
        finally:
            self._wrote()
            self.sync(force=True)

    def imported_ids(self, *, import_id: str) -> list[str]:
        rows = self._newest(TRAJECTORIES_TABLE).to_table(columns=[KEY], filter=pc.field("import_id") == import_id)
        return rows.column(KEY).to_pylist()

    def edited_count(self, *, trajectory_ids: list[str]) -> int:
        """How many of these trajectories a person has annotated (their edits go with them)."""
        if not trajectory_ids:
            return 0
        by = pc.field("updated_by")
        # Not counted: what the import itself wrote ("import") and monitors' tags ("monitor").
        predicate = pc.field(KEY).isin(trajectory_ids) & by.is_valid() & ~by.isin(["import", "monitor"])
        return self._newest(ANNOTATIONS_TABLE).count_rows(filter=predicate)

    def undo_import(self, *, import_id: str) -> int:
        """Delete the rows an import stored (those still carrying its id) and their annotations."""
        ids = self.imported_ids(import_id=import_id)
        if not ids:
            return 0
        trajectories, annotations = self._table(TRAJECTORIES_TABLE), self._table(ANNOTATIONS_TABLE)
        # By its id, inside the commit: a row replaced by a later import meanwhile is not this import's.
        predicate = pc.field("import_id") == import_id
        commits.retrying(lambda: _latest(trajectories).delete(predicate), action="undoing an import")
        gone = sorted(set(ids) - self._present(ids))
        if gone:
            commits.retrying(
                lambda: _latest(annotations).delete(pc.field(KEY).isin(gone)), action="deleting annotations"
            )
        self._wrote()
        self.sync(force=True)
        return len(ids)

    def stats(self) -> list[TableStats]:
        return [self._table_stats(name) for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE)]

    def _table_stats(self, name: str) -> TableStats:
        table = self._table(name)
        raw = table.stats()
        fragments = raw["fragment_stats"]
        return TableStats(
            name=name,
            rows=raw["num_rows"],
            fragments=fragments["num_fragments"],
            small_fragments=fragments["num_small_fragments"],
            version=table.version,
            indexes=tuple(index.name for index in table.list_indices()),
        )


def _latest(table):
    """The table's dataset at its newest version, whatever version this process's handle reads."""
    dataset = table.to_lance()
    latest = dataset.latest_version
    return dataset if dataset.version == latest else dataset.checkout_version(latest)


def _derived(row: dict[str, Any]) -> dict[str, Any]:
    """A row's derived columns: from its search text when it has one (no steps to parse)."""
    if row.get(SEARCH_TEXT) is not None:
        values = from_text(row.get("tools") or [], row[SEARCH_TEXT], row.get("final_answer"))
    else:
        values = derived_columns(row["steps"], row.get("final_answer"))
    return {KEY: row[KEY], "imported_at": row["imported_at"], **values}


def _run_max_steps(dataset) -> dict[str | None, int]:
    """Each run's largest step count (its step budget, as far as the rows show it)."""
    grouped = (
        dataset.to_table(columns=["training_id", "step_count"])
        .group_by("training_id")
        .aggregate([("step_count", "max")])
    )
    return dict(
        zip(grouped.column("training_id").to_pylist(), grouped.column("step_count_max").to_pylist(), strict=True)
    )


def _at_run_max(table: pa.Table, longest: dict[str | None, int]) -> np.ndarray:
    runs = table.column("training_id").to_pylist()
    steps = table.column("step_count").to_numpy()
    return np.array([longest.get(run) == count for run, count in zip(runs, steps.tolist(), strict=True)], dtype=bool)


def _add_columns(table, missing: list[pa.Field]) -> None:
    latest = _latest(table)
    absent = [field for field in missing if field.name not in latest.schema.names]
    if absent:
        latest.add_columns(absent)


def _ensure_text_index(table) -> None:
    table.checkout_latest()
    if table.count_rows() and not textsearch.has_index(table.to_lance()):
        textsearch.create_index(table)


# Under a budget: a run's rows are found by a BITMAP (a few runs), a question across runs by a BTREE.
_ACROSS_INDEXES = ((RUN, Bitmap), ("data_id", BTree))


def _ensure_across_indexes(table) -> None:
    table.checkout_latest()
    if not table.count_rows():
        return
    for column, kind in _ACROSS_INDEXES:
        if (column,) not in {tuple(index.columns) for index in table.list_indices()}:
            table.create_index(column, config=kind(), replace=True)


def _ensure_key_index(table) -> None:
    table.checkout_latest()
    if table.count_rows() == 0:
        return
    if (KEY,) not in {tuple(index.columns) for index in table.list_indices()}:
        table.create_index(KEY, config=BTree(), replace=True)
