"""Keeps one fresh `Projection` per process and answers list, facet and id look-ups from it."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from trajectories.query import TrajectoryQuery

from .projection import Annotations, Projection
from .schema import ANNOTATION_COLUMNS, SUMMARY_COLUMNS

log = logging.getLogger(__name__)

FACET_FIELDS = ("agent_name", "training_id", "category", "tools", "tags")


@dataclass(frozen=True)
class ResultPage:
    rows: list[dict[str, Any]]
    count: int
    version: int


class QueryEngine:
    """Builds the projection from the newest table versions; rebuilds when a version moves on.

    `open_tables` returns the (trajectories, annotations) LanceDB tables; their `.version` is read on
    every call (a cheap manifest check with read_consistency_interval=0), so a write made by any
    process is seen by the next read here.
    """

    def __init__(self, *, open_tables: Callable[[], tuple[Any, Any]]) -> None:
        self._open_tables = open_tables
        self._projection: Projection | None = None
        self._lock = threading.Lock()
        self.builds = 0

    def current(self) -> Projection:
        trajectories, annotations = self._open_tables()
        wanted = (trajectories.version, annotations.version)
        projection = self._projection
        if projection is not None and (projection.version, projection.annotations.version) == wanted:
            return projection
        with self._lock:
            projection = self._projection
            if projection is None or projection.version != wanted[0]:
                projection = self._build(trajectories, annotations)
            elif projection.annotations.version != wanted[1]:
                projection = projection.with_annotations(self._annotations(annotations, projection.trajectory_id))
            self._projection = projection
        return projection

    def peek(self) -> Projection | None:
        """The projection if one is loaded and still current, without building one."""
        projection = self._projection
        if projection is None:
            return None
        trajectories, annotations = self._open_tables()
        if (projection.version, projection.annotations.version) != (trajectories.version, annotations.version):
            return None
        return projection

    def _build(self, trajectories, annotations) -> Projection:
        started = time.perf_counter()
        dataset = trajectories.to_lance()
        projection = Projection.load(
            dataset,
            annotations=None,
            annotation_table=_annotation_table(annotations),
            annotation_version=annotations.version,
        )
        self.builds += 1
        log.info(
            "projection of %s rows (version %s) built in %.2f s",
            projection.rows,
            projection.version,
            time.perf_counter() - started,
        )
        return projection

    def _annotations(self, annotations, trajectory_ids: pa.Array) -> Annotations:
        return Annotations.load(
            _annotation_table(annotations), version=annotations.version, trajectory_ids=trajectory_ids
        )

    # --- answers ----------------------------------------------------------------------------

    def page(self, query: TrajectoryQuery) -> ResultPage:
        projection = self.current()
        positions, count = projection.select(query)
        return ResultPage(rows=summaries(projection, positions), count=count, version=projection.version)

    def matching_ids(self, query: TrajectoryQuery) -> list[str]:
        projection = self.current()
        mask = projection.mask(query)
        ids = projection.trajectory_id if mask is None else projection.trajectory_id.filter(pa.array(mask))
        return ids.to_pylist()

    def facets(self, query: TrajectoryQuery | None = None) -> dict[str, list[tuple[str, int]]]:
        """Distinct values with counts (among rows matching `query`, when given), most frequent first."""
        projection = self.current()
        mask = projection.mask(query) if query is not None else None
        notes = projection.annotations
        sources = {
            "agent_name": (projection.coded["agent_name"].codes, projection.coded["agent_name"].uniques, None),
            "training_id": (projection.coded["training_id"].codes, projection.coded["training_id"].uniques, None),
            "category": (notes.category.codes, notes.category.uniques, None),
            "tools": (projection.tools.coded.codes, projection.tools.coded.uniques, projection.tools.rows),
            "tags": (notes.tags.coded.codes, notes.tags.coded.uniques, notes.tags.rows),
        }
        return {name: _counts(codes, uniques, rows, mask) for name, (codes, uniques, rows) in sources.items()}

    def position_of(self, projection: Projection, trajectory_id: str) -> int | None:
        """Binary search over the id order: no scan, no index probe."""
        order = projection.order("trajectory_id", False)
        ids = projection.trajectory_id
        index = bisect.bisect_left(_SortedIds(ids, order), trajectory_id)
        if index < len(order) and ids[int(order[index])].as_py() == trajectory_id:
            return int(order[index])
        return None


class _SortedIds:
    """A read-only sequence view of the ids in sorted order, for bisect."""

    def __init__(self, ids: pa.Array, order: np.ndarray) -> None:
        self._ids = ids
        self._order = order

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index: int) -> str:
        return self._ids[int(self._order[index])].as_py()


def summaries(projection: Projection, positions: np.ndarray) -> list[dict[str, Any]]:
    """The rows at `positions`, without steps, with their annotations from the projection."""
    if len(positions) == 0:
        return []
    columns = [name for name in SUMMARY_COLUMNS]
    table = projection.dataset.take(pa.array(positions, pa.int64()), columns=columns)
    rows = table.to_pylist()
    notes = projection.annotations
    tags = notes.tags.per_row(positions)
    for row, position, row_tags in zip(rows, positions, tags, strict=True):
        row.update(_annotation_fields(notes, int(position), row_tags))
    return rows


def _annotation_fields(notes: Annotations, position: int, tags: list[str]) -> dict[str, Any]:
    success = int(notes.is_success[position])
    return {
        "is_bookmarked": bool(notes.is_bookmarked[position]),
        "is_success": None if success < 0 else bool(success),
        "category": _decode(notes.category, position),
        "root_cause": _decode(notes.root_cause, position),
        "tags": tags,
    }


def _decode(coded, position: int) -> str | None:
    code = int(coded.codes[position])
    return None if code < 0 else coded.uniques[code].as_py()


def _annotation_table(annotations) -> pa.Table:
    return annotations.to_lance().to_table(columns=list(ANNOTATION_COLUMNS))


def _counts(codes: np.ndarray, uniques: pa.Array, rows: np.ndarray | None, mask: np.ndarray | None):
    if mask is not None:
        codes = codes[mask[rows]] if rows is not None else codes[mask]
    codes = codes[codes >= 0]
    counts = np.bincount(codes, minlength=len(uniques)) if len(uniques) else np.zeros(0, dtype=np.int64)
    present = np.flatnonzero(counts)
    ranked = present[np.lexsort((present, -counts[present]))]
    return [(uniques[int(code)].as_py(), int(counts[code])) for code in ranked]
