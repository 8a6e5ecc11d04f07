"""The read path: every read of trajectories that pages, the API, commands and charts make.

Like Django's `ChangeList` over `_meta`, these selectors are the one way to ask the store a question;
nothing in `pages/` or `api/` calls the store directly. Each takes keyword-only arguments. Reads that
a page shows are cached once, by `@_cached` around the function (Redis, keyed by the generation and
table versions, read once per request); reads that state what a write will act on (`matching_ids`,
`existing_ids`) or stream (`records`) always ask the store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from trajectories import cache, fields, timing
from trajectories.analysis import ChangeQuery, GroupQuery
from trajectories.query import TrajectoryQuery
from trajectories.store import ResultPage, analytics, get_store

P = ParamSpec("P")
T = TypeVar("T")
# Single trajectories above this size are not cached (a 5 MB observation is cheaper read from LanceDB).
MAX_ENTRY_BYTES = 512 * 1024


def _cached(
    kind: str,
    question: Callable[..., str],
    *,
    reads: Callable[..., Iterable[str]],
    refresh: Callable[[Any], Any] | None = None,
    max_bytes: int | None = None,
):
    """Cache a selector's answers under `kind`, keyed by `question(**kwargs)` and the versions of what
    it reads: `reads(**kwargs)` names the fields the answer is computed from (of the annotations, only
    those count: see `cache.cached`); `refresh` gives a hit's rows their annotations of now."""

    def decorate(read: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(read)
        def wrapper(**kwargs) -> T:
            return cache.cached(
                kind,
                question(**kwargs),
                lambda: _timed_read(read, kwargs),
                max_bytes=max_bytes,
                annotations=ANNOTATED & frozenset(reads(**kwargs)),
                refresh=refresh,
            )

        return wrapper

    return decorate


ANNOTATED = frozenset(field.name for field in fields.FIELDS if field.table == fields.ANNOTATIONS)


def _query_reads(query: TrajectoryQuery | None, *, ordered: bool = False) -> set[str]:
    """The fields whose values decide which rows `query` selects (and, `ordered`, their order)."""
    if query is None:
        return set()
    names = {name for name, _ in query.filters}
    if query.search:
        names.update(fields.SEARCHED)
    if ordered:
        names.update(name for name, _ in query.ordering)
    return names


def _analytics_reads(*queries: TrajectoryQuery, keys: Iterable[str | None] = ()) -> set[str]:
    """What a statistic of `queries`' rows by `keys` reads: what selects the rows, and what the
    analytics read of the annotations."""
    return {*analytics.annotations_read(keys), *(name for query in queries for name in _query_reads(query))}


def _fresh_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """`rows` (list rows or records, from the cache) with the annotations they hold now."""
    if not rows:
        return rows
    found = get_store().annotations_of(trajectory_ids=[row["trajectory_id"] for row in rows])
    if found is None:
        return None
    for row, now in zip(rows, found, strict=True):
        row.update(now)
    return rows


def _fresh_page(page: ResultPage) -> ResultPage | None:
    return page if _fresh_rows(page.rows) is not None else None


def _fresh_record(record: dict[str, Any] | None) -> dict[str, Any] | None:
    # A cached "no such trajectory" is None, which reads as a miss: asked again, as before.
    return record if record is None or _fresh_rows([record]) is not None else None


def _fresh_group(found: tuple[list[dict[str, Any]], dict[str, Any]]):
    return found if _fresh_rows(found[0]) is not None else None


def _timed_read(read: Callable[..., T], kwargs: dict) -> T:
    with timing.timed(timing.STORE):
        return read(**kwargs)


def _uncached(read: Callable[P, T]) -> Callable[P, T]:
    """A read that always asks the store, timed as store time."""

    @functools.wraps(read)
    def wrapper(**kwargs) -> T:
        return _timed_read(read, kwargs)

    return wrapper


def _filters(*, query: TrajectoryQuery | None = None, **_) -> str:
    return repr(query.filter_key()) if query is not None and query.is_filtered else "all"


@dataclass(frozen=True)
class Neighbours:
    """Where one trajectory sits in a list: the ids before and after it, its 0-based index, the count."""

    previous_id: str | None
    next_id: str | None
    index: int | None
    count: int


@_cached(
    "page",
    lambda *, query: cache.normalised(query),
    reads=lambda *, query: _query_reads(query, ordered=True),
    refresh=_fresh_page,
)
def page(*, query: TrajectoryQuery) -> ResultPage:
    """One page of list rows (no steps) matching `query`, with the exact count."""
    return get_store().page(query=query)


@_cached("count", _filters, reads=lambda *, query: _query_reads(query))
def count(*, query: TrajectoryQuery) -> int:
    return get_store().count_matching(query=query)


def facets(*, query: TrajectoryQuery | None = None) -> dict[str, list[tuple[str | None, int]]]:
    """Per facet field, (value, count) among the matching rows, most frequent first; None counts the
    rows with no value. Cached in two parts: an edit recounts only the annotation facets."""
    query = query if query is not None and query.is_filtered else None
    found = {**_row_facets(query=query), **_annotation_facets(query=query)}
    return {field.name: found[field.name] for field in fields.FACETS}


_ANNOTATION_FACETS = tuple(field.name for field in fields.FACETS if field.name in ANNOTATED)
_ROW_FACETS = tuple(field.name for field in fields.FACETS if field.name not in ANNOTATED)


@_cached("facets", _filters, reads=lambda *, query: _query_reads(query))
def _row_facets(*, query: TrajectoryQuery | None) -> dict[str, list[tuple[str | None, int]]]:
    return get_store().facets(query=query, names=_ROW_FACETS)


@_cached("annotation-facets", _filters, reads=lambda *, query: {*_query_reads(query), *_ANNOTATION_FACETS})
def _annotation_facets(*, query: TrajectoryQuery | None) -> dict[str, list[tuple[str | None, int]]]:
    return get_store().facets(query=query, names=_ANNOTATION_FACETS)


@_cached("total", lambda: "", reads=lambda: ())
def total() -> int:
    return get_store().count()


@_cached(
    "trajectory",
    lambda *, trajectory_id: trajectory_id,
    reads=lambda **_: (),
    refresh=_fresh_record,
    max_bytes=MAX_ENTRY_BYTES,
)
def trajectory(*, trajectory_id: str) -> dict[str, Any] | None:
    """One trajectory with its steps (JSON text) and annotations, or None."""
    return get_store().get(trajectory_id=trajectory_id)


@_cached(
    "neighbours",
    lambda *, query, trajectory_id: repr((cache.normalised(query), trajectory_id)),
    reads=lambda *, query, trajectory_id: _query_reads(query, ordered=True),
)
def neighbours(*, query: TrajectoryQuery, trajectory_id: str) -> Neighbours:
    return Neighbours(*get_store().neighbours(query=query, trajectory_id=trajectory_id))


@_cached(
    "stats",
    lambda *, query, by, buckets=None: repr((_filters(query=query), by, buckets)),
    reads=lambda *, query, by, buckets=None: _analytics_reads(query, keys=[by]),
)
def stats(*, query: TrajectoryQuery, by: str, buckets: int | None = None) -> list[dict[str, Any]]:
    """Per value of grouping key `by` among the matching rows (no value last): count, success rate,
    means, reward percentiles, share of GRPO groups with no signal (see `store.analytics.stats`);
    with `buckets`, a numeric key's values in that many ranges."""
    return get_store().stats_by(query=query, by=by, buckets=buckets)


@_cached(
    "histograms",
    lambda *, query, names: repr((_filters(query=query), names)),
    reads=lambda *, query, names: {*_query_reads(query), *names},
)
def histograms(*, query: TrajectoryQuery, names: tuple[str, ...]) -> dict[str, list]:
    """Per measure in `names`, bins (inclusive low/high, count) of its values among the matching rows."""
    return get_store().histograms(query=query, names=names)


@_cached(
    "mix",
    lambda *, query, by, of, buckets=None: repr((_filters(query=query), by, of, buckets)),
    reads=lambda *, query, by, of, buckets=None: {*_query_reads(query), by, of},
)
def mix(*, query: TrajectoryQuery, by: str, of: str, buckets: int | None = None) -> tuple[list, list, list[list[int]]]:
    """Rows per (value of `by`, value of `of`) among the matching rows (no value last in both)."""
    return get_store().mix(query=query, by=by, of=of, buckets=buckets)


@_cached(
    "pivot",
    lambda *, query, rows_by, columns_by, buckets: repr((_filters(query=query), rows_by, columns_by, buckets)),
    reads=lambda *, query, rows_by, columns_by, buckets: _analytics_reads(query, keys=[rows_by, columns_by]),
)
def pivot(*, query: TrajectoryQuery, rows_by: str, columns_by: str, buckets: int) -> dict[str, Any]:
    """Count, mean reward and success rate per (value of `rows_by`, range of `columns_by`)."""
    return get_store().pivot(query=query, rows_by=rows_by, columns_by=columns_by, buckets=buckets)


@_cached(
    "curves",
    lambda *, query, split, by, buckets=None: repr((_filters(query=query), split, by, buckets)),
    reads=lambda *, query, split, by, buckets=None: _analytics_reads(query, keys=[split, by]),
)
def curves(*, query: TrajectoryQuery, split: str, by: str, buckets: int | None = None) -> list[dict[str, Any]]:
    """Per value of `split`, count, reward mean and success rate by `by` (dashboards, overlays)."""
    return get_store().curves(query=query, split=split, by=by, buckets=buckets)


@_cached(
    "changes",
    lambda *, query: repr(query.key()),
    reads=lambda *, query: _analytics_reads(query.rows, query.a, query.b),
)
def question_changes(*, query: ChangeQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the data ids whose success rate or mean reward moved most from side a to side b."""
    return get_store().question_changes(query=query)


@_cached(
    "groups",
    lambda *, query: repr(query.key()),
    reads=lambda *, query: _analytics_reads(query.rows, keys=[name for name, _ in (*query.flags, *query.ordering)]),
)
def groups(*, query: GroupQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the GRPO groups of the matching rows, and how many groups there are."""
    return get_store().groups(query=query)


@_cached(
    "group",
    lambda *, training_id, iteration_id, data_id, k=1: repr((training_id, iteration_id, data_id, k)),
    reads=lambda **_: analytics.annotations_read(()),
    refresh=_fresh_group,
)
def group(
    *, training_id: str | None, iteration_id: int | None, data_id: str, k: int = 1
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The list rows of one GRPO group, by ascending reward, and its measures and flags."""
    return get_store().group(training_id=training_id, iteration_id=iteration_id, data_id=data_id, k=k)


@_uncached
def matching_ids(*, query: TrajectoryQuery) -> list[str]:
    """Every id matching `query`, sorted, from the newest versions (what a bulk action acts on)."""
    return get_store().matching_ids(query=query)


@_uncached
def existing_ids(*, ids: list[str]) -> set[str]:
    """Which of `ids` are stored now."""
    return get_store().existing_ids(ids=ids)


@_uncached
def records(*, trajectory_ids: list[str]) -> Iterator[dict[str, Any]]:
    """Full records (steps and annotations) in batches, all from one table version (exports)."""
    return get_store().records(trajectory_ids=trajectory_ids)


@_uncached
def ordered_records(*, query: TrajectoryQuery, progress=None) -> Iterator[dict[str, Any]]:
    """Every record `query` matches, in its order, streamed from one table version (exports)."""
    return get_store().ordered_records(query=query, progress=progress)


@_uncached
def group_pairs(*, query: TrajectoryQuery, min_gap: float, progress=None) -> Iterator[tuple[dict, dict]]:
    """(worst, best) records of each GRPO group among the matching rows (preference-pair exports)."""
    return get_store().group_pairs(query=query, min_gap=min_gap, progress=progress)


@_uncached
def text_index_state() -> dict[str, int | bool]:
    """Whether content search has its index and how many new rows it scans until the next refresh."""
    return get_store().text_index_state()


@_cached(
    "similar",
    lambda *, trajectory_id, query, k: repr((trajectory_id, query.filter_key(), k)),
    reads=lambda *, trajectory_id, query, k: _query_reads(query),
    refresh=lambda rows: rows if rows is None else _fresh_rows(rows),
)
def similar(*, trajectory_id: str, query: TrajectoryQuery, k: int) -> list[dict[str, Any]] | None:
    """The trajectories among `query`'s rows most like one (by embedding), most similar first."""
    return get_store().similar(trajectory_id=trajectory_id, query=query, k=k)


@_uncached
def clusters(*, query: TrajectoryQuery, k: int) -> dict[str, Any]:
    """k-means clusters of `query`'s rows (not cached: a cluster lists every member's id)."""
    return get_store().clusters(query=query, k=k)
