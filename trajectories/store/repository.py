"""The trajectory store: every LanceDB call in trajsite goes through `TrajectoryStore`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree

from trajectories.query import TrajectoryQuery

from . import filters
from .annotations import AnnotationChange, blank_annotation
from .engine import QueryEngine, ResultPage
from .schema import (
    ANNOTATION_SCHEMA,
    ANNOTATIONS_TABLE,
    TRAJECTORIES_TABLE,
    TRAJECTORY_SCHEMA,
)

_SCHEMAS = {TRAJECTORIES_TABLE: TRAJECTORY_SCHEMA, ANNOTATIONS_TABLE: ANNOTATION_SCHEMA}


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    updated: int


@dataclass(frozen=True)
class TableStats:
    name: str
    rows: int
    fragments: int
    small_fragments: int
    version: int
    indexes: tuple[str, ...]


class TrajectoryStore:
    def __init__(self, *, uri: str, version_check_seconds: float = 0.0) -> None:
        """`version_check_seconds`: how stale a read may be when nobody says data changed.

        Table handles never look for new versions by themselves (read_consistency_interval=None:
        on object storage every check is a request). `sync()` moves them to the newest version when
        forced (the cache generation changed: another process wrote) or when this interval has passed;
        0 checks on every read, which costs well under a millisecond on a local disk.
        """
        self.uri = uri
        self.version_check_seconds = version_check_seconds
        self._db = lancedb.connect(uri, read_consistency_interval=None)
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._synced_at = 0.0
        self._probes: dict[str, Any] = {}
        self._known_versions: dict[str, int] = {}
        self.reads = 0
        self.engine = QueryEngine(open_tables=self._open_tables)

    def _open_tables(self):
        self.sync()
        return self._table(TRAJECTORIES_TABLE), self._table(ANNOTATIONS_TABLE)

    def sync(self, *, force: bool = False) -> None:
        """Move the table handles to the newest versions (see __init__ for when)."""
        now = time.monotonic()
        if not force and now - self._synced_at < self.version_check_seconds:
            return
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            # The dataset's latest version is a cheap look; the handle is re-opened only when it moved.
            latest = self._probe(name).latest_version
            if force or latest != self._known_versions.get(name):
                table = self._table(name)
                table.checkout_latest()
                self._known_versions[name] = table.version
        self._synced_at = now

    def _wrote(self) -> None:
        """After a write through this store: the next read re-checks versions."""
        self._known_versions.clear()
        self._synced_at = 0.0

    def _probe(self, name: str):
        probe = self._probes.get(name)
        if probe is None:
            probe = self._probes[name] = self._table(name).to_lance()
        return probe

    def versions(self) -> tuple[int, int]:
        """(trajectories, annotations) table versions after a sync: part of every cache key."""
        self.sync()
        if len(self._known_versions) < 2:
            self.sync(force=True)
        return self._known_versions[TRAJECTORIES_TABLE], self._known_versions[ANNOTATIONS_TABLE]

    # --- tables -----------------------------------------------------------------------------

    def _table(self, name: str):
        table = self._tables.get(name)
        if table is None:
            with self._lock:
                table = self._tables.get(name)
                if table is None:
                    table = self._db.create_table(name, schema=_SCHEMAS[name], exist_ok=True)
                    self._tables[name] = table
        return table

    # --- reads ------------------------------------------------------------------------------

    def count(self) -> int:
        self.sync()
        return self._table(TRAJECTORIES_TABLE).count_rows()

    def existing_ids(self, *, ids: list[str], indexed_only: bool = False) -> set[str]:
        """Which of `ids` are stored already, in one indexed lookup.

        `indexed_only` skips rows not yet in the trajectory_id index: an importer that tracks the
        ids it wrote itself uses it so the lookup stays an index probe instead of a scan.
        """
        if not ids:
            return set()
        self.sync()
        dataset = self._table(TRAJECTORIES_TABLE).to_lance()
        rows = dataset.to_table(
            columns=["trajectory_id"],
            filter=pc.field("trajectory_id").isin(ids),
            fast_search=indexed_only,
        )
        return set(rows.column("trajectory_id").to_pylist())

    def get(self, *, trajectory_id: str) -> dict[str, Any] | None:
        """One trajectory with its steps and annotations."""
        self.reads += 1
        projection = self.engine.peek()
        if projection is not None:
            # A loaded projection finds the row by binary search and takes it from its own version.
            return self.engine.get(trajectory_id, projection)
        rows = (
            self._table(TRAJECTORIES_TABLE)
            .search()
            .where(filters.equals("trajectory_id", trajectory_id))
            .limit(1)
            .to_arrow()
        )
        if rows.num_rows == 0:
            return None
        record = rows.to_pylist()[0]
        record.update(self.annotations(trajectory_ids=[trajectory_id])[trajectory_id])
        return record

    def annotations(self, *, trajectory_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Annotation fields for each id, blank where nothing was ever annotated."""
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
        dataset = self._table(ANNOTATIONS_TABLE).to_lance()
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

    def facets(self, *, query: TrajectoryQuery | None = None) -> dict[str, list[tuple[str, int]]]:
        self.reads += 1
        return self.engine.facets(query)

    def matching_ids(self, *, query: TrajectoryQuery) -> list[str]:
        return self.engine.matching_ids(query)

    # --- writes -----------------------------------------------------------------------------

    def append(self, *, trajectories: pa.Table, annotations: pa.Table | None = None) -> WriteResult:
        """Add rows whose ids are known to be new: one version and one fragment per call."""
        if trajectories.num_rows:
            self._table(TRAJECTORIES_TABLE).add(trajectories)
        if annotations is not None and annotations.num_rows:
            self._upsert(ANNOTATIONS_TABLE, annotations)
        self._wrote()
        return WriteResult(inserted=trajectories.num_rows, updated=0)

    def upsert(self, *, trajectories: pa.Table, annotations: pa.Table | None = None) -> WriteResult:
        """Insert new ids and replace stored ones, atomically per call."""
        result = WriteResult(inserted=0, updated=0)
        if trajectories.num_rows:
            merged = self._upsert(TRAJECTORIES_TABLE, trajectories)
            result = WriteResult(inserted=merged.num_inserted_rows, updated=merged.num_updated_rows)
        if annotations is not None and annotations.num_rows:
            self._upsert(ANNOTATIONS_TABLE, annotations)
        self._wrote()
        return result

    def annotate(self, *, trajectory_ids: list[str], change: AnnotationChange, user: str | None) -> int:
        """Apply `change` to the stored trajectories among `trajectory_ids`, in one write."""
        ids = list(dict.fromkeys(trajectory_ids))
        stored = self.existing_ids(ids=ids)
        if not stored or change.is_empty():
            return 0
        current = {row["trajectory_id"]: row for row in self._annotation_rows(sorted(stored))}
        now = datetime.now(tz=UTC)
        rows = []
        for trajectory_id in ids:
            if trajectory_id in stored:
                row = change.apply(current.get(trajectory_id) or blank_annotation(trajectory_id))
                rows.append({**row, "updated_at": now, "updated_by": user})
        before = self._table(ANNOTATIONS_TABLE).version
        merged = self._upsert(ANNOTATIONS_TABLE, pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA))
        self.engine.annotations_written(rows, before=before, after=merged.version)
        self._wrote()
        return len(rows)

    def delete(self, *, trajectory_ids: list[str]) -> int:
        """Delete trajectories and their annotations; returns how many were stored."""
        stored = sorted(self.existing_ids(ids=list(dict.fromkeys(trajectory_ids))))
        if not stored:
            return 0
        predicate = pc.field("trajectory_id").isin(stored)
        self._table(TRAJECTORIES_TABLE).to_lance().delete(predicate)
        if self._table(ANNOTATIONS_TABLE).count_rows():
            self._table(ANNOTATIONS_TABLE).to_lance().delete(predicate)
        self.sync(force=True)
        return len(stored)

    def _upsert(self, name: str, rows: pa.Table):
        return (
            self._table(name)
            .merge_insert("trajectory_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )

    # --- maintenance ------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """BTREE on trajectory_id for both tables; new rows are folded in by `optimize`."""
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            table = self._table(name)
            if table.count_rows() == 0:
                continue
            indexed = {tuple(index.columns) for index in table.list_indices()}
            if ("trajectory_id",) not in indexed:
                table.create_index("trajectory_id", config=BTree(), replace=True)

    def refresh_indexes(self) -> None:
        """Fold rows written since the last index build into the indexes (cheap; no data rewrite)."""
        self.ensure_indexes()
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            table = self._table(name)
            if table.list_indices():
                table.to_lance().optimize.optimize_indices()
        self.sync(force=True)

    def optimize(self, *, keep_versions: timedelta) -> list[TableStats]:
        """Compact fragments, update indexes and prune versions older than `keep_versions`."""
        self.ensure_indexes()
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            self._table(name).optimize(cleanup_older_than=keep_versions)
        self._wrote()
        return self.stats()

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
