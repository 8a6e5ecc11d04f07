"""The trajectory store: every LanceDB call in trajsite goes through `TrajectoryStore`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree

from . import filters
from .schema import (
    ANNOTATION_SCHEMA,
    ANNOTATIONS_TABLE,
    SUMMARY_COLUMNS,
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
    def __init__(self, *, uri: str, read_consistency: timedelta | None = timedelta(0)) -> None:
        self.uri = uri
        self._db = lancedb.connect(uri, read_consistency_interval=read_consistency)
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

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
        return self._table(TRAJECTORIES_TABLE).count_rows()

    def existing_ids(self, *, ids: list[str], indexed_only: bool = False) -> set[str]:
        """Which of `ids` are stored already, in one indexed lookup.

        `indexed_only` skips rows not yet in the trajectory_id index: an importer that tracks the
        ids it wrote itself uses it so the lookup stays an index probe instead of a scan.
        """
        if not ids:
            return set()
        dataset = self._table(TRAJECTORIES_TABLE).to_lance()
        rows = dataset.to_table(
            columns=["trajectory_id"],
            filter=pc.field("trajectory_id").isin(ids),
            fast_search=indexed_only,
        )
        return set(rows.column("trajectory_id").to_pylist())

    def get(self, *, trajectory_id: str) -> dict[str, Any] | None:
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
        """Annotation fields for each id, defaults where nothing was ever annotated."""
        result = {trajectory_id: _default_annotation() for trajectory_id in trajectory_ids}
        if not trajectory_ids:
            return result
        rows = (
            self._table(ANNOTATIONS_TABLE)
            .search()
            .where(filters.is_in("trajectory_id", trajectory_ids))
            .limit(None)
            .to_arrow()
        )
        for row in rows.to_pylist():
            result[row.pop("trajectory_id")] = row
        return result

    def recent(self, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Summary rows newest first; a plain scan kept for small tables until the query engine."""
        rows = (
            self._table(TRAJECTORIES_TABLE)
            .search()
            .select(["created_at", "trajectory_id"])
            .limit(None)
            .to_arrow()
            .sort_by([("created_at", "descending"), ("trajectory_id", "descending")])
            .slice(offset, limit)
        )
        ids = rows.column("trajectory_id").to_pylist()
        return self.summaries(trajectory_ids=ids)

    def summaries(self, *, trajectory_ids: list[str]) -> list[dict[str, Any]]:
        """Summary rows (no steps) with annotations, in the order of `trajectory_ids`."""
        if not trajectory_ids:
            return []
        rows = (
            self._table(TRAJECTORIES_TABLE)
            .search()
            .where(filters.is_in("trajectory_id", trajectory_ids))
            .select(list(SUMMARY_COLUMNS))
            .limit(None)
            .to_arrow()
        )
        by_id = {row["trajectory_id"]: row for row in rows.to_pylist()}
        notes = self.annotations(trajectory_ids=trajectory_ids)
        return [{**by_id[i], **notes[i]} for i in trajectory_ids if i in by_id]

    # --- writes -----------------------------------------------------------------------------

    def append(self, *, trajectories: pa.Table, annotations: pa.Table | None = None) -> WriteResult:
        """Add rows whose ids are known to be new: one version and one fragment per call."""
        if trajectories.num_rows:
            self._table(TRAJECTORIES_TABLE).add(trajectories)
        if annotations is not None and annotations.num_rows:
            self._upsert(ANNOTATIONS_TABLE, annotations)
        return WriteResult(inserted=trajectories.num_rows, updated=0)

    def upsert(self, *, trajectories: pa.Table, annotations: pa.Table | None = None) -> WriteResult:
        """Insert new ids and replace stored ones, atomically per call."""
        result = WriteResult(inserted=0, updated=0)
        if trajectories.num_rows:
            merged = self._upsert(TRAJECTORIES_TABLE, trajectories)
            result = WriteResult(inserted=merged.num_inserted_rows, updated=merged.num_updated_rows)
        if annotations is not None and annotations.num_rows:
            self._upsert(ANNOTATIONS_TABLE, annotations)
        return result

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

    def optimize(self, *, keep_versions: timedelta) -> list[TableStats]:
        """Compact fragments, update indexes and prune versions older than `keep_versions`."""
        self.ensure_indexes()
        for name in (TRAJECTORIES_TABLE, ANNOTATIONS_TABLE):
            self._table(name).optimize(cleanup_older_than=keep_versions)
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


def _default_annotation() -> dict[str, Any]:
    return {
        "is_bookmarked": False,
        "is_success": None,
        "category": None,
        "root_cause": None,
        "tags": [],
        "notes": None,
        "updated_at": None,
        "updated_by": None,
    }
