"""Questions across training runs in a store past the memory budget (`runs.py`), answered by LanceDB
alone: filters on stored values go to its scalar indexes (a BITMAP on training_id, BTREEs on data_id
and the key) or a scan of the few columns they read, never into memory whole.

What it answers: lists and counts filtered by exact values, number ranges and emptiness of the
trajectory fields (newest import first), or by annotations (bookmarked, judged, a category, one tag:
the annotations table is narrow; latest annotated first); facet counts of the whole store (per
fragment, kept while the fragment is) or of at most `COUNTED_MATCHES` matching rows; records by id.
What it refuses, saying why: sorting, searching and patterns across runs (each would rank or read
every row), and filters that mix both tables.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from trajectories import fields
from trajectories.fields import ANNOTATIONS, TRAJECTORIES, Kind
from trajectories.query import DEFAULT_ORDERING, BoolMatch, EmptyMatch, NumberMatch, TextMatch, TrajectoryQuery

from .annotations import blank_annotation
from .engine import RECORD_COLUMNS, ResultPage, _python_columns
from .projection import PROJECTED_COLUMNS, rows_layout
from .schema import ANNOTATION_COLUMNS, KEY

FACET_FIELDS = tuple(field.name for field in fields.FACETS)
_ANNOTATION_FIELDS = tuple(name for name in ANNOTATION_COLUMNS if name != KEY)
_NUMBERS = (Kind.INT, Kind.FLOAT)
NEWEST_IMPORT_FIRST = (
    "Across training runs this store is larger than a server holds in memory: trajectories are listed "
    "newest import first. Choose a training run to sort, search and chart them."
)
LATEST_ANNOTATED_FIRST = (
    "Across training runs this store is larger than a server holds in memory: trajectories are listed "
    "by their annotation's latest change first. Choose a training run to sort, search and chart them."
)


def page(trajectories, annotations, *, query: TrajectoryQuery, refuse) -> ResultPage:
    """One page of list rows matching `query`, newest import (or latest annotation) first, with the
    exact count: a count and one page's rows read, whatever the number of matches."""
    table_name, expression = _expression(query, refuse)  # a search is refused as one, not as a sort
    _check_order(query, refuse)
    source = annotations if table_name == ANNOTATIONS else trajectories
    count = source.count_rows(filter=expression)
    stop = max(count - query.offset, 0)
    start = max(stop - query.page_size, 0)
    note = LATEST_ANNOTATED_FIRST if table_name == ANNOTATIONS else NEWEST_IMPORT_FIRST
    if stop == start:
        return ResultPage(rows=[], count=count, version=trajectories.version, note=note)
    if table_name == ANNOTATIONS:
        read = annotations.to_table(columns=[KEY], filter=expression, offset=start, limit=stop - start)
        rows = _rows_by_id(trajectories, annotations, read.column(KEY).to_pylist()[::-1])
    else:
        read = trajectories.to_table(
            columns=list(PROJECTED_COLUMNS), filter=expression, offset=start, limit=stop - start
        )
        rows = _with_annotations(annotations, read.to_pylist()[::-1])
    return ResultPage(rows=rows, count=count, version=trajectories.version, note=note)


def count(trajectories, annotations, *, query: TrajectoryQuery, refuse) -> int:
    table_name, expression = _expression(query, refuse)
    return (annotations if table_name == ANNOTATIONS else trajectories).count_rows(filter=expression)


def facets(trajectories, annotations, *, query: TrajectoryQuery | None, names: tuple[str, ...]):
    """Facet counts (most frequent first, rows without a value last as None): of the whole store, or of
    the rows a filter across runs matches when they are at most `COUNTED_MATCHES`; otherwise each name
    gets no values (choosing a run counts them)."""
    if query is not None and query.is_filtered:
        return _matching_facets(trajectories, annotations, query=query, names=names)
    rows = trajectories.count_rows()
    found = {}
    for name in names:
        field = fields.BY_NAME[name]
        if field.table == TRAJECTORIES:
            counted = _fragment_counts(trajectories, name)
        else:
            counted = _annotation_counts(annotations, name, rows=rows)
        found[name] = _ranked(counted)
    return found


def records(trajectories, annotations, *, trajectory_ids: list[str], batch: int):
    """Full records of `trajectory_ids` (those stored), in that order, `batch` at a time."""
    for start in range(0, len(trajectory_ids), batch):
        chosen = trajectory_ids[start : start + batch]
        table = trajectories.to_table(columns=list(RECORD_COLUMNS), filter=pc.field(KEY).isin(chosen))
        columns = _python_columns(table)
        names = list(columns)
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        by_id = {row[KEY]: row for row in rows}
        found = [by_id[key] for key in chosen if key in by_id]
        yield from _with_annotations(annotations, found)


COUNTED_MATCHES = 100_000


class _Unanswered(Exception):
    pass


def _matching_facets(trajectories, annotations, *, query: TrajectoryQuery, names: tuple[str, ...]):
    nothing = {name: [] for name in names}
    try:
        table_name, expression = _expression(query, _Unanswered)
    except _Unanswered:
        return nothing
    source = annotations if table_name == ANNOTATIONS else trajectories
    if source.count_rows(filter=expression) > COUNTED_MATCHES:
        return nothing
    matching = expression
    if table_name == ANNOTATIONS:
        ids = annotations.to_table(columns=[KEY], filter=expression).column(KEY).combine_chunks()
        matching = pc.field(KEY).isin(ids.cast(pa.string()))  # typed: an empty set of nulls is refused
    own = [name for name in names if fields.BY_NAME[name].table == TRAJECTORIES]
    table = trajectories.to_table(columns=[KEY, *own], filter=matching)
    keys = table.column(KEY).to_pylist()
    found = {name: _values_of(table.column(name)) for name in own}
    others = [name for name in names if name not in found]
    if others:
        rows = annotations.to_table(columns=[KEY, *others], filter=pc.field(KEY).isin(keys)) if keys else None
        for name in others:
            counted = _values_of(rows.column(name)) if rows is not None else Counter()
            counted[None] += len(keys) - (rows.num_rows if rows is not None else 0)  # never annotated
            found[name] = counted
    return {name: _ranked(found[name]) for name in names}


# --- filters ------------------------------------------------------------------------------------


def _check_order(query: TrajectoryQuery, refuse) -> None:
    if query.ordering != DEFAULT_ORDERING:
        raise refuse("cannot be sorted (every matching row would be ranked; they are listed newest first)")


def _expression(query: TrajectoryQuery, refuse) -> tuple[str, pc.Expression | str | None]:
    """The table `query`'s filters read and their expression (values as Arrow scalars, never SQL text)."""
    if query.search or query.text is not None:
        raise refuse("cannot be searched (every row's text would be read)")
    tables = {fields.BY_NAME[name].table for name, _ in query.filters}
    if len(tables) > 1:
        raise refuse("cannot mix trajectory fields and annotations")
    if len(query.filters) == 1 and fields.BY_NAME[query.filters[0][0]].kind is Kind.LIST:
        name, match = query.filters[0]
        if fields.BY_NAME[name].table == ANNOTATIONS and isinstance(match, TextMatch) and not match.patterns:
            return ANNOTATIONS, _any_of(name, match.exact)  # a monitor's matches: one tag in every run
    table_name = tables.pop() if tables else TRAJECTORIES
    expression = None
    for name, match in query.filters:
        condition = _condition(fields.BY_NAME[name], match, refuse)
        expression = condition if expression is None else expression & condition
    return table_name, expression


def _condition(field: fields.Field, match, refuse) -> pc.Expression:
    column = pc.field(field.name)
    if isinstance(match, TextMatch) and not match.patterns and match.exact and field.kind in (Kind.ID, Kind.TEXT):
        return column.isin(list(match.exact))
    if isinstance(match, NumberMatch) and field.kind in _NUMBERS:
        conditions = []
        if match.values:
            conditions.append(column.isin(list(match.values)))
        if match.minimum is not None:
            conditions.append(column >= match.minimum)
        if match.maximum is not None:
            conditions.append(column <= match.maximum)
        condition = column.is_valid()
        for each in conditions:
            condition = condition & each
        return condition
    if isinstance(match, EmptyMatch) and field.kind is Kind.TEXT and field.table == TRAJECTORIES:
        empty = column.is_null() | (column == "")  # as a list shows it: no value
        return empty if match.empty else ~empty
    if isinstance(match, BoolMatch) and match.value is not None and field.kind in (Kind.BOOL, Kind.TRISTATE):
        # A trajectory never annotated is not bookmarked and not judged: only annotated rows can be true
        # or false, except "not bookmarked", which every blank row is.
        if field.table == ANNOTATIONS and field.kind is Kind.BOOL and not match.value:
            raise refuse(f"cannot list rows where {field.name} is false (most rows never were annotated)")
        return column == match.value
    raise refuse(f"cannot filter {field.name} this way (only exact values and number ranges)")


def _any_of(name: str, values: tuple[str, ...]) -> str:
    """SQL text for "the list holds one of `values`" (no Arrow expression says it): each value a quoted
    literal, its quotes doubled."""
    literals = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"array_has_any({name}, [{literals}])"


# --- rows ---------------------------------------------------------------------------------------


def _rows_by_id(trajectories, annotations, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    table = trajectories.to_table(columns=list(PROJECTED_COLUMNS), filter=pc.field(KEY).isin(ids))
    by_id = {row[KEY]: row for row in table.to_pylist()}
    return _with_annotations(annotations, [by_id[key] for key in ids if key in by_id])


def _with_annotations(annotations, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` with their annotation fields (blank where never annotated)."""
    if not rows:
        return rows
    keys = [row[KEY] for row in rows]
    table = annotations.to_table(columns=list(ANNOTATION_COLUMNS), filter=pc.field(KEY).isin(keys))
    found = {row[KEY]: row for row in table.to_pylist()}
    for row in rows:
        annotation = found.get(row[KEY]) or blank_annotation(row[KEY])
        row.update({name: annotation[name] for name in _ANNOTATION_FIELDS})
        row["tags"] = row["tags"] or []
    return rows


# --- facet counts -------------------------------------------------------------------------------

# (uri, field, fragment layout entry) -> Counter, for either table: a fragment's rows never change while
# its entry (data files, deletion file) stays; a new version reads only its new or changed fragments.
_counted: dict[tuple, Counter] = {}
_counting = threading.Lock()
_KEPT_COUNTS = 20_000


def _fragment_counts(dataset, name: str) -> Counter:
    total: Counter = Counter()
    entries = {entry[0]: entry for entry in rows_layout(dataset)}
    for fragment in dataset.get_fragments():
        key = (dataset.uri, name, entries[fragment.fragment_id])
        counted = _counted.get(key)
        if counted is None:
            counted = _values_of(fragment.to_table(columns=[name]).column(name))
            with _counting:
                if len(_counted) >= _KEPT_COUNTS:
                    _counted.pop(next(iter(_counted)))
                _counted[key] = counted
        total.update(counted)
    return total


def _values_of(column: pa.ChunkedArray) -> Counter:
    counted: Counter = Counter()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        empty = pc.sum(pc.equal(pc.list_value_length(column).fill_null(0), 0)).as_py() or 0
        column = pc.list_flatten(column)
        counted[None] += empty
    for entry in pc.value_counts(column).to_pylist():
        value = entry["values"]
        counted[None if value in (None, "") else value] += entry["counts"]
    return counted


def _annotation_counts(annotations, name: str, *, rows: int) -> Counter:
    counted = _fragment_counts(annotations, name)
    counted[None] += max(rows - annotations.count_rows(), 0)  # never annotated: no value
    return counted


def _ranked(counted: Counter) -> list[tuple[str | None, int]]:
    none = counted.pop(None, 0)
    ranked = sorted(((value, rows) for value, rows in counted.items() if rows), key=lambda pair: (-pair[1], pair[0]))
    return [*ranked, (None, none)] if none else ranked
