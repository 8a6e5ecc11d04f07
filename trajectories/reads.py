"""The read path: every read of trajectories that pages, the API, commands and charts make.

Like Django's `ChangeList` over `_meta`, these selectors are the one way to ask the store a question;
nothing in `pages/` or `api/` calls the store directly. Each takes keyword-only arguments. Reads that
a page shows are cached once, by `@_cached` around the function (Redis, keyed by the generation and
table versions, read once per request); reads that state what a write will act on (`matching_ids`,
`existing_ids`) or stream (`records`) always ask the store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from trajectories import cache, timing
from trajectories.analysis import ChangeQuery, GroupQuery
from trajectories.query import TrajectoryQuery
from trajectories.store import ResultPage, get_store

P = ParamSpec("P")
T = TypeVar("T")
# Single trajectories above this size are not cached (a 5 MB observation is cheaper read from LanceDB).
MAX_ENTRY_BYTES = 512 * 1024


def _cached(kind: str, question: Callable[..., str], *, max_bytes: int | None = None):
    """Cache a selector's answers under `kind`, keyed by `question(**kwargs)`."""

    def decorate(read: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(read)
        def wrapper(**kwargs) -> T:
            return cache.cached(kind, question(**kwargs), lambda: _timed_read(read, kwargs), max_bytes=max_bytes)

        return wrapper

    return decorate


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


@_cached("page", lambda *, query: cache.normalised(query))
def page(*, query: TrajectoryQuery) -> ResultPage:
    """One page of list rows (no steps) matching `query`, with the exact count."""
    return get_store().page(query=query)


@_cached("count", _filters)
def count(*, query: TrajectoryQuery) -> int:
    return get_store().count_matching(query=query)


@_cached("facets", _filters)
def facets(*, query: TrajectoryQuery | None = None) -> dict[str, list[tuple[str | None, int]]]:
    """Per facet field, (value, count) among the matching rows, most frequent first; None counts the
    rows with no value."""
    return get_store().facets(query=query if query is not None and query.is_filtered else None)


@_cached("total", lambda: "")
def total() -> int:
    return get_store().count()


@_cached("trajectory", lambda *, trajectory_id: trajectory_id, max_bytes=MAX_ENTRY_BYTES)
def trajectory(*, trajectory_id: str) -> dict[str, Any] | None:
    """One trajectory with its steps (JSON text) and annotations, or None."""
    return get_store().get(trajectory_id=trajectory_id)


@_cached("neighbours", lambda *, query, trajectory_id: repr((cache.normalised(query), trajectory_id)))
def neighbours(*, query: TrajectoryQuery, trajectory_id: str) -> Neighbours:
    return Neighbours(*get_store().neighbours(query=query, trajectory_id=trajectory_id))


@_cached("stats", lambda *, query, by, buckets=None: repr((_filters(query=query), by, buckets)))
def stats(*, query: TrajectoryQuery, by: str, buckets: int | None = None) -> list[dict[str, Any]]:
    """Per value of grouping key `by` among the matching rows (no value last): count, success rate,
    means, reward percentiles, share of GRPO groups with no signal (see `store.analytics.stats`);
    with `buckets`, a numeric key's values in that many ranges."""
    return get_store().stats_by(query=query, by=by, buckets=buckets)


@_cached("histograms", lambda *, query, names: repr((_filters(query=query), names)))
def histograms(*, query: TrajectoryQuery, names: tuple[str, ...]) -> dict[str, list]:
    """Per measure in `names`, bins (inclusive low/high, count) of its values among the matching rows."""
    return get_store().histograms(query=query, names=names)


@_cached("mix", lambda *, query, by, of, buckets=None: repr((_filters(query=query), by, of, buckets)))
def mix(*, query: TrajectoryQuery, by: str, of: str, buckets: int | None = None) -> tuple[list, list, list[list[int]]]:
    """Rows per (value of `by`, value of `of`) among the matching rows (no value last in both)."""
    return get_store().mix(query=query, by=by, of=of, buckets=buckets)


@_cached(
    "pivot", lambda *, query, rows_by, columns_by, buckets: repr((_filters(query=query), rows_by, columns_by, buckets))
)
def pivot(*, query: TrajectoryQuery, rows_by: str, columns_by: str, buckets: int) -> dict[str, Any]:
    """Count, mean reward and success rate per (value of `rows_by`, range of `columns_by`)."""
    return get_store().pivot(query=query, rows_by=rows_by, columns_by=columns_by, buckets=buckets)


@_cached("curves", lambda *, query, split, by, buckets=None: repr((_filters(query=query), split, by, buckets)))
def curves(*, query: TrajectoryQuery, split: str, by: str, buckets: int | None = None) -> list[dict[str, Any]]:
    """Per value of `split`, count, reward mean and success rate by `by` (dashboards, overlays)."""
    return get_store().curves(query=query, split=split, by=by, buckets=buckets)


@_cached("changes", lambda *, query: repr(query.key()))
def question_changes(*, query: ChangeQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the data ids whose success rate or mean reward moved most from side a to side b."""
    return get_store().question_changes(query=query)


@_cached("groups", lambda *, query: repr(query.key()))
def groups(*, query: GroupQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the GRPO groups of the matching rows, and how many groups there are."""
    return get_store().groups(query=query)


@_cached("group", lambda *, training_id, iteration_id, data_id, k=1: repr((training_id, iteration_id, data_id, k)))
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


@_cached("similar", lambda *, trajectory_id, query, k: repr((trajectory_id, query.filter_key(), k)))
def similar(*, trajectory_id: str, query: TrajectoryQuery, k: int) -> list[dict[str, Any]] | None:
    """The trajectories among `query`'s rows most like one (by embedding), most similar first."""
    return get_store().similar(trajectory_id=trajectory_id, query=query, k=k)


@_uncached
def clusters(*, query: TrajectoryQuery, k: int) -> dict[str, Any]:
    """k-means clusters of `query`'s rows (not cached: a cluster lists every member's id)."""
    return get_store().clusters(query=query, k=k)
