"""The query engine: an in-memory columnar projection of the columns lists filter, sort and show.

Filtered offset paging in LanceDB reads offset+limit rows (150-230 ms deep in a 1M table) and its
`order_by` with a filter takes 70-210 ms. Instead each process keeps the small columns of every row as
numpy arrays, evaluates filters as vectorised masks, sorts with cached per-key orders, and builds list
rows from memory. Steps are read from LanceDB only for one trajectory at a time, by position in the
*same* table version the projection was built from, so what a page shows is always one consistent
version even while imports land. A projection is rebuilt when the table version moves on; the
annotations part alone is re-read when only annotations changed.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trajectories import fields
from trajectories.fields import ANNOTATIONS, KEY, TRAJECTORIES, Kind
from trajectories.query import TrajectoryQuery

from . import mapped, textsearch
from .annotations import blank_annotation
from .bounded import evict_oldest
from .columns import Coded, FlagColumn, IdColumn, ListColumn, NumberColumn
from .schema import ANNOTATION_COLUMNS, ANNOTATION_SCHEMA

_CACHED_MASKS = 8
# Rows of a sort order first read for a filtered page (then four times more at each step).
_SCAN_STEP = 16_384
# Once fewer than 1 row in this many is left, further filters read only the rows left.
_NARROW_BELOW = 4
# What sorting one row costs against reading one position of a sort order (both per row, measured).
_SORT_COST = 4
# Annotation rows read to follow a new version; past this a full read is as cheap.
_FOLLOW_ROWS = 100_000
# Keys up to this many are found by binary search, each (~40 us); more by a hash pass over all ids (~15 ms at 1M).
_SEARCHED_KEYS = 256
# Fragments up to this many rows (an edit's, a bulk change's) have their rows' positions kept.
_PLACED_ROWS = 10_000
# Annotation tables over this many times the rows of the projection reading them (and over a piece)
# are read a piece of keys at a time, keeping only the projection's rows. Each piece hashes the
# projection's ids anew (~0.4 s for 1.25M): pieces of 4M keys (~200 MB) are the compromise.
_PIECEWISE_TIMES = 4
_PIECEWISE_ROWS = 4_000_000
# New trajectory rows appended to a projection; past this a full build is as cheap.
APPEND_ROWS = 200_000
_COLUMN_TYPES = {
    Kind.ID: IdColumn,
    Kind.TEXT: Coded,
    Kind.LIST: ListColumn,
    Kind.INT: NumberColumn,
    Kind.FLOAT: NumberColumn,
    Kind.TIME: NumberColumn,
    Kind.BOOL: FlagColumn,
    Kind.TRISTATE: FlagColumn,
}
PROJECTED = {table: tuple(f for f in fields.PROJECTED if f.table == table) for table in (TRAJECTORIES, ANNOTATIONS)}
PROJECTED_COLUMNS = (KEY, *(f.name for f in PROJECTED[TRAJECTORIES] if f.name != KEY))
ANNOTATION_FIELDS = frozenset(f.name for f in PROJECTED[ANNOTATIONS])


def load_column(field: fields.Field, array: pa.ChunkedArray, *, rows: int, index: np.ndarray | None = None):
    column_type = _COLUMN_TYPES[field.kind]
    if column_type in (NumberColumn, FlagColumn):
        return column_type.load(array, rows=rows, index=index, kind=field.kind)
    return column_type.load(array, rows=rows, index=index)


@dataclass
class AnnotationColumns:
    """The mutable side of every row (one column per annotation field), aligned with the projection's
    positions; a trajectory never annotated reads as blank (not bookmarked, not judged, no tags).
    `fragments` are the annotation table's fragment ids this was read from: an edit or an import adds
    fragments (and deletes the rows they replace), so `followed` reads only the new ones. `placed`
    says where the rows of the small ones sit: an edit's fragment vanishes once its row is edited
    again, and its rows are then in an added fragment, in one read before, or gone. `deletions`
    (per fragment read) and `gone` (fragments seen vanish) tell a restore, which un-deletes rows and
    brings fragments back: that is read in full. `waiting` are fragments read while some of their rows'
    trajectories were not held yet (an import landing before its rows are projected), with the
    projection version that lacked them: not read again until the projection moves on.

    `changed` says, per field, the version at which its values last changed as far as this process
    saw (a full read counts as a change of every field): what a cached answer that reads only some
    fields is keyed by, so that tagging does not make every cached statistic start over."""

    version: int
    columns: dict[str, Any]
    fragments: frozenset[int] = frozenset()
    placed: dict[int, np.ndarray] = field(default_factory=dict)
    deletions: dict[int, int] = field(default_factory=dict)
    gone: frozenset[int] = frozenset()
    waiting: tuple[int, frozenset[int]] = (-1, frozenset())
    changed: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, dataset, *, trajectory_ids: pa.Array, held: int = -1) -> AnnotationColumns:
        """Every annotation row of `dataset` (a LanceDataset pinned at one version). A fragment counts
        as read when all its rows found their trajectory: the rest are read again once they may (the
        projection `trajectory_ids` are of, version `held`, moved on)."""
        fragments = dataset.get_fragments()
        sizes = [fragment.count_rows() for fragment in fragments]
        if not len(trajectory_ids):  # a training run of no rows (runs.py): nothing to find
            blank = cls.load(ANNOTATION_SCHEMA.empty_table(), version=dataset.version, trajectory_ids=trajectory_ids)
            return replace(blank, waiting=(held, frozenset(fragment.fragment_id for fragment in fragments)))
        if sum(sizes) > max(_PIECEWISE_TIMES * len(trajectory_ids), _PIECEWISE_ROWS):
            # One training run's projection (runs.py) among many annotated rows: only its rows are kept.
            return cls._read_piecewise(dataset, fragments, sizes, trajectory_ids=trajectory_ids, held=held)
        table = dataset.to_table(columns=list(ANNOTATION_COLUMNS))
        loaded, located = cls._loaded(table, version=dataset.version, trajectory_ids=trajectory_ids)
        if sum(sizes) != table.num_rows:
            return loaded  # a layout not understood: no fragment counts as read, the next change reads all
        seen, placed = _read_fragments(fragments, sizes, located)
        waiting = (held, frozenset(fragment.fragment_id for fragment in fragments) - seen)
        return replace(loaded, fragments=seen, placed=placed, deletions=_deletions(fragments, seen), waiting=waiting)

    @classmethod
    def _read_piecewise(cls, dataset, fragments, sizes, *, trajectory_ids: pa.Array, held: int) -> AnnotationColumns:
        """`read` for a few of many annotated trajectories: the keys are read a piece at a time and only
        the rows of `trajectory_ids` are taken whole."""
        located_pieces, addresses = [], []
        scanner = dataset.scanner(
            columns=[KEY], with_row_address=True, batch_size=_PIECEWISE_ROWS, scan_in_order=True, batch_readahead=1
        )
        for batch in scanner.to_batches():
            located = _located(pa.chunked_array([batch.column(KEY)]), trajectory_ids)
            located_pieces.append(located)
            addresses.append(batch.column("_rowaddr").to_numpy()[located >= 0])
        located = np.concatenate(located_pieces) if located_pieces else np.empty(0, dtype=np.int64)
        taken = np.concatenate(addresses) if addresses else np.empty(0, dtype=np.uint64)
        table = dataset._take_rows(pa.array(taken, pa.uint64()), columns=list(ANNOTATION_COLUMNS)) if len(taken) else (
            ANNOTATION_SCHEMA.empty_table())  # fmt: skip
        loaded = cls.load(table, version=dataset.version, trajectory_ids=trajectory_ids)
        if sum(sizes) != len(located):
            return loaded
        seen, placed = _read_fragments(fragments, sizes, located)
        waiting = (held, frozenset(fragment.fragment_id for fragment in fragments) - seen)
        return replace(loaded, fragments=seen, placed=placed, deletions=_deletions(fragments, seen), waiting=waiting)

    @classmethod
    def load(cls, table: pa.Table, *, version: int, trajectory_ids: pa.Array) -> AnnotationColumns:
        return cls._loaded(table, version=version, trajectory_ids=trajectory_ids)[0]

    @classmethod
    def blank(cls, trajectory_ids: pa.Array) -> AnnotationColumns:
        """No row annotated (what a process that shares trajectory columns only starts from)."""
        return cls.load(ANNOTATION_SCHEMA.empty_table(), version=-1, trajectory_ids=trajectory_ids)

    @classmethod
    def _loaded(
        cls, table: pa.Table, *, version: int, trajectory_ids: pa.Array
    ) -> tuple[AnnotationColumns, np.ndarray]:
        """The columns, and per row of `table` its position (-1: a trajectory not held)."""
        rows = len(trajectory_ids)
        located = _located(table.column(KEY), trajectory_ids)
        matched = located >= 0
        table = table.filter(pa.array(matched))
        columns = {f.name: load_column(f, table.column(f.name), rows=rows, index=located[matched]) for f in _ANNOTATED}
        return cls(version=version, columns=columns, changed=dict.fromkeys(columns, version)), located

    def followed(self, dataset, *, projection: Projection) -> AnnotationColumns | None:
        """These columns moved on to `dataset`'s version by reading only the fragments added since (and
        the rows of vanished ones by key); None when that is not possible (a compaction rewrote large
        fragments, a restore went back) or not cheaper."""
        fragments = {fragment.fragment_id: fragment for fragment in dataset.get_fragments()}
        vanished = self.fragments - fragments.keys()
        if any(key not in self.placed for key in vanished):
            return None  # compacted: large fragments were rewritten
        if self.gone & fragments.keys() or any(
            fragments[key].metadata.num_deletions < count for key, count in self.deletions.items() if key in fragments
        ):
            return None  # restored: fragments came back, or deleted rows did
        # Fragments waiting for rows this projection lacks: re-read once it holds other rows. Read on
        # every edit instead, an import's 5,000-row fragments were located again at each of them.
        waited_at, waiting = self.waiting
        skipped = waiting if waited_at == projection.version else frozenset()
        added = [fragment for key, fragment in fragments.items() if key not in self.fragments | skipped]
        if sum(fragment.count_rows() for fragment in added) > _FOLLOW_ROWS:
            return None
        # Rows replaced by a later fragment are deleted where they were: each id is read once, as it is now.
        pieces = [fragment.to_table(columns=list(ANNOTATION_COLUMNS)) for fragment in added]
        table = pa.concat_tables(pieces) if pieces else ANNOTATION_SCHEMA.empty_table()
        located = projection.positions_of(table.column(KEY).combine_chunks()) if table.num_rows else _NO_POSITIONS
        # A fragment counts as read once all its rows found their trajectory here; rows of trajectories
        # this projection does not hold yet (an import landing) are read again once they are held.
        seen, placed = _read_fragments(added, [piece.num_rows for piece in pieces], located)
        kept = {key: positions for key, positions in self.placed.items() if key not in vanished}
        still = (self.fragments - vanished) | seen
        unplaced = frozenset(fragment.fragment_id for fragment in added) - seen
        moved = replace(self, version=dataset.version, fragments=still, placed={**kept, **placed},
                        deletions=_deletions(fragments.values(), still), gone=self.gone | vanished,
                        waiting=(projection.version, (skipped & fragments.keys()) | unplaced))  # fmt: skip
        taken = np.flatnonzero(located >= 0)
        positions, rows = located[taken], table.take(pa.array(taken, pa.int64())).to_pylist()
        if vanished:
            # Rows of a vanished fragment that no added fragment holds: as the table has them now (in a
            # fragment read before, after several edits), else gone (blank).
            emptied = np.setdiff1d(np.concatenate([self.placed[key] for key in vanished]), positions)
            values = _rows_by_key(dataset, projection, emptied)
            positions = np.concatenate([positions, emptied]).astype(np.int64)
            rows += [values.get(position) or blank_annotation(None) for position in emptied.tolist()]
        if not len(positions):
            return moved
        return moved.patched(positions, rows, version=dataset.version)

    def appended(self, rows: int) -> AnnotationColumns:
        """These columns followed by `rows` rows never annotated (blank)."""
        empty = pa.table({name: pa.array([], type=ANNOTATION_SCHEMA.field(name).type) for name in ANNOTATION_COLUMNS})
        blank = {f.name: load_column(f, empty.column(f.name), rows=rows, index=np.empty(0, dtype=np.int64))
                 for f in _ANNOTATED}  # fmt: skip
        return replace(self, columns={name: column.appended(blank[name]) for name, column in self.columns.items()})

    def patched(self, positions: np.ndarray, rows: list[dict[str, Any]], *, version: int) -> AnnotationColumns | None:
        """A copy with `rows` (whole annotation rows) written at `positions`; None if it cannot be patched.
        A field whose values at `positions` differ afterwards is marked changed at `version`."""
        columns, changed = {}, dict(self.changed)
        for name, column in self.columns.items():
            values = [row[name] for row in rows]
            if _holds(column, positions, values):
                columns[name] = column  # not copied: a million-row column per field per edit adds up
                continue
            patched = column.patched(positions, values)
            if patched is None:
                return None
            changed[name] = version
            columns[name] = patched
        return replace(self, version=version, columns=columns, changed=changed)

    def moved_since(self, earlier: AnnotationColumns) -> frozenset[str]:
        """The fields whose values may differ from `earlier`'s (these columns made from it, or read)."""
        if self.version == earlier.version:
            return frozenset()
        return frozenset(name for name in self.columns if self._changed(name) > earlier.version)

    def changed_at(self, names: Iterable[str]) -> int:
        """The newest version at which any of `names` changed (-1 for no names)."""
        return max((self._changed(name) for name in names), default=-1)

    def _changed(self, name: str) -> int:
        return self.changed.get(name, self.version)  # a field not tracked counts as changed now

    def fields_at(self, positions: np.ndarray) -> list[dict[str, Any]]:
        names = list(self.columns)
        values = [self.columns[name].values_at(positions) for name in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)] if names else []


_ANNOTATED = tuple(f for f in PROJECTED[ANNOTATIONS] if f.name != KEY)


def _holds(column, positions: np.ndarray, values: list) -> bool:
    """Whether `column` holds `values` at `positions` already (as its own values read back; a value
    written differently, a timestamp say, counts as a change)."""
    if isinstance(column, ListColumn):
        values = [list(value or []) for value in values]
    return column.values_at(positions) == values


@dataclass
class Projection:
    version: int
    dataset: Any  # the LanceDataset pinned at `version`: steps are taken from it by position
    rows: int
    ids: IdColumn
    columns: dict[str, Any]  # the projected trajectory fields but the key
    annotations: AnnotationColumns
    # Sort orders by (name, descending); dense ranks and their group count by ("dense", name, descending);
    # what `derived` made by ("derived", ...).
    _orders: dict[tuple, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    # Answers that depend only on this projection (e.g. unfiltered facets).
    cache: dict[str, Any] = field(default_factory=dict)
    # Which rows `dataset` holds, by fragment: a later version with the same layout has the same rows.
    layout: tuple = ()
    # Where these rows' columns and sort orders are shared with other processes (mapped.py), if they are.
    files: Path | None = None

    def appended(self, dataset) -> Projection | None:
        """This projection followed by the rows `dataset` (a later version) added in new fragments,
        read alone; None unless that version only appended (no row of this one deleted or moved)."""
        if hasattr(dataset, "run_layout"):
            return None  # one run's rows (runs.py): new fragments hold other runs' rows too
        layout = rows_layout(dataset)
        if not self.layout or layout[: len(self.layout)] != self.layout or len(layout) == len(self.layout):
            return None
        added = {entry[0] for entry in layout[len(self.layout) :]}
        pieces = [
            fragment.to_table(columns=list(PROJECTED_COLUMNS))
            for fragment in dataset.get_fragments()
            if fragment.fragment_id in added
        ]
        table = pa.concat_tables(pieces)
        if table.num_rows > APPEND_ROWS:
            return None
        count = table.num_rows
        new_ids = IdColumn.load(table.column(KEY), rows=count)
        columns = {
            name: column.appended(load_column(fields.BY_NAME[name], table.column(name), rows=count))
            for name, column in self.columns.items()
        }
        return Projection(
            version=dataset.version,
            dataset=dataset,
            rows=self.rows + count,
            ids=self.ids.appended(new_ids),
            columns=columns,
            annotations=self.annotations.appended(count),
            layout=layout,
            cache=self._carried(),
        )

    @classmethod
    def mapped(
        cls, dataset, *, files: mapped.ProjectionFiles, serving: Projection | None, annotation_dataset
    ) -> Projection | None:
        """The projection of `dataset` from the files another process shared; None when none were. Its
        annotations are `serving`'s followed by blank rows when `dataset` only appended rows to it (to
        be followed), else read whole from `annotation_dataset`."""
        layout = rows_layout(dataset)
        found = files.mapped(uri=dataset.uri, layout=layout)
        if found is None:
            return None
        ids, columns, directory = found
        rows = len(ids.array)
        appended = serving is not None and serving.layout and layout[: len(serving.layout)] == serving.layout
        annotations = (
            serving.annotations.appended(rows - serving.rows)
            if appended
            else AnnotationColumns.read(annotation_dataset, trajectory_ids=ids.array, held=dataset.version)
        )
        return cls(version=dataset.version, dataset=dataset, rows=rows, ids=ids, columns=columns,
                   annotations=annotations, layout=layout, files=directory,
                   cache=serving._carried() if appended else {})  # fmt: skip

    def shared(self, files: mapped.ProjectionFiles) -> Projection:
        """This projection with its trajectory columns written for other processes and mapped back, so
        this process's pages are the shared ones; itself when they cannot be written."""
        if self.files is not None or self.dataset is None or not self.layout:
            return self
        uri = self.dataset.uri
        if files.write(uri=uri, layout=self.layout, ids=self.ids, columns=self.columns) is None:
            return self
        found = files.mapped(uri=uri, layout=self.layout)
        if found is None:
            return self
        ids, columns, directory = found
        cache = {name: self.cache[name] for name in _ROWS_ONLY_CACHES if name in self.cache}
        return Projection(**{**self.__dict__, "ids": ids, "columns": columns, "files": directory,
                             "_orders": {}, "_lock": threading.RLock(), "cache": cache})  # fmt: skip

    def repinned(self, dataset) -> Projection | None:
        """This projection for `dataset`, a later version holding exactly the same rows (an index was
        updated, nothing written): nothing to read. None when the rows differ."""
        if not self.layout or rows_layout(dataset) != self.layout:
            return None
        annotations = self.annotations
        waited_at, waiting = annotations.waiting
        if waited_at == self.version:  # the same rows: what waited for other rows still waits
            annotations = replace(annotations, waiting=(dataset.version, waiting))
        return Projection(**{**self.__dict__, "version": dataset.version, "dataset": dataset,
                             "annotations": annotations})  # fmt: skip

    @classmethod
    def load(cls, dataset, *, annotation_dataset) -> Projection:
        """The projection of `dataset` with the annotations of `annotation_dataset` (both pinned; None:
        blank annotations)."""
        layout = rows_layout(dataset)
        table = dataset.to_table(columns=list(PROJECTED_COLUMNS))
        ids = IdColumn.load(table.column(KEY), rows=table.num_rows)
        rows = len(ids.array)
        return cls(
            version=dataset.version,
            dataset=dataset,
            rows=rows,
            ids=ids,
            columns={f.name: load_column(f, table.column(f.name), rows=rows) for f in PROJECTED[TRAJECTORIES]
                     if f.name != KEY},
            annotations=AnnotationColumns.blank(ids.array) if annotation_dataset is None else
                        AnnotationColumns.read(annotation_dataset, trajectory_ids=ids.array, held=dataset.version),
            layout=layout,
        )  # fmt: skip

    @classmethod
    def of_rows(cls, table: pa.Table, *, annotations: pa.Table) -> Projection:
        """A projection of rows held in memory (no dataset): `table` has the projected columns and
        the search text, which searches scan (no index); `annotations` the annotation rows there are."""
        ids = IdColumn.load(table.column(KEY), rows=table.num_rows)
        rows = len(ids.array)
        projection = cls(
            version=0,
            dataset=None,
            rows=rows,
            ids=ids,
            columns={f.name: load_column(f, table.column(f.name), rows=rows) for f in PROJECTED[TRAJECTORIES]
                     if f.name != KEY},
            annotations=AnnotationColumns.load(annotations, version=0, trajectory_ids=ids.array),
        )  # fmt: skip
        projection.cache["texts"] = table.column(fields.SEARCH_TEXT).combine_chunks()
        return projection

    def with_annotations(self, annotations: AnnotationColumns) -> Projection:
        """The same rows with other annotations; sort orders, masks, facet counts, search hits and
        analytics that read no field which changed are kept (an edit every few seconds must not make
        every answer start over: a tag added keeps the order by success and the statistics)."""
        moved = annotations.moved_since(self.annotations)
        # A copy first: request threads add orders while an edit makes this projection.
        orders = {key: order for key, order in list(self._orders.items()) if not set(key) & moved}
        return Projection(
            **{
                **self.__dict__,
                "annotations": annotations,
                "_orders": orders,
                "_lock": threading.RLock(),
                "cache": self._cache_kept(moved),
            }
        )

    def _cache_kept(self, moved: frozenset[str]) -> dict[str, Any]:
        kept: dict[str, Any] = {name: self.cache[name] for name in _ROWS_ONLY_CACHES if name in self.cache}
        if _ORDERS_BEFORE in kept:  # orders by a field that changed no longer merge
            before = list(kept[_ORDERS_BEFORE].items())
            kept[_ORDERS_BEFORE] = {key: order for key, order in before if key[0] not in moved}
        # list(): request threads add to (and evict from) these dicts meanwhile.
        masks = {key: mask for key, mask in list(self.cache.get("masks", {}).items()) if not _reads(key, moved)}
        facets = {name: counts for name, counts in list(self.cache.get("facets", {}).items()) if name not in moved}
        by_fields = {key: entry for key, entry in list(self.cache.get(_BY_FIELDS, {}).items()) if not entry[1] & moved}
        return {**kept, "masks": masks, "facets": facets, _BY_FIELDS: by_fields}

    def per_annotations(self, key: tuple, reads: frozenset[str], build: Callable[[], Any]) -> Any:
        """What `build()` makes from these rows and the annotation fields `reads`: kept until one of
        those fields changes (a bounded number of them: parameters could otherwise fill memory)."""
        cache = self.cache.setdefault(_BY_FIELDS, {})
        found = cache.get(key)
        if found is None:
            if len(cache) >= _KEPT_PER_ANNOTATIONS:
                evict_oldest(cache)
            found = cache[key] = (build(), reads)
        return found[0]

    def column(self, name: str):
        if name == KEY:
            return self.ids
        found = self.columns.get(name)
        return found if found is not None else self.annotations.columns[name]

    # --- rows -------------------------------------------------------------------------------

    def rows_at(self, positions: np.ndarray) -> list[dict[str, Any]]:
        """List rows (no steps) built from memory, in the order of `positions`."""
        if len(positions) == 0:
            return []
        columns: dict[str, list] = {KEY: self.ids.values_at(positions)}
        for name, column in self.columns.items():
            columns[name] = column.values_at(positions)
        for name, column in self.annotations.columns.items():
            columns[name] = column.values_at(positions)
        return [{name: values[index] for name, values in columns.items()} for index in range(len(positions))]

    def positions_of(self, keys: pa.Array) -> np.ndarray:
        """Per key its position here, -1 where this projection does not hold it. A few keys (an
        edit's) are found by binary search; many by one hash pass over every id."""
        if len(keys) <= _SEARCHED_KEYS:
            found = [self.position_of(key) for key in keys.to_pylist()]
            return np.array([-1 if position is None else position for position in found], dtype=np.int64)
        hits = pc.index_in(self.ids.array, value_set=keys)
        positions = np.full(len(keys), -1, dtype=np.int64)
        positions[hits.drop_null().to_numpy()] = np.flatnonzero(hits.is_valid().to_numpy(zero_copy_only=False))
        return positions

    def position_of(self, trajectory_id: str) -> int | None:
        """Binary search over the id order: no scan, no index probe."""
        order = self.order("trajectory_id", False)
        ids = self.ids.array
        low, high = 0, len(order)
        while low < high:
            middle = (low + high) // 2
            if ids[int(order[middle])].as_py() < trajectory_id:
                low = middle + 1
            else:
                high = middle
        if low < len(order) and ids[int(order[low])].as_py() == trajectory_id:
            return int(order[low])
        return None

    # --- evaluation -------------------------------------------------------------------------

    def select(self, query: TrajectoryQuery) -> tuple[np.ndarray, int]:
        """Positions of the requested page, in order, and the exact total count."""
        mask = self.mask(query)
        count = self.rows if mask is None else int(np.count_nonzero(mask))
        start, stop = query.offset, query.offset + query.page_size
        if query.by_relevance:
            return self._by_relevance(query, mask, start, stop), count
        if len(query.ordering) == 1:
            if mask is not None and _sorting_is_shorter(count=count, rows=self.rows, stop=stop):
                return self._sorted(query.ordering[0], np.flatnonzero(mask))[start:stop], count
            order = self.order(*query.ordering[0])
            if mask is None:
                return order[start:stop], count
            return _first_matching(order, mask, start, stop), count
        candidates = self._leading(query.ordering[0], mask, count, stop)
        if candidates is None:
            candidates = np.arange(self.rows) if mask is None else np.flatnonzero(mask)
        page = self._composite_page(query.ordering, candidates, start, stop)
        if page is not None:
            return page, count
        keys = [self._sort_key(name, descending, candidates) for name, descending in reversed(query.ordering)]
        ranked = candidates[np.lexsort([self.ids.rank[candidates], *[key for pair in keys for key in pair]])]
        return ranked[start:stop], count

    def _leading(self, first: tuple[str, bool], mask: np.ndarray | None, count: int, stop: int) -> np.ndarray | None:
        """The matching rows a page of several sort keys can come from: those up to the first key's
        value of the page's last row (every row after it sorts later, whatever the other keys). Read
        along the first key's order: a few thousand rows instead of every matching one (an unfiltered
        sort by iteration then reward at 10M rows: 12 ms instead of 140). None when that is not well under
        the matching rows."""
        if stop >= count:
            return None
        order = self.order(*first)
        # Walking further than half the matching rows and sorting what matches there saves little: so
        # the page's last row is looked for only that far (few matches, or matches late in the order).
        within = order[: count // 2]
        found = within[stop - 1 : stop] if mask is None else _first_matching(within, mask, stop - 1, stop)
        if not len(found):
            return None
        dense, _ = self._dense(*first)
        end = bisect.bisect_right(order, dense[found[0]], key=lambda position: dense[position])
        if end * 2 > count:
            return None
        leading = order[:end]
        return leading if mask is None else leading[mask[leading]]

    def _sorted(self, ordering: tuple[str, bool], candidates: np.ndarray) -> np.ndarray:
        """`candidates` in the order `self.order(*ordering)` holds them (the same keys, ties by id)."""
        name, descending = ordering
        return candidates[np.lexsort([self.ids.rank[candidates], *self._sort_key(name, descending, candidates)])]

    def _by_relevance(self, query: TrajectoryQuery, mask: np.ndarray | None, start: int, stop: int) -> np.ndarray:
        """Highest score first, equal scores by trajectory id: one order, so pages never skip or repeat."""
        candidates = np.arange(self.rows) if mask is None else np.flatnonzero(mask)
        scores = textsearch.scores(self, query.text)[candidates]
        if stop < len(candidates):
            # Only rows scoring at least the page's last score can be on it (ties included): sort those.
            threshold = np.partition(scores, len(scores) - stop)[len(scores) - stop]
            keep = scores >= threshold
            candidates, scores = candidates[keep], scores[keep]
        ranked = candidates[np.lexsort((self.ids.rank[candidates], -scores))]
        return ranked[start:stop]

    def _composite_page(self, ordering, candidates: np.ndarray, start: int, stop: int) -> np.ndarray | None:
        """Several sort keys packed into one int64 per row (dense ranks, then the id rank), so a page
        is a partition plus a sort of the page alone. None when the ranks do not fit in 63 bits."""
        parts = [self._dense(name, descending) for name, descending in ordering]
        bases = [groups for _, groups in parts] + [self.rows]
        if math.prod(bases) >= 2**63:
            return None
        combined = np.zeros(len(candidates), dtype=np.int64)
        for dense, groups in parts:
            combined = combined * groups + dense[candidates]
        combined = combined * self.rows + self.ids.rank[candidates]
        stop = min(stop, len(combined))
        if start >= stop:
            return np.empty(0, dtype=np.int64)
        if stop - start < len(combined):
            combined = np.partition(combined, (start, stop - 1))
        page = np.sort(combined[start:stop])
        return self.order("trajectory_id", False)[page % self.rows]

    def _dense(self, name: str, descending: bool) -> tuple[np.ndarray, int]:
        """Per row, the rank of its value's group in this direction (nulls last), and the group count."""
        key = ("dense", name, descending)
        cached = self._orders.get(key)
        if cached is None:
            order = self.order(name, descending)
            keys = self._sort_key(name, descending, order)
            changes = np.zeros(self.rows, dtype=bool)
            for values in keys:
                changes[1:] |= _differs(values[1:], values[:-1])
            # int32 (positions are): 40 MB a key at 10M rows, where int64 took 80 per process.
            dense = np.empty(self.rows, dtype=np.int32)
            dense[order] = np.cumsum(changes, dtype=np.int32)
            # The group count kept with it: a max over every row was taken per page.
            self._orders[key] = cached = (dense, int(dense.max()) + 1 if self.rows else 1)
        return cached

    def ordered(self, query: TrajectoryQuery) -> np.ndarray:
        """Every matching position in the query's order (for previous/next navigation)."""
        everything = TrajectoryQuery(**{**query.__dict__, "page": 1, "page_size": self.rows or 1})
        return self.select(everything)[0]

    def mask(self, query: TrajectoryQuery) -> np.ndarray | None:
        """Rows matching the query's filters (None: all). The last few are kept: a page, its facets
        and its count ask for the same mask."""
        key = query.filter_key()
        masks = self.cache.setdefault("masks", {})
        if key in masks:
            return masks[key]
        mask = self._mask(query)
        if mask is not None:
            mask.setflags(write=False)
        if len(masks) >= _CACHED_MASKS:
            evict_oldest(masks)
        masks[key] = mask
        return mask

    def _mask(self, query: TrajectoryQuery) -> np.ndarray | None:
        combined = self._filtered(query.filters) if query.filters else None
        if query.search:
            found = self._search_mask(query.search)
            combined = found if combined is None else combined & found
        if query.text is not None:
            # Last: a prefix or pattern reads the text of only the rows everything else leaves.
            combined = textsearch.mask(self, query.text, combined)
        return combined

    def _filtered(self, filters: tuple) -> np.ndarray:
        """Rows meeting every filter. The likely narrowest goes first, over every row; once few rows
        are left, the others read only those (at 10M rows a run then a tool: 4 ms plus a pass over
        its 1.25M rows, where a pass of each over every row took 75 ms)."""
        pending = sorted(
            ((self.column(name), match) for name, match in filters), key=lambda pair: pair[0].share(pair[1])
        )
        column, match = pending.pop(0)
        combined = column.mask(match, self.rows)
        while pending and np.count_nonzero(combined) * _NARROW_BELOW >= self.rows:
            column, match = pending.pop(0)
            combined = combined & column.mask(match, self.rows)
        if not pending:
            return combined
        positions = np.flatnonzero(combined)
        for column, match in pending:
            positions = positions[column.mask_at(match, positions)]
        narrowed = np.zeros(self.rows, dtype=bool)
        narrowed[positions] = True
        return narrowed

    def _search_mask(self, text: str) -> np.ndarray:
        mask = self.ids.contains(text, ignore_case=True)
        for name in fields.SEARCHED:
            if name != KEY:
                coded = self.column(name)
                mask |= coded.rows_with(
                    coded.matching(lambda values: pc.match_substring(values, text, ignore_case=True))
                )
        return mask

    # --- ordering ---------------------------------------------------------------------------

    def warm(self, *, orders: list[tuple[str, bool]] | None = None, stop=lambda: False) -> None:
        """Build what the first requests would otherwise wait for (off the request path): the given sort
        orders (default: every one), facet counting, the ids' bytes for search, decoded values. Gives
        up between orders when `stop()` says this projection is being replaced."""
        for name, descending in orders if orders is not None else self.every_order():
            if stop():
                return
            self.order(name, descending)
        for facet in fields.FACETS:
            self.column(facet.name).counts(None)  # what every facet count reuses (value combinations)
        # What the first search and the first page would otherwise build: the ids' bytes, decoded values.
        self.ids._haystack(lowered=True)
        for column in self.columns.values():
            if isinstance(column, Coded):
                column._python_uniques()
        self.rows_at(np.arange(min(self.rows, 1)))

    @staticmethod
    def every_order() -> list[tuple[str, bool]]:
        return [(name, descending) for name in fields.SORTABLE for descending in (True, False)]

    def orders_in_use(self) -> list[tuple[str, bool]]:
        """The sort orders this projection has been asked for (plain keys, not composite helpers)."""
        return [key for key in list(self._orders) if len(key) == 2]

    def order(self, name: str, descending: bool) -> np.ndarray:
        """All positions sorted by `name` (nulls last either way), ties by trajectory_id ascending."""
        key = (name, descending)
        order = self._orders.get(key)
        if order is None:
            with self._lock:
                order = self._orders.get(key)
                if order is None:
                    # Taken out of the carried orders whether it is merged here or mapped from another
                    # process's file: what stays there is kept alive with this projection.
                    before = self.cache.get(_ORDERS_BEFORE, {}).pop(key, None)
                    build = functools.partial(self._built_order, name, descending, before)
                    if self.files is not None and name not in ANNOTATION_FIELDS:  # annotation orders stay here
                        order = mapped.derived(self.files, ("order", *key), build)
                    else:
                        order = build()
                    self._orders[key] = order
        return order

    def _built_order(self, name: str, descending: bool, before: np.ndarray | None = None) -> np.ndarray:
        if before is not None:
            merged = self._merged_order(name, descending, before)
            if merged is not None:
                return merged
        keys = self._sort_key(name, descending, np.arange(self.rows))
        return np.lexsort([self.ids.rank, *keys]).astype(np.int32)

    def _carried(self) -> dict[str, Any]:
        """What a version that appends rows to this one starts its cache with: the search hits and the
        sort orders, those built here and those of earlier versions not merged here yet (an order
        of any earlier rows merges: an import landing every few seconds interrupts the warming, and
        each version sorted a million rows again for every order it had not reached). Orders by
        annotation fields too: the appended version starts from these annotations, and an edit
        drops the orders of the fields it changes (`_cache_kept`)."""
        earlier = dict(self.cache.get(_ORDERS_BEFORE, {}))
        built = {key: order for key, order in list(self._orders.items()) if len(key) == 2}
        return {
            textsearch.CARRIED: textsearch.carried(self),
            textsearch.SNIPPETS: textsearch.carried_snippets(self),
            _ORDERS_BEFORE: {**earlier, **built},
        }

    def _merged_order(self, name: str, descending: bool, before: np.ndarray) -> np.ndarray | None:
        """The order of every row from `before`, the order of the first rows (those of the version
        these rows were appended to), with the appended rows sorted alone and merged in: a search of
        each in the order instead of a sort of a million rows per import batch. Appending keeps the
        relative order of the earlier rows (their codes and id ranks stay in the same order). None
        when the key is not one number per row (the caller sorts everything)."""
        held = len(before)
        added = np.arange(held, self.rows)
        if not held or not len(added):
            return before.astype(np.int32) if held == self.rows else None
        rank = self.ids.rank
        new_keys = self._sort_key(name, descending, added)
        by_key = np.lexsort([rank[added], *new_keys])
        added = added[by_key]
        old = _one_number(self._sort_key(name, descending, before))
        new = _one_number([key[by_key] for key in new_keys])
        if old is None or new is None:
            return None
        # Where each new row goes: past the earlier rows of smaller value, and among those of equal
        # value (a run, ordered by id rank) past those of smaller id rank.
        runs = np.zeros(held, dtype=np.int64)
        runs[1:] = np.cumsum(_differs(old[1:], old[:-1]))
        at = np.searchsorted(old, new, side="left")
        inside = np.minimum(at, held - 1)
        equal = (at < held) & ((old[inside] == new) | (np.isnan(old[inside]) & np.isnan(new)))
        ranked = runs * self.rows + rank[before]
        at[equal] = np.searchsorted(ranked, runs[inside[equal]] * self.rows + rank[added[equal]])
        return np.insert(before.astype(np.int32), at, added.astype(np.int32))

    def derived(self, key: tuple[str, str], build):
        """What `build()` makes from this projection's rows, made once (it is kept across annotation
        edits: nothing derived here may depend on annotations), and shared with other processes when
        the projection is."""
        key = ("derived", *key)
        found = self._orders.get(key)
        if found is None:
            with self._lock:
                found = self._orders.get(key)
                if found is None:
                    found = mapped.derived(self.files, key, build) if self.files is not None else build()
                    self._orders[key] = found
        return found

    def has_derived(self, key: tuple[str, str]) -> bool:
        return ("derived", *key) in self._orders

    def _sort_key(self, name: str, descending: bool, positions: np.ndarray) -> list[np.ndarray]:
        """Keys for np.lexsort, least significant first: the value, then its null flag."""
        return self.column(name).sort_key(positions, descending)


# The sort orders of the version a projection's rows were appended to, merged into its own when built.
_ORDERS_BEFORE = "orders_before"
# Caches of what the trajectory rows alone decide: the texts of an in-memory projection, search hits
# per term (and those of the version this one appended rows to), snippets, the sort orders to merge into.
_ROWS_ONLY_CACHES = ("texts", textsearch.TERMS, textsearch.CARRIED, textsearch.SNIPPETS, _ORDERS_BEFORE)
# Answers made from annotation fields (analytics of every row), each with the fields it read.
_BY_FIELDS = "by annotation fields"
_KEPT_PER_ANNOTATIONS = 64
_ANNOTATION_SEARCHED = ANNOTATION_FIELDS & set(fields.SEARCHED)


# Integers beyond this are not all exact as float64: such keys are sorted, not merged.
_EXACT_INTEGER = 2**53


def _one_number(keys: list[np.ndarray]) -> np.ndarray | None:
    """A sort key ([value] or [value, is null], least significant first) as one float per row that
    sorts the same way (null: NaN, which numpy sorts and searches last); None when it cannot be."""
    values = keys[0]
    nulls = keys[1] if len(keys) > 1 else None
    if values.dtype.kind in "iu":
        present = values if nulls is None else values[~nulls]
        if len(present) and (int(present.max()) >= _EXACT_INTEGER or int(present.min()) <= -_EXACT_INTEGER):
            return None
    elif values.dtype.kind != "f":
        return None
    number = values.astype(np.float64)
    if nulls is not None:
        number[nulls] = np.nan
    return number


def _reads(filter_key: tuple, names: frozenset[str]) -> bool:
    """Whether the rows a filter (`TrajectoryQuery.filter_key()`) selects depend on any of `names`."""
    filters, search, _text = filter_key
    return any(name in names for name, _ in filters) or bool(search and _ANNOTATION_SEARCHED & names)


_NO_POSITIONS = np.empty(0, dtype=np.int64)


def _located(keys: pa.ChunkedArray, trajectory_ids: pa.Array) -> np.ndarray:
    """Per key its position among `trajectory_ids` (-1: not there). Hashes the smaller side: an
    annotations table is mostly far smaller than the trajectories (hashing 10M ids takes seconds)."""
    keys = keys.combine_chunks()
    if not len(keys):
        return np.empty(0, dtype=np.int64)
    if len(keys) * 4 < len(trajectory_ids) and pc.count_distinct(keys).as_py() == len(keys):
        hits = pc.index_in(trajectory_ids, value_set=keys)
        located = np.full(len(keys), -1, dtype=np.int64)
        located[hits.drop_null().to_numpy()] = np.flatnonzero(hits.is_valid().to_numpy(zero_copy_only=False))
        return located
    return pc.index_in(keys, value_set=trajectory_ids).fill_null(-1).to_numpy().astype(np.int64)


def _deletions(fragments, ids: frozenset[int]) -> dict[int, int]:
    return {
        fragment.fragment_id: fragment.metadata.num_deletions for fragment in fragments if fragment.fragment_id in ids
    }


def _rows_by_key(dataset, projection: Projection, positions: np.ndarray) -> dict[int, dict]:
    """The annotation rows `dataset` holds for the trajectories at `positions`, by position."""
    if not len(positions):
        return {}
    keys = projection.ids.values_at(positions)
    table = dataset.to_table(columns=list(ANNOTATION_COLUMNS), filter=pc.field(KEY).isin(keys))
    at = dict(zip(keys, positions.tolist(), strict=True))
    return {at[row[KEY]]: row for row in table.to_pylist() if row[KEY] in at}


def _read_fragments(fragments: list, sizes: list[int], located: np.ndarray) -> tuple[frozenset[int], dict]:
    """Of `fragments`, whose rows lie back to back in `located` (`sizes` each; a position per row, -1
    for a trajectory not held): the ids of those whose every row found its trajectory, and where
    the rows of the small ones among them sit."""
    bounds = np.cumsum([0, *sizes]).tolist()
    seen, placed = [], {}
    for fragment, start, stop in zip(fragments, bounds[:-1], bounds[1:], strict=True):
        rows = located[start:stop]
        if (rows >= 0).all():
            seen.append(fragment.fragment_id)
            if stop - start <= _PLACED_ROWS:
                placed[fragment.fragment_id] = rows.astype(np.int32)
    return frozenset(seen), placed


def rows_layout(dataset) -> tuple:
    """(fragment id, rows written, rows deleted, data files, deletion file) per fragment: equal layouts
    hold the same rows, in order, with the same values (a column rewritten or added changes the files;
    the deletion file says which rows are deleted, not only how many: after a restore, another delete
    of as many rows leaves the same counts). Of one run's rows (runs.py): the fragments holding them."""
    if hasattr(dataset, "run_layout"):
        return dataset.run_layout()
    return tuple(
        (
            fragment.fragment_id,
            fragment.metadata.physical_rows,
            fragment.metadata.num_deletions,
            tuple(data_file.path for data_file in fragment.data_files()),
            _deletion_file(fragment.metadata.deletion_file),
        )
        for fragment in dataset.get_fragments()
    )


def layout_rows(layout: tuple) -> int:
    """How many rows a layout holds."""
    return sum((entry[1] or 0) - (entry[2] or 0) for entry in layout)


def _deletion_file(deletion) -> tuple | None:
    return None if deletion is None else (deletion.id, deletion.read_version, str(deletion.file_type))


def _sorting_is_shorter(*, count: int, rows: int, stop: int) -> bool:
    """Whether sorting the `count` matching rows beats walking a sort order until `stop` of them are
    found: the walk reads about stop * rows / count positions (every one when few match: a question's
    100 rows of 10M took 10 ms to find), a sort of few rows takes microseconds."""
    walked = rows if count <= stop else stop * rows / count
    return count * max(1.0, math.log2(count or 1)) * _SORT_COST < walked


def _first_matching(order: np.ndarray, mask: np.ndarray, start: int, stop: int) -> np.ndarray:
    """order[matching][start:stop], reading the order only as far as the page: an early page of a
    million rows looks at the first few thousand."""
    found: list[np.ndarray] = []
    seen = begin = 0
    step = _SCAN_STEP
    while begin < len(order) and seen < stop:
        piece = order[begin : begin + step]
        hits = piece[mask[piece]]
        found.append(hits)
        seen += len(hits)
        begin += len(piece)
        step *= 4
    matching = np.concatenate(found) if found else np.empty(0, dtype=order.dtype)
    return matching[start:stop]


def _differs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Element-wise inequality where two NaNs (two nulls) count as equal."""
    if left.dtype.kind == "f":
        return ~((left == right) | (np.isnan(left) & np.isnan(right)))
    return left != right
