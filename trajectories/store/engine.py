"""Keeps one fresh `Projection` per process and answers lists, facets and id look-ups from it."""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trajectories import fields, priority
from trajectories.analysis import ChangeQuery, GroupQuery
from trajectories.query import DEFAULT_ORDERING, TrajectoryQuery

from . import analytics, similarity, textsearch
from .mapped import ProjectionFiles
from .projection import PROJECTED_COLUMNS, AnnotationColumns, Projection, layout_rows, rows_layout
from .schema import TRAJECTORY_SCHEMA

log = logging.getLogger(__name__)

FACET_FIELDS = tuple(field.name for field in fields.FACETS)
# A record is every stored field but the internal ones (the search text, the embedding).
RECORD_COLUMNS = tuple(name for name in TRAJECTORY_SCHEMA.names if name not in fields.INTERNAL)
UNPROJECTED = tuple(name for name in RECORD_COLUMNS if name not in PROJECTED_COLUMNS)
_RECORD_ORDER = (*RECORD_COLUMNS, *(f.name for f in fields.PROJECTED if f.table == fields.ANNOTATIONS))
_SAME, _APPENDED, _CHANGED = "same rows", "rows appended", "rows changed"
_KEPT_RELATIONS = 4
# Projections this large get their common sort orders built ahead of the first request that needs one.
WARM_ROWS = 50_000


@dataclass(frozen=True)
class ResultPage:
    rows: list[dict[str, Any]]
    count: int
    version: int
    note: str | None = None  # how the rows were chosen when not as asked (a list across runs, runs.py)


class QueryEngine:
    """Keeps the projection of the newest table versions; a request never waits for a large rebuild.

    `open_tables` returns the (trajectories, annotations) datasets at the newest versions the store
    has seen (it looks for new ones on every call, or as often as it is told to), so a write made by
    any process is seen by the next read here. When the trajectories table moves on (an import, a
    delete, a compaction), a projection of `background_rows` rows or more is rebuilt on a background thread
    while the previous one keeps answering (with current annotations: a user's edits show at once);
    the new one, with its common sort orders built, replaces it when ready. A smaller one is rebuilt
    on the spot (tens of milliseconds). Answers from a projection that is not the newest are marked
    (see `served`), so caches keyed by table versions never store them under the newer key.
    """

    def __init__(
        self,
        *,
        open_tables: Callable[[], tuple[Any, Any]],
        background_rows: int = 100_000,
        files: ProjectionFiles | None = None,
        shared_rows: int = 100_000,
        build_elsewhere: Callable[..., bool] | None = None,
    ) -> None:
        self._open_tables = open_tables
        self.background_rows = background_rows
        self.files = files  # where projections of `shared_rows` rows or more are shared between processes
        self.shared_rows = shared_rows
        # Writes a new version's shared files in another process (builder.py): called as
        # build_elsewhere(version=..., previous=...), True once they are written.
        self.build_elsewhere = build_elsewhere
        self.built_elsewhere = 0
        self._projection: Projection | None = None
        self._lock = threading.Lock()
        self._building = False  # a background build is under way
        self._building_lock = threading.Lock()
        self.builds = 0
        self.appends = 0  # new versions followed by reading only their new fragments
        self._warmed = threading.Event()  # the first projection's sort orders and analytics are built
        # (projection version, newest version) -> how the newest rows relate to the projection's: asked
        # by every request while an import outruns the builds, so looked up once per pair.
        self._relations: dict[tuple[int, int], str] = {}
        self._released = 0  # how often the projection was let go: a build started before does not bring it back

    def rows_held(self) -> int:
        projection = self._projection
        return 0 if projection is None else projection.rows

    def release(self) -> None:
        """Let the projection go (its rows no longer fit this process's budget, see runs.py). Without
        the lock: a first build holds it for seconds, and the caller is answering another request."""
        self._released += 1
        self._projection = None

    def ready(self) -> bool:
        """Whether this process holds a projection to answer from (it may be a version behind)."""
        return self._projection is not None

    def warmed(self) -> bool:
        """Whether the first projection is ready with what requests would otherwise build (sort
        orders, analytics): ~9 s of CPU at 1M rows, which the first minute's requests would share."""
        return self._projection is not None and self._warmed.is_set()

    def current(self) -> Projection:
        trajectories, annotations = self._open_tables()
        wanted = (trajectories.version, annotations.version)
        projection = self._projection
        if projection is None or _versions(projection) != wanted:
            projection = self._refreshed(trajectories, annotations, wanted)
        _note_served(_versions(projection), wanted)
        return projection

    def answering_versions(self, annotation_fields: frozenset[str] | None = None) -> tuple[int, int]:
        """What an answer from this process depends on (part of every cache key): the trajectories
        version of the projection that answers (while the next one is built, the previous one's: its
        answers are then cached, and shared by every process serving it) and its annotations version,
        or with `annotation_fields` the version at which one of those last changed there (an answer
        reading only them is the same until then: tagging leaves statistics cached). Edits of rows the
        projection does not hold do not move it, and do not change its answers either."""
        projection = self.current()
        if annotation_fields is None:
            return _versions(projection)
        return projection.version, projection.annotations.changed_at(annotation_fields)

    def annotations_held(self, trajectory_ids: list[str]) -> list[dict[str, Any]] | None:
        """`annotations_of` from the projection held, if it is current; never builds one."""
        projection = self.peek()
        if projection is None:
            return None
        positions = [projection.position_of(trajectory_id) for trajectory_id in trajectory_ids]
        if any(position is None for position in positions):
            return None
        return projection.annotations.fields_at(np.array(positions, dtype=np.int64))

    def annotations_of(self, trajectory_ids: list[str]) -> list[dict[str, Any]] | None:
        """The annotation fields of each trajectory as the projection that answers holds them (what a
        cached answer's rows are given afresh); None when it does not hold one of them."""
        projection = self.current()
        positions = [projection.position_of(trajectory_id) for trajectory_id in trajectory_ids]
        if any(position is None for position in positions):
            return None
        return projection.annotations.fields_at(np.array(positions, dtype=np.int64))

    def _refreshed(self, trajectories, annotations, wanted: tuple[int, int]) -> Projection:
        projection = self._projection
        if (
            projection is not None
            and projection.version != wanted[0]
            and self._relation(projection, trajectories) == _SAME
        ):
            repinned = projection.repinned(trajectories)
            if repinned is not None:  # a new version with the same rows (an index refresh)
                with self._lock:
                    if self._projection is projection:
                        self._projection = repinned
                projection = self._projection
        if projection is not None and projection.version != wanted[0] and projection.rows >= self.background_rows:
            self._build_in_background(trajectories, annotations)
        with self._lock:
            projection = self._projection
            if projection is None or (projection.version != wanted[0] and projection.rows < self.background_rows):
                projection = self._build(trajectories, annotations)
                self._warm_in_background(projection)
            if projection.annotations.version != wanted[1]:
                projection = self._with_current_annotations(projection, annotations)
            self._projection = projection
        return projection

    def holds_unchanged(self, projection: Projection) -> bool:
        """Whether every row `projection` holds is in the newest version as it holds it: the newest is
        its own, or only appended rows to it (an import landing while the next one is built)."""
        trajectories, _ = self._open_tables()
        return projection.version == trajectories.version or self._relation(projection, trajectories) != _CHANGED

    def held_in(self, dataset, trajectory_ids: list[str]) -> set[str]:
        """Which of `trajectory_ids` `dataset` (a trajectories version) holds, as far as the serving
        projection tells without reading the table: those it holds, when every row it holds is in
        `dataset` unchanged (its own version, or rows appended to it). An id it does not hold may still
        be stored (imported since, or while it is rebuilt): the caller asks the table about the rest."""
        projection = self._projection
        if projection is None or not trajectory_ids:
            return set()
        if projection.version != dataset.version and self._relation(projection, dataset) == _CHANGED:
            return set()
        return {key for key in trajectory_ids if projection.position_of(key) is not None}

    def _relation(self, projection: Projection, dataset) -> str:
        """Whether `dataset` (a trajectories version) holds the same rows as `projection`, those rows
        followed by appended ones, or changed ones."""
        key = (projection.version, dataset.version)
        found = self._relations.get(key)
        if found is None:
            layout, held = rows_layout(dataset), projection.layout
            found = _CHANGED if not held or layout[: len(held)] != held else _SAME if layout == held else _APPENDED
            # Asked for the version served (each request) and the newest one (each edit, while an
            # import outruns the builds): a few pairs kept, the oldest dropped.
            self._relations = {**dict(list(self._relations.items())[-(_KEPT_RELATIONS - 1) :]), key: found}
        return found

    def _with_current_annotations(self, projection: Projection, annotations) -> Projection:
        """The projection with the annotations of now: the fragments added since it read them (an
        edit, an import's rows), else a full read, in the background for a large projection."""
        followed = projection.annotations.followed(annotations, projection=projection)
        if followed is not None:
            return projection.with_annotations(followed)
        if projection.rows >= self.background_rows:
            self._build_in_background(None, annotations, rows_of=projection)
            return projection
        read = AnnotationColumns.read(annotations, trajectory_ids=projection.ids.array, held=projection.version)
        return projection.with_annotations(read)

    def _build_in_background(self, trajectories, annotations, *, rows_of: Projection | None = None) -> None:
        """Start building the projection of `trajectories`' version (or `rows_of`'s rows with annotations
        read anew), unless a build is under way."""
        with self._building_lock:
            if self._building:
                return
            self._building = True
        thread = threading.Thread(
            target=self._background_build,
            args=(trajectories, annotations, rows_of, self._released),
            name="trajsite-projection",
            daemon=True,
        )
        thread.start()

    def _background_build(self, dataset, annotation_dataset, rows_of: Projection | None, released: int) -> None:
        with _requests_first():
            self._build_and_swap(dataset, annotation_dataset, rows_of, released)

    def _build_and_swap(self, dataset, annotation_dataset, rows_of: Projection | None, released: int) -> None:
        """`released`: how often the projection had been let go when the build was asked for."""
        started = time.perf_counter()
        try:
            if rows_of is None:
                serving = self._projection
                projection = self._next(serving, dataset, annotation_dataset)
                # Ready to serve once it has the orders the current one was asked for; the rest are
                # built after the swap.
                in_use = serving.orders_in_use() if serving is not None else []
                projection.warm(orders=[*DEFAULT_ORDERING, ("trajectory_id", False), *in_use])
                textsearch.warm(projection)
                if serving is not None and analytics.in_use(serving):
                    analytics.warm(projection)
            else:
                read = AnnotationColumns.read(
                    annotation_dataset, trajectory_ids=rows_of.ids.array, held=rows_of.version
                )
                projection = rows_of.with_annotations(read)
            self.builds += 1
            self._warmed.set()  # orders in use are built (the first projection may have come this way)
            _return_freed_memory()
            with self._lock:
                current = self._projection
                if self._released != released:
                    return
                if current is None or _versions(current) < _versions(projection):
                    self._projection = projection
            log.info(
                "projection of version %s serving after %.2f s in the background",
                _versions(projection),
                time.perf_counter() - started,
            )
        except Exception:
            log.exception("projection of version %s not built; the previous one keeps serving", _name(dataset))
            return
        finally:
            self._building = False  # the next version may start building: it stops the warming below
        if rows_of is None:
            stop = lambda: self._building or self._projection is not projection  # noqa: E731
            projection.warm(stop=stop)
            if not stop():
                analytics.warm(projection)
        _freeze_long_lived()

    def _warm_in_background(self, projection: Projection) -> None:
        if projection.rows < WARM_ROWS:
            self._warmed.set()
            return
        threading.Thread(
            target=self._warm, args=(projection, self._released), name="trajsite-sort-orders", daemon=True
        ).start()

    def _warm(self, projection: Projection, released: int) -> None:
        try:
            # A projection let go meanwhile (runs.py drops a run's) is not warmed on: its memory goes.
            _warm(projection, stop=lambda: self._released != released)
        finally:
            self._warmed.set()

    def annotations_written(self, rows: list[dict[str, Any]], *, before: int, after: int) -> None:
        """Fold annotation rows this process just wrote into the projection, instead of re-reading
        every annotation. Only when nothing else was written in between (after == before + 1)."""
        with self._lock:
            projection = self._projection
            if projection is None or projection.annotations.version != before or after != before + 1:
                return
            positions = [projection.position_of(row["trajectory_id"]) for row in rows]
            if any(position is None for position in positions):
                return
            patched = projection.annotations.patched(np.array(positions, dtype=np.int64), rows, version=after)
            if patched is not None:
                self._projection = projection.with_annotations(patched)

    def peek(self) -> Projection | None:
        """The projection if one is loaded and still current, without building one."""
        projection = self._projection
        if projection is None:
            return None
        trajectories, annotations = self._open_tables()
        return projection if _versions(projection) == (trajectories.version, annotations.version) else None

    def _next(self, serving: Projection | None, dataset, annotation_dataset) -> Projection:
        """The projection of `dataset`: mapped from the files another process shared, else `serving`
        followed by the rows of the fragments an import appended (read alone), else the whole version
        read; shared in turn when large enough. In the background while `serving` answers, the shared
        files are first written by a process of their own, when one is configured (never on a request:
        it would wait for a process starting)."""
        layout = rows_layout(dataset)
        if self.files is None or layout_rows(layout) < self.shared_rows:
            return self._read(serving, dataset, annotation_dataset)
        with self.files.building(uri=dataset.uri, layout=layout):
            written = self.files.written(uri=dataset.uri, layout=layout)
            elsewhere = serving is not None and self.build_elsewhere is not None and priority.this_thread_lowered()
            if elsewhere and not written:
                self._write_elsewhere(serving, dataset)
            return self._read(serving, dataset, annotation_dataset)

    def _write_elsewhere(self, serving: Projection | None, dataset) -> None:
        """Have another process write `dataset`'s shared files (appended to `serving`'s when it is
        mapped); if it cannot, the caller builds them here."""
        previous = serving.version if serving is not None and serving.files is not None else None
        self.built_elsewhere += bool(self.build_elsewhere(version=dataset.version, previous=previous))

    def _read(self, serving: Projection | None, dataset, annotation_dataset) -> Projection:
        projection = None
        if self.files is not None:
            projection = Projection.mapped(
                dataset, files=self.files, serving=serving, annotation_dataset=annotation_dataset
            )
        if projection is None and serving is not None:
            projection = serving.appended(dataset)
            self.appends += projection is not None
        if projection is None:
            return self._shared(Projection.load(dataset, annotation_dataset=annotation_dataset))
        followed = projection.annotations.followed(annotation_dataset, projection=projection)
        if followed is None:
            followed = AnnotationColumns.read(
                annotation_dataset, trajectory_ids=projection.ids.array, held=projection.version
            )
        return self._shared(projection.with_annotations(followed))

    def _shared(self, projection: Projection) -> Projection:
        if self.files is None or projection.rows < self.shared_rows:
            return projection
        return projection.shared(self.files)

    def _build(self, trajectories, annotations) -> Projection:
        started = time.perf_counter()
        projection = self._next(self._projection, trajectories, annotations)
        self.builds += 1
        _return_freed_memory()
        log.info(
            "projection of %s rows (version %s) built in %.2f s",
            projection.rows,
            projection.version,
            time.perf_counter() - started,
        )
        return projection

    # --- answers ----------------------------------------------------------------------------

    def page(self, query: TrajectoryQuery) -> ResultPage:
        projection = self.current()
        positions, count = projection.select(query)
        rows = projection.rows_at(positions)
        if query.text is not None:
            scores = textsearch.scores(projection, query.text)[positions] if query.text.ranked else None
            for index, found in enumerate(textsearch.snippets(projection, positions, query.text)):
                rows[index]["snippet"] = found
                rows[index]["score"] = float(scores[index]) if scores is not None else None
        return ResultPage(rows=rows, count=count, version=projection.version)

    def matching_ids(self, query: TrajectoryQuery) -> list[str]:
        """Every matching id, sorted: the same rows give the same list, whatever the table layout."""
        projection = self.current()
        mask = projection.mask(query)
        order = projection.order("trajectory_id", False)
        if mask is not None:
            order = order[mask[order]]
        return projection.ids.array.take(pa.array(order, pa.int64())).to_pylist()

    def get(self, trajectory_id: str, projection: Projection) -> dict[str, Any] | None:
        position = projection.position_of(trajectory_id)
        if position is None:
            return None
        # The small fields come from memory; only what the projection lacks (steps, ...) is read: a take
        # of every column costs a read per column.
        found = projection.rows_at(np.array([position]))[0]
        found.update(projection.dataset.take([position], columns=list(UNPROJECTED)).to_pylist()[0])
        return {name: found[name] for name in _RECORD_ORDER if name in found}

    def neighbours(self, query: TrajectoryQuery, trajectory_id: str) -> tuple[str | None, str | None, int | None, int]:
        projection = self.current()
        position = projection.position_of(trajectory_id)
        ordered = projection.ordered(query)
        if position is None:
            return None, None, None, len(ordered)
        hits = np.flatnonzero(ordered == position)
        if not len(hits):
            return None, None, None, len(ordered)
        index = int(hits[0])
        ids = projection.ids.array
        before = ids[int(ordered[index - 1])].as_py() if index > 0 else None
        after = ids[int(ordered[index + 1])].as_py() if index + 1 < len(ordered) else None
        return before, after, index, len(ordered)

    def records(self, trajectory_ids: list[str], batch: int = 500):
        """Yield full records with annotations, `batch` at a time, all from one projection's version."""
        projection = self.current()
        positions = [projection.position_of(trajectory_id) for trajectory_id in trajectory_ids]
        yield from _records_at(projection, np.array([p for p in positions if p is not None], dtype=np.int64), batch)

    def ordered_records(self, query: TrajectoryQuery, *, progress=None, batch: int = 2_000):
        """Every matching record in the list's order, read `batch` at a time from one version;
        `progress(done, total)` after each batch."""
        projection = self.current()
        positions = projection.ordered(query)
        yield from _records_at(projection, positions, batch, progress=progress)

    def group_pairs(self, query: TrajectoryQuery, *, min_gap: float, progress=None, batch: int = 250):
        """(worst, best) records of each GRPO group among the matching rows whose rewards differ by
        at least `min_gap`, in group order."""
        projection = self.current()
        worst, best = analytics.extremes(projection, mask=projection.mask(query), min_gap=min_gap)
        both = np.empty(2 * len(worst), dtype=np.int64)
        both[0::2], both[1::2] = worst, best
        records = _records_at(
            projection, both, 2 * batch, progress=lambda done, total: progress and progress(done // 2, total // 2)
        )
        for low in records:
            yield low, next(records)

    def similar(self, trajectory_id: str, query: TrajectoryQuery, *, k: int) -> list[dict[str, Any]] | None:
        """The `k` trajectories among `query`'s rows most like this one (list rows with `similarity`,
        the cosine), most similar first; None when the id is not stored."""
        projection = self.current()
        position = projection.position_of(trajectory_id)
        if position is None:
            return None
        positions, scores = similarity.similar(projection, position, mask=projection.mask(query), k=k)
        rows = projection.rows_at(positions)
        for row, score in zip(rows, scores.tolist(), strict=True):
            row["similarity"] = round(score, 4)
        return rows

    def clusters(self, query: TrajectoryQuery, *, k: int) -> dict[str, Any]:
        """k-means clusters of `query`'s rows: per cluster its size, labels, sizes by iteration, ids."""
        projection = self.current()
        found = similarity.clusters(projection, mask=projection.mask(query), k=k)
        ids = projection.ids
        return {
            "clusters": [
                {
                    "size": len(cluster.members),
                    "terms": list(cluster.terms),
                    "tools": list(cluster.tools),
                    "by_iteration": [list(pair) for pair in cluster.by_iteration],
                    "ids": ids.values_at(cluster.members),
                }
                for cluster in found.clusters
            ],
            "considered": found.considered,
            "matching": found.matching,
            "without_embedding": found.without_embedding,
        }

    def count(self, query: TrajectoryQuery) -> int:
        projection = self.current()
        mask = projection.mask(query)
        return projection.rows if mask is None else int(np.count_nonzero(mask))

    def facets(
        self, query: TrajectoryQuery | None = None, names: tuple[str, ...] = FACET_FIELDS
    ) -> dict[str, list[tuple[str | None, int]]]:
        """Distinct values of each facet field in `names`, with counts (among rows matching `query`,
        when given), most frequent first; rows with no value are counted last, as the value None."""
        projection = self.current()
        mask = projection.mask(query) if query is not None else None
        if mask is None:
            # Per field: an annotation edit recounts only the annotation fields (see with_annotations).
            cached = projection.cache.setdefault("facets", {})
            for name in names:
                if name not in cached:
                    cached[name] = projection.column(name).counts(None)
            return {name: cached[name] for name in names}
        positions = np.flatnonzero(mask)
        return {name: projection.column(name).counts(mask, positions) for name in names}

    def stats(self, query: TrajectoryQuery, *, by: str, buckets: int | None = None) -> list[dict[str, Any]]:
        projection = self.current()
        return analytics.stats(projection, by=by, mask=projection.mask(query), buckets=buckets)

    def histograms(self, query: TrajectoryQuery, *, names: tuple[str, ...]) -> dict[str, list[analytics.Bin]]:
        projection = self.current()
        mask = projection.mask(query)
        return {name: analytics.histogram(projection, name=name, mask=mask) for name in names}

    def mix(
        self, query: TrajectoryQuery, *, by: str, of: str, buckets: int | None = None
    ) -> tuple[list, list, list[list[int]]]:
        projection = self.current()
        outer, inner, counts = analytics.mix(projection, by=by, of=of, mask=projection.mask(query), buckets=buckets)
        return outer, inner, counts.tolist()

    def pivot(self, query: TrajectoryQuery, *, rows_by: str, columns_by: str, buckets: int) -> dict[str, Any]:
        projection = self.current()
        return analytics.pivot(
            projection, rows_by=rows_by, columns_by=columns_by, mask=projection.mask(query), buckets=buckets
        )

    def curves(
        self, query: TrajectoryQuery, *, split: str, by: str, buckets: int | None = None
    ) -> list[dict[str, Any]]:
        projection = self.current()
        return analytics.curves(projection, split=split, by=by, mask=projection.mask(query), buckets=buckets)

    def question_changes(self, query: ChangeQuery) -> tuple[list[dict[str, Any]], int]:
        projection = self.current()
        base = projection.mask(query.rows)
        sides = []
        for side in (query.a, query.b):
            mask = projection.mask(side)
            sides.append(mask if base is None else base & mask)
        return analytics.question_changes(
            projection, a=sides[0], b=sides[1], ordering=query.ordering, min_count=query.min_count,
            offset=query.offset, limit=query.page_size,
        )  # fmt: skip

    def groups(self, query: GroupQuery) -> tuple[list[dict[str, Any]], int]:
        projection = self.current()
        return analytics.group_page(
            projection,
            mask=projection.mask(query.rows),
            flags=query.flags,
            ordering=query.ordering,
            k=query.k,
            offset=query.offset,
            limit=query.page_size,
        )

    def group(
        self, *, training_id: str | None, iteration_id: int | None, data_id: str, k: int = 1
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The list rows of one GRPO group, by ascending reward (no reward last), and its measures."""
        projection = self.current()
        rows = analytics.group_rows(projection, training_id=training_id, iteration_id=iteration_id, data_id=data_id)
        return projection.rows_at(rows), analytics.group_summary(projection, rows, k=k)


def _records_at(projection: Projection, positions: np.ndarray, batch: int, *, progress=None):
    """Full records at `positions`, in that order (steps as JSON bytes); each batch read in storage
    order (a take reads sorted positions fastest) and put back in the asked order."""
    total = len(positions)
    annotations = projection.annotations.columns
    for start in range(0, total, batch):
        chunk = positions[start : start + batch]
        order = np.argsort(chunk, kind="stable")
        table = projection.dataset.take(pa.array(chunk[order]), columns=list(RECORD_COLUMNS))
        columns = _python_columns(table.take(pa.array(np.argsort(order))))  # back in the asked order
        for name, column in annotations.items():
            columns[name] = column.values_at(chunk)
        names = list(columns)
        for values in zip(*columns.values(), strict=True):
            yield dict(zip(names, values, strict=True))
        if progress is not None:
            progress(min(start + batch, total), total)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _python_columns(table: pa.Table) -> dict[str, list]:
    """The table as Python lists, column by column: the steps as JSON bytes (decoding them costs more
    than the read) and timestamps built from integers (pyarrow's own conversion takes 9 µs each)."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name == "steps":
            columns[name] = _utf8_bytes(column)
        elif pa.types.is_timestamp(column.type):
            micros = pc.cast(column, pa.int64()).to_pylist()
            columns[name] = [None if us is None else _EPOCH + timedelta(microseconds=us) for us in micros]
        else:
            columns[name] = column.to_pylist()
    return columns


def _utf8_bytes(column: pa.ChunkedArray) -> list[bytes]:
    """Each value of a (large) string column as its UTF-8 bytes, without decoding."""
    array = column.combine_chunks()
    offsets_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offsets, data = array.buffers()
    bounds = np.frombuffer(offsets, dtype=offsets_type)[array.offset : array.offset + len(array) + 1].tolist()
    view = memoryview(data) if data is not None else memoryview(b"")
    return [bytes(view[start:stop]) for start, stop in itertools.pairwise(bounds)]


def _versions(projection: Projection) -> tuple[int, int]:
    return projection.version, projection.annotations.version


_served: contextvars.ContextVar[list | None] = contextvars.ContextVar("trajsite_served", default=None)


@contextlib.contextmanager
def served() -> Iterator[list[tuple[tuple[int, int], tuple[int, int]]]]:
    """Collects, for the answers computed inside, (versions answered from, newest versions): a cache
    stores an answer only when the two agree."""
    token = _served.set([])
    try:
        yield _served.get()
    finally:
        _served.reset(token)


def _note_served(answered: tuple[int, int], newest: tuple[int, int]) -> None:
    collected = _served.get()
    if collected is not None:
        collected.append((answered, newest))


def _name(dataset) -> str:
    return "(annotations)" if dataset is None else str(dataset.version)


def _warm(projection: Projection, *, stop=lambda: False) -> None:
    with _requests_first():
        projection.warm(stop=stop)
        if not stop():
            analytics.warm(projection)
    _freeze_long_lived()


def _freeze_long_lived() -> None:
    """Move what is alive now (the projection's Python lists, Django, modules: hundreds of thousands
    of objects) out of the garbage collector's sight. A full collection otherwise walks them all and
    stalls every request of the process for ~200 ms at 1M rows, at random; measured: a stats request's
    worst of 30 went from 270 ms to 46 ms. Frozen objects are still freed when no longer referenced;
    only a reference cycle among them would wait for the process to end."""
    gc.freeze()


@contextlib.contextmanager
def _requests_first() -> Iterator[None]:
    """Background work on this thread gives way to requests: lowest CPU priority for the thread.
    (Shorter GIL turns were tried: requests then waited more often behind the build's long numpy
    calls, and the worst request during an import doubled.)"""
    priority.lower_this_thread(priority.BUILD_NICE)
    yield


def _return_freed_memory() -> None:
    """Hand the build's temporary buffers back to the OS (a 1M-row build frees ~300 MB)."""
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
