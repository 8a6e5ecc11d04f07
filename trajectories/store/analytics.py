"""Training-step analytics over the projection: measures per grouping key, and GRPO groups.

Both work on the rows a list's filters select (the same mask facets count), in memory. Percentiles
need each key's values in order: the field's cached sort order, cut to the selected rows, is
regrouped by key with a stable sort (a radix sort while keys fit in 16 bits), so values stay ordered
inside each key and no per-query full sort is made. A GRPO group is the rows sharing (training run,
iteration, data id); the projection keeps each row's group number and the rows in group order once.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from trajectories import fields
from trajectories.fields import Kind

from . import mapped
from .columns import ListColumn, NumberColumn
from .projection import ANNOTATION_FIELDS, Projection

QUANTILES = (("p10", 0.10), ("p50", 0.50), ("p90", 0.90))
GROUP_FIELDS = ("training_id", "iteration_id", "data_id")
# Numeric measures: a mean each; rewards also percentiles.
NUMBERS = tuple(name for name in fields.MEASURES if fields.get(name).kind in (Kind.INT, Kind.FLOAT))
SUCCESS = "is_success"
REWARD = "reward"
# The key whose per-value reward orders are built ahead (about 4 MB per reward per million rows).
WARMED_KEY = "iteration_id"
# A group whose rewards span at least this much is flagged "high spread".
HIGH_SPREAD = 0.5
MAX_PASS_K = 64


@dataclass(frozen=True)
class Elements:
    """What one grouping counts: selected rows (a row of a list field once per value it holds) with
    the number of their key's value; the last number stands for "no value"."""

    rows: np.ndarray
    codes: np.ndarray
    labels: list  # the value of each number but the last (None)


def key_elements(projection: Projection, by: str, rows: np.ndarray) -> Elements:
    """`rows` (in their order) as elements of grouping key `by`."""
    column = projection.column(by)
    if isinstance(column, ListColumn):
        return _list_elements(column, rows)
    codes, labels = column.keys()
    picked = codes[rows]
    return Elements(rows=rows, codes=np.where(picked < 0, len(labels), picked), labels=labels)


def _list_elements(column: ListColumn, rows: np.ndarray) -> Elements:
    labels = column.coded._python_uniques()
    starts, stops = column.offsets[rows], column.offsets[rows + 1]
    sizes = stops - starts
    # A row with no values counts once, as "no value".
    counted = np.maximum(sizes, 1)
    element_rows = np.repeat(rows, counted)
    first = np.repeat(np.cumsum(counted) - counted, counted)
    entry = np.repeat(starts, counted) + (np.arange(len(element_rows)) - first)
    has = np.repeat(sizes > 0, counted)
    codes = np.full(len(element_rows), len(labels), dtype=np.int64)
    codes[has] = column.coded.codes[entry[has]]
    return Elements(rows=element_rows, codes=codes, labels=labels)


def selected_rows(projection: Projection, mask: np.ndarray | None) -> np.ndarray:
    return np.arange(projection.rows) if mask is None else np.flatnonzero(mask)


def stats(projection: Projection, *, by: str, mask: np.ndarray | None, buckets: int | None = None) -> list[dict]:
    """Per value of `by` among the selected rows, in value order (no value last): count, success rate,
    means of every numeric measure, p10/p50/p90 of every reward, and the GRPO groups with no signal.
    With `buckets`, a numeric key with more values is cut into that many equal ranges of whole
    numbers, each result's `key` its first value and `key_max` its last. Unfiltered answers are kept
    with the projection (they change only with it)."""
    if mask is None:
        found = _per_annotations(
            projection, ("stats", by, buckets),
            lambda: _stats(projection, by=by, mask=None, buckets=_bucketing(projection, by, buckets, None)),
        )  # fmt: skip
        return [dict(row) for row in found]
    return _stats(projection, by=by, mask=mask, buckets=_bucketing(projection, by, buckets, mask))


@dataclass(frozen=True)
class Bucketing:
    of_code: np.ndarray  # per key number (and the last: no value), its range's number
    ranges: list[tuple[int, int]]


def _bucketing(
    projection: Projection, by: str, buckets: int | None, mask: np.ndarray | None, *, always: bool = False
) -> Bucketing | None:
    """Ranges of whole numbers over the values of a numeric key the selected rows hold, when they hold
    more than `buckets` values (or `always`). Python integers: iterations may be anywhere in int64."""
    column = projection.column(by)
    if buckets is None or not isinstance(column, NumberColumn):
        return None
    codes, labels = _row_keys(column)
    held = np.flatnonzero(np.bincount(codes if mask is None else codes[mask], minlength=len(labels) + 1)[:-1])
    if not len(held) or (len(held) <= buckets and not always):
        return None
    low, high = int(labels[held[0]]), int(labels[held[-1]])
    width = -(-(high - low + 1) // buckets)  # ceiling division, exact for any size
    ranges = [(start, min(start + width - 1, high)) for start in range(low, high + 1, width)]
    of_code = [min(max((int(value) - low) // width, 0), len(ranges) - 1) for value in labels]
    return Bucketing(np.array([*of_code, len(ranges)], dtype=np.intp), ranges)


def _stats(projection: Projection, *, by: str, mask: np.ndarray | None, buckets: Bucketing | None) -> list[dict]:
    column = projection.column(by)
    if isinstance(column, ListColumn):
        elements = key_elements(projection, by, selected_rows(projection, mask))
        codes, labels = elements.codes, elements.labels
        rows = elements.rows

        def pick(values: np.ndarray) -> np.ndarray:
            return values[rows]
    else:
        every, labels = _row_keys(column)
        # Positions once: each measure is then a gather of the selected rows, not a pass over all.
        positions = None if mask is None else np.flatnonzero(mask)
        codes = every if positions is None else every.take(positions)
        if buckets is not None:
            codes, labels = buckets.of_code[codes], buckets.ranges

        def pick(values: np.ndarray) -> np.ndarray:
            return values if positions is None else values.take(positions)

    size = len(labels) + 1
    codes = codes.astype(np.intp, copy=False)  # what bincount takes: converted once, not per measure
    count = np.bincount(codes, minlength=size)
    measures: dict[str, np.ndarray] = {}
    for name in NUMBERS:
        column = projection.column(name)
        if column.has_nulls():
            counted = np.bincount(codes, weights=pick(column.presence()), minlength=size)
            total = np.bincount(codes, weights=pick(column.filled()), minlength=size)
        else:
            counted, total = count, np.bincount(codes, weights=pick(column.floats()), minlength=size)
        measures[f"{name}_mean"] = _ratio(total, counted)
    for name in fields.REWARDS:
        measures.update(_percentiles(projection, name, by=by, mask=mask, size=size, buckets=buckets))
    flags = pick(projection.column(SUCCESS).values)
    successes = np.bincount(codes, weights=flags == 1, minlength=size)
    judged = np.bincount(codes, weights=flags >= 0, minlength=size)
    measures["success_rate"] = _ratio(successes, judged)
    groups, zero = _zero_signal_by_key(projection, by=by, mask=mask, size=size, buckets=buckets)
    measures["zero_signal_share"] = _ratio(zero, groups)
    present_codes = np.flatnonzero(count)
    columns = {
        "count": count[present_codes].tolist(),
        "successes": successes[present_codes].astype(np.int64).tolist(),
        "judged": judged[present_codes].astype(np.int64).tolist(),
        "groups": groups[present_codes].tolist(),
        "zero_signal_groups": zero[present_codes].tolist(),
        **{name: _nullable(values[present_codes]) for name, values in measures.items()},
    }
    keys = [labels[code] if code < len(labels) else None for code in present_codes.tolist()]
    if buckets is not None:
        columns = {"key": [key and key[0] for key in keys], "key_max": [key and key[1] for key in keys], **columns}
    else:
        columns = {"key": keys, **columns}
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _nullable(values: np.ndarray) -> list[float | None]:
    """JSON-safe numbers: NaN (nothing to measure) and an overflow to infinity are null."""
    return [value if math.isfinite(value) else None for value in values.astype(np.float64).tolist()]


def _row_keys(column) -> tuple[np.ndarray, list]:
    """Per row its key number with "no value" as the last number (bincount's input), made once per
    column (an annotation edit makes a new column)."""
    cached = column.__dict__.get("_row_keys_cache")
    if cached is None:
        codes, labels = column.keys()
        shifted = np.where(codes < 0, len(labels), codes)
        shifted = shifted.astype(np.uint16 if len(labels) < np.iinfo(np.uint16).max else np.int32)
        cached = column.__dict__["_row_keys_cache"] = (shifted, labels)
    return cached


def _floats(projection: Projection, name: str) -> np.ndarray:
    column = projection.column(name)
    assert isinstance(column, NumberColumn)
    return column.floats()


# Selections below one row in this many are sorted alone for percentiles (a sort of 60k rows ~5 ms,
# a pass over a million-row order ~10 ms per measure).
_SPARSE = 16


def _percentiles(
    projection: Projection, name: str, *, by: str, mask, size: int, buckets: Bucketing | None = None
) -> dict[str, np.ndarray]:
    """p10/p50/p90 of `name` per key value, linear between ranks (numpy's default)."""
    values = _floats(projection, name)
    column = projection.column(by)
    if buckets is not None:
        order = projection.order(name, False)[: int(np.count_nonzero(~np.isnan(values)))]
        if mask is not None:
            order = order[mask[order]]
        codes = buckets.of_code[_row_keys(column)[0][order]]
        rows = order[_regrouped(codes, size)]
        counts = np.bincount(codes, minlength=size)
    elif isinstance(column, ListColumn):
        present = int(np.count_nonzero(~np.isnan(values)))
        order = projection.order(name, False)[:present]  # nulls sort last: the rest hold a value
        if mask is not None:
            order = order[mask[order]]
        elements = key_elements(projection, by, order.astype(np.int64))
        rows = elements.rows[_regrouped(elements.codes, size)]
        counts = np.bincount(elements.codes, minlength=size)
    elif mask is not None and (selected := np.flatnonzero(mask)).size * _SPARSE < projection.rows:
        # A few rows: sorting them alone beats a pass over the whole precomputed order.
        keys = _row_keys(column)[0]
        present = selected[~np.isnan(values[selected])]
        rows = present[np.lexsort((values[present], keys[present]))]
        counts = np.bincount(keys[rows], minlength=size)
    else:
        rows = _key_value_order(projection, by, name)
        if mask is not None:
            rows = rows[mask[rows]]
        counts = np.bincount(_row_keys(column)[0][rows], minlength=size)
    starts = np.cumsum(counts) - counts
    ordered = values[rows]
    return {f"{name}_{label}": _quantile(ordered, starts, counts, q) for label, q in QUANTILES}


def _key_value_order(projection: Projection, by: str, name: str) -> np.ndarray:
    """The rows with a value of `name`, grouped by `by` (a scalar key), ascending value inside each
    group: made once per projection (for an annotation key, once per annotation version), then a
    filter is one pass over it."""

    def build() -> np.ndarray:
        values = _floats(projection, name)
        order = projection.order(name, False)[: int(np.count_nonzero(~np.isnan(values)))]
        codes = _row_keys(projection.column(by))[0]
        return order[np.argsort(codes[order], kind="stable")]

    if fields.get(by).table == fields.ANNOTATIONS:
        return _per_annotations(projection, ("by-value", by, name), build)
    return projection.derived(("by-value", f"{by}:{name}"), build)


def annotations_read(keys: Iterable) -> frozenset[str]:
    """The annotation fields an answer here grouped or split by `keys` reads: whether rows succeeded,
    and each key that is one (a statistic's `by`). Cached answers are kept until one of them changes."""
    return frozenset({SUCCESS, *(key for key in keys if isinstance(key, str) and key in ANNOTATION_FIELDS)})


def _per_annotations(projection: Projection, key: tuple, build):
    """What `build()` makes from annotation columns (see `annotations_read`), kept until they change."""
    return projection.per_annotations(key, annotations_read(key), build)


def _regrouped(codes: np.ndarray, size: int) -> np.ndarray:
    """The stable order that brings equal codes together (values keep their order inside each)."""
    narrow = codes.astype(np.uint16) if size <= np.iinfo(np.uint16).max else codes
    return np.argsort(narrow, kind="stable")


def _quantile(ordered: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per group (`counts` sorted values from `starts` in `ordered`) its q-quantile, NaN when empty."""
    result = np.full(len(counts), np.nan)
    has = counts > 0
    if not has.any() or not len(ordered):
        return result
    position = (counts[has] - 1) * q
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, counts[has] - 1)
    below, above = ordered[starts[has] + low], ordered[starts[has] + high]
    result[has] = below + (above - below) * (position - low)
    return result


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# --- GRPO groups -----------------------------------------------------------------------------


@mapped.shareable
@dataclass(frozen=True)
class GroupIndex:
    """Per row its group number, and all rows in group order, ascending reward inside each (no
    reward last); group numbers follow (training run, iteration, data id) order."""

    numbers: np.ndarray
    order: np.ndarray
    count: int
    keys: np.ndarray  # each group's packed (run, iteration, data id) codes, ascending
    starts: np.ndarray  # where each group's rows begin in `order` (and the end, last)


def warm(projection: Projection) -> None:
    """Build what the first stats or group request would otherwise wait for (off the request path)."""
    group_index(projection)
    for name in fields.GROUP_KEYS:
        column = projection.column(name)
        if isinstance(column, NumberColumn):
            column.keys()
    for name in NUMBERS:
        _floats(projection, name)
        if name in fields.REWARDS:
            projection.order(name, False)
            _key_value_order(projection, WARMED_KEY, name)  # a run's chart by iteration
    for name in fields.GROUP_KEYS:
        _constant_in_groups(projection, name)
    curves(projection, split="training_id", by="iteration_id", mask=None)  # the overview's dashboard


def _constant_in_groups(projection: Projection, by: str) -> bool:
    """Whether every GRPO group has one value of `by` (a trajectory field: run, iteration, agent...),
    so a group's key is its first row's; checked once per projection."""
    if isinstance(projection.column(by), ListColumn) or fields.get(by).table == fields.ANNOTATIONS:
        return False

    def check() -> bool:
        index = group_index(projection)
        codes = _row_keys(projection.column(by))[0][index.order]
        numbers = index.numbers[index.order]
        same_group = numbers[1:] == numbers[:-1]
        return bool(np.all(codes[1:][same_group] == codes[:-1][same_group]))

    return projection.derived(("constant", by), check)


def group_index(projection: Projection) -> GroupIndex:
    return projection.derived(_GROUP_INDEX, lambda: _group_index(projection))


def in_use(projection: Projection) -> bool:
    """Whether analytics were asked of this projection (the next one prepares them before serving)."""
    return projection.has_derived(_GROUP_INDEX)


_GROUP_INDEX = ("groups", "index")


def _group_index(projection: Projection) -> GroupIndex:
    combined = np.zeros(projection.rows, dtype=np.int64)
    for name in GROUP_FIELDS:
        codes, labels = projection.column(name).keys()
        # Shift so no value (-1) sorts last, as everywhere in lists.
        base = len(labels) + 1
        combined = combined * base + np.where(codes < 0, len(labels), codes)
    keys, numbers = np.unique(combined, return_inverse=True)
    numbers = numbers.astype(np.int32)
    by_reward = projection.order(REWARD, False)
    order = by_reward[np.argsort(numbers[by_reward], kind="stable")].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(numbers, minlength=len(keys)))])
    return GroupIndex(numbers=numbers, order=order, count=len(keys), keys=keys, starts=starts)


@dataclass(frozen=True)
class Groups:
    """The groups of the selected rows, one entry per group in every array, in group order."""

    first: np.ndarray  # a row of the group (its key values)
    size: np.ndarray
    rewarded: np.ndarray  # samples with a reward
    reward_mean: np.ndarray
    reward_std: np.ndarray
    reward_min: np.ndarray
    reward_max: np.ndarray
    successes: np.ndarray
    judged: np.ndarray

    @property
    def zero_signal(self) -> np.ndarray:
        """Two or more rewarded samples, all with the same reward: nothing to learn from."""
        return (self.rewarded >= 2) & (self.reward_min == self.reward_max)

    @property
    def all_failed(self) -> np.ndarray:
        return (self.judged == self.size) & (self.successes == 0)

    @property
    def all_passed(self) -> np.ndarray:
        return self.successes == self.size

    @property
    def high_spread(self) -> np.ndarray:
        return (self.rewarded >= 2) & (self.reward_max - self.reward_min >= HIGH_SPREAD)

    def pass_at(self, k: int) -> np.ndarray:
        """The unbiased pass@k estimate (1 - C(n-c, k) / C(n, k)) with n samples, c successes; k is
        capped at n (a group of 3 answers pass@8 as "any of its 3 passed")."""
        n = self.size.astype(np.float64)
        failures = n - self.successes
        k_here = np.minimum(k, self.size)
        missed = np.ones(len(n))
        for i in range(min(k, MAX_PASS_K)):
            active = i < k_here
            missed = np.where(active, missed * np.clip(failures - i, 0, None) / np.maximum(n - i, 1), missed)
        return 1.0 - missed


def groups_of(projection: Projection, *, mask: np.ndarray | None) -> Groups:
    """The groups of the selected rows (of every row: made once per annotation version)."""
    index = group_index(projection)
    if mask is None:
        return _per_annotations(
            projection, ("groups",), lambda: _measured(projection, index.order, index.numbers[index.order])
        )
    rows = index.order[mask[index.order]]
    return _measured(projection, rows, index.numbers[rows])


def _measured(projection: Projection, rows: np.ndarray, numbers: np.ndarray) -> Groups:
    """Group measures of `rows`, which come grouped (equal `numbers` together) and by ascending reward
    inside each group, no reward last."""
    if not len(rows):
        empty = np.empty(0)
        return Groups(*(empty.astype(np.int64),) * 3, *(empty,) * 4, *(empty.astype(np.int64),) * 2)
    starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])
    size = np.diff(np.r_[starts, len(rows)])
    rewards = _floats(projection, REWARD)[rows]
    present = ~np.isnan(rewards)
    filled = np.where(present, rewards, 0.0)
    rewarded = np.add.reduceat(present.astype(np.int64), starts)
    with np.errstate(over="ignore"):  # rewards near the float limit sum to infinity: answered as null
        total = np.add.reduceat(filled, starts)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(rewarded > 0, total / np.maximum(rewarded, 1), np.nan)
        deviation = np.where(present, rewards - np.repeat(mean, size), 0.0)
        std = np.where(rewarded > 0, np.sqrt(np.add.reduceat(deviation**2, starts) / np.maximum(rewarded, 1)), np.nan)
    low = np.where(rewarded > 0, rewards[starts], np.nan)
    high = np.where(rewarded > 0, rewards[starts + np.maximum(rewarded - 1, 0)], np.nan)
    flags = projection.column(SUCCESS).values[rows]
    successes = np.add.reduceat((flags == 1).astype(np.int64), starts)
    judged = np.add.reduceat((flags >= 0).astype(np.int64), starts)
    return Groups(rows[starts], size, rewarded, mean, std, low, high, successes, judged)


def _signal(projection: Projection, rows: np.ndarray, numbers: np.ndarray):
    """For rows grouped as in `_measured`: each group's first row, whether it has two or more rewards,
    and whether those are all equal (only what the zero-signal share needs)."""
    if not len(rows):
        return rows, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])
    rewards = _floats(projection, REWARD)[rows]
    rewarded = np.add.reduceat((~np.isnan(rewards)).astype(np.int32), starts)
    capable = rewarded >= 2
    zero = capable & (rewards[starts] == rewards[starts + np.maximum(rewarded - 1, 0)])
    return rows[starts], capable, zero


def _zero_signal_by_key(
    projection: Projection, *, by: str, mask, size: int, buckets: Bucketing | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per key value: its GRPO groups with two or more rewarded samples (counting, for each value,
    only the samples that have it), and how many of those have no signal."""
    column = projection.column(by)
    index = group_index(projection)
    if _constant_in_groups(projection, by) or isinstance(column, ListColumn) or buckets is not None:
        rows = index.order if mask is None else index.order[mask[index.order]]
    if _constant_in_groups(projection, by):
        first, capable, zero = _signal(projection, rows, index.numbers[rows])
        keys = _row_keys(column)[0][first]
        if buckets is not None:
            keys = buckets.of_code[keys]
        return (np.bincount(keys, weights=capable, minlength=size).astype(np.int64),
                np.bincount(keys, weights=zero, minlength=size).astype(np.int64))  # fmt: skip
    if isinstance(column, ListColumn) or buckets is not None:
        elements = key_elements(projection, by, rows)
        element_codes = elements.codes if buckets is None else buckets.of_code[elements.codes]
        # Regrouped by key, each key's rows stay in group order, by reward inside each group.
        grouped = _regrouped(element_codes, size)
        rows, codes = elements.rows[grouped], element_codes[grouped]
    else:
        rows = _key_group_order(projection, by)
        if mask is not None:
            rows = rows[mask[rows]]
        codes = _row_keys(column)[0][rows].astype(np.intp)
    numbers = index.numbers[rows].astype(np.int64) * size + codes
    _, capable, zero = _signal(projection, rows, numbers)
    starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]]) if len(rows) else np.empty(0, np.intp)
    keys = codes[starts]  # each (key, group) piece's key
    return (np.bincount(keys, weights=capable, minlength=size).astype(np.int64),
            np.bincount(keys, weights=zero, minlength=size).astype(np.int64))  # fmt: skip


def _key_group_order(projection: Projection, by: str) -> np.ndarray:
    """Every row by (value of `by`, GRPO group, reward): made once per projection (per annotation
    version for an annotation key), then a filter keeps its order in one pass."""

    def build() -> np.ndarray:
        order = group_index(projection).order
        return order[
            _regrouped(_row_keys(projection.column(by))[0][order], len(_row_keys(projection.column(by))[1]) + 1)
        ]

    if fields.get(by).table == fields.ANNOTATIONS:
        return _per_annotations(projection, ("by-group", by), build)
    return projection.derived(("by-group", by), build)


def group_page(
    projection: Projection,
    *,
    mask: np.ndarray | None,
    flags: tuple[tuple[str, bool], ...] = (),
    ordering: tuple[tuple[str, bool], ...] = (),
    k: int = 1,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict], int]:
    """One page of the groups of the selected rows with `flags` as asked, in `ordering` (ties and the
    default: run, iteration, data id), and the count of such groups."""
    groups = groups_of(projection, mask=mask)
    measures = _group_measures(groups, k)
    keep = np.ones(len(groups.size), dtype=bool)
    for name, wanted in flags:
        keep &= measures[name] == wanted
    chosen = np.flatnonzero(keep)
    if ordering:
        keys = [chosen]  # lexsort: least significant first; the group order breaks ties
        for name, descending in reversed(ordering):
            values = _group_sort_values(projection, groups, measures, name)[chosen]
            missing = np.isnan(values)
            keys += [-values if descending else values, missing]
        chosen = chosen[np.lexsort(keys)]
    page = chosen[offset : offset + limit]
    return [_group_row(projection, groups, measures, index) for index in page.tolist()], len(chosen)


def _group_measures(groups: Groups, k: int) -> dict[str, np.ndarray]:
    return {
        "size": groups.size,
        "reward_mean": groups.reward_mean,
        "reward_std": groups.reward_std,
        "reward_min": groups.reward_min,
        "reward_max": groups.reward_max,
        "successes": groups.successes,
        "judged": groups.judged,
        "pass_at_k": groups.pass_at(k),
        "zero_signal": groups.zero_signal,
        "all_failed": groups.all_failed,
        "all_passed": groups.all_passed,
        "high_spread": groups.high_spread,
    }


def _group_sort_values(projection: Projection, groups: Groups, measures, name: str) -> np.ndarray:
    if name in GROUP_FIELDS:
        codes = projection.column(name).keys()[0]
        picked = codes[groups.first]
        return np.where(picked < 0, np.nan, picked).astype(np.float64)
    return measures[name].astype(np.float64)


def _group_row(projection: Projection, groups: Groups, measures, index: int) -> dict:
    first = np.array([groups.first[index]])
    row = {name: projection.column(name).values_at(first)[0] for name in GROUP_FIELDS}
    for name, values in measures.items():
        value = values[index]
        if values.dtype == bool:
            row[name] = bool(value)
        elif values.dtype.kind in "iu":
            row[name] = int(value)
        else:
            row[name] = _number(value)
    return row


def group_rows(projection: Projection, *, training_id, iteration_id, data_id) -> np.ndarray:
    """The rows of one group, by ascending reward (no reward last): found by its packed key in the
    group index (a binary search), not by a pass over every row."""
    index = group_index(projection)
    key = 0
    for name, value in zip(GROUP_FIELDS, (training_id, iteration_id, data_id), strict=True):
        labels = projection.column(name).keys()[1]
        code = len(labels) if value is None else _code_of(labels, value)
        if code is None:
            return np.empty(0, dtype=np.int64)
        key = key * (len(labels) + 1) + code
    number = int(np.searchsorted(index.keys, key))
    if number >= len(index.keys) or index.keys[number] != key:
        return np.empty(0, dtype=np.int64)
    return index.order[index.starts[number] : index.starts[number + 1]]


def group_summary(projection: Projection, rows: np.ndarray, *, k: int = 1) -> dict:
    """One group's measures and flags (as in the group list) from its rows, which come by reward."""
    measured = _measured(projection, rows, np.zeros(len(rows), dtype=np.int64))
    if not len(measured.size):
        return {}
    row = _group_row(projection, measured, _group_measures(measured, k), 0)
    return {name: value for name, value in row.items() if name not in GROUP_FIELDS}


def _code_of(labels: list, value) -> int | None:
    place = bisect.bisect_left(labels, value)
    return place if place < len(labels) and labels[place] == value else None


# --- histograms and mixes ----------------------------------------------------------------------

MAX_BINS = 24


@dataclass(frozen=True)
class Bin:
    low: float
    high: float  # inclusive: the largest value the bin holds
    count: int
    exact: bool  # one value: low == high


def histogram(projection: Projection, *, name: str, mask: np.ndarray | None, bins: int = MAX_BINS) -> list[Bin]:
    """Counts of `name`'s values among the selected rows. Each bin is an inclusive [low, high] range
    a list filter can state exactly: one bin per value when there are few, else equal widths whose
    upper bound is the largest number below the next bin's start (integers: whole ranges)."""
    values = _floats(projection, name)
    values = values if mask is None else values[mask]
    values = values[~np.isnan(values)]
    if not len(values):
        return []
    # Few distinct values (rewards of 0, 0.5, 1; steps 1-20) get a bin each; a sample says when there
    # are many, without sorting them all.
    if fields.get(name).kind is Kind.INT and values.max() - values.min() < bins:
        start = int(values.min())
        per = np.bincount((values - start).astype(np.intp))
        return [Bin(float(start + i), float(start + i), int(c), True) for i, c in enumerate(per.tolist()) if c]
    sample = values[:: max(1, len(values) // 2000)]
    distinct = np.unique(sample) if len(np.unique(sample)) > bins else np.unique(values)
    if len(distinct) <= bins:
        counts = np.searchsorted(distinct, values)
        per = np.bincount(counts, minlength=len(distinct))
        return [Bin(float(v), float(v), int(c), True) for v, c in zip(distinct, per, strict=True)]
    low, high = float(values.min()), float(values.max())
    integer = fields.get(name).kind is Kind.INT
    if integer:
        width = max(1, math.ceil((high - low + 1) / bins))
        edges = np.arange(low, high + width + 1, width, dtype=np.float64)
    else:
        edges = np.linspace(low, high, bins + 1)
    places = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    per = np.bincount(places, minlength=len(edges) - 1)
    found = []
    for index in range(len(edges) - 1):
        start = float(edges[index])
        last = index == len(edges) - 2
        if integer:
            stop = min(float(edges[index + 1] - 1), high)
        else:
            stop = high if last else float(np.nextafter(edges[index + 1], -np.inf))
        found.append(Bin(start, stop, int(per[index]), False))
    return found


@dataclass(frozen=True)
class Pairs:
    """Selected rows as (outer value, inner value) elements: a row counts once per pair of values."""

    rows: np.ndarray
    outer: np.ndarray
    inner: np.ndarray
    outer_labels: list  # with None (no value) last
    inner_labels: list

    def counts(self, weights: np.ndarray | None = None) -> np.ndarray:
        width = len(self.inner_labels)
        flat = np.bincount(self.outer * width + self.inner, weights=weights, minlength=len(self.outer_labels) * width)
        return flat.reshape(len(self.outer_labels), width)


def pairs(
    projection: Projection, *, outer: str, inner: str, mask: np.ndarray | None, buckets: int | None = None
) -> Pairs:
    """With `buckets`, whichever of the two keys is a number with more values is cut into ranges
    (labels: (first, last) value)."""
    first = key_elements(projection, outer, selected_rows(projection, mask))
    second = key_elements(projection, inner, first.rows)
    # Each outer element became one inner element per value of its row (at least one).
    column = projection.column(inner)
    codes = first.codes
    if isinstance(column, ListColumn):
        codes = np.repeat(codes, np.maximum(np.diff(column.offsets)[first.rows], 1))
    outer_codes, outer_labels = _bucketed(projection, outer, buckets, mask, codes, first.labels)
    inner_codes, inner_labels = _bucketed(projection, inner, buckets, mask, second.codes, second.labels)
    return Pairs(second.rows, outer_codes, inner_codes, [*outer_labels, None], [*inner_labels, None])


def _bucketed(projection: Projection, by: str, buckets: int | None, mask, codes: np.ndarray, labels: list):
    bucketing = _bucketing(projection, by, buckets, mask)
    if bucketing is None:
        return codes.astype(np.intp), labels
    return bucketing.of_code[codes], bucketing.ranges


def mix(
    projection: Projection, *, by: str, of: str, mask: np.ndarray | None, buckets: int | None = None
) -> tuple[list, list, np.ndarray]:
    """Rows per (value of `by`, value of `of`) among the selected rows: `by`'s values and `of`'s values
    (no value last in both), and the counts, one row per `by` value."""
    found = pairs(projection, outer=by, inner=of, mask=mask, buckets=buckets)
    return found.outer_labels, found.inner_labels, found.counts()


def curves(
    projection: Projection, *, split: str, by: str, mask: np.ndarray | None, buckets: int | None = None
) -> list[dict]:
    """Per value of `split` (no value last) with rows, the points of `by` it has, in order: count,
    reward mean and success rate (the small curves of a dashboard; several series on one chart).
    Unfiltered answers are kept until the annotations change."""
    if mask is None:
        return _per_annotations(
            projection,
            ("curves", split, by, buckets),
            lambda: _curves(projection, split=split, by=by, mask=None, buckets=buckets),
        )
    return _curves(projection, split=split, by=by, mask=mask, buckets=buckets)


def _curves(projection: Projection, *, split: str, by: str, mask: np.ndarray | None, buckets: int | None) -> list[dict]:
    found = pairs(projection, outer=split, inner=by, mask=mask, buckets=buckets)
    count = found.counts()
    rewards = projection.column(REWARD)
    rewarded = found.counts(rewards.presence()[found.rows])
    total = found.counts(rewards.filled()[found.rows])
    flags = projection.column(SUCCESS).values[found.rows]
    successes = found.counts((flags == 1).astype(np.float64))
    judged = found.counts((flags >= 0).astype(np.float64))
    means, rates = _ratio(total, rewarded), _ratio(successes, judged)
    series = []
    for outer in np.flatnonzero(count.sum(axis=1)).tolist():
        points = np.flatnonzero(count[outer])
        series.append(
            {
                "key": found.outer_labels[outer],
                "count": int(count[outer].sum()),
                "points": [
                    {"key": found.inner_labels[i], "count": int(count[outer, i]),
                     "reward_mean": _number(means[outer, i]), "success_rate": _number(rates[outer, i])}
                    for i in points.tolist()
                ],
            }
        )  # fmt: skip
    return series


# --- questions across training ------------------------------------------------------------------


def question_changes(
    projection: Projection,
    *,
    a: np.ndarray | None,
    b: np.ndarray | None,
    ordering: tuple[str, bool] = ("success_delta", False),
    min_count: int = 1,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict], int]:
    """Per data id with at least `min_count` rows on both sides (`a`, `b`: the rows of each), its
    success rate and mean reward on each side and the change (b - a); sorted by `ordering` (the
    default: the largest drop in success first), ties by data id; one page, and how many there are."""
    column = projection.column("data_id")
    codes, labels = _row_keys(column)
    size = len(labels) + 1
    codes = codes.astype(np.intp)
    rewards = projection.column(REWARD)
    flags = projection.column(SUCCESS).values
    sides = []
    for mask in (a, b):
        picked = codes if mask is None else codes[mask]

        def pick(values: np.ndarray, mask=mask) -> np.ndarray:
            return values if mask is None else values[mask]

        count = np.bincount(picked, minlength=size)
        rewarded = np.bincount(picked, weights=pick(rewards.presence()), minlength=size)
        total = np.bincount(picked, weights=pick(rewards.filled()), minlength=size)
        side_flags = pick(flags)
        successes = np.bincount(picked, weights=side_flags == 1, minlength=size)
        judged = np.bincount(picked, weights=side_flags >= 0, minlength=size)
        sides.append((count, _ratio(total, rewarded), _ratio(successes, judged)))
    (a_count, a_reward, a_success), (b_count, b_reward, b_success) = sides
    both = np.flatnonzero((a_count >= min_count) & (b_count >= min_count))
    measures = {
        "a_count": a_count[both].astype(np.float64),
        "b_count": b_count[both].astype(np.float64),
        "success_delta": (b_success - a_success)[both],
        "reward_delta": (b_reward - a_reward)[both],
        "data_id": both.astype(np.float64),  # codes are in data id order
    }
    name, descending = ordering
    values = measures[name]
    order = np.lexsort([both, -values if descending else values, np.isnan(values)])  # nulls last, ties by id
    page = both[order][offset : offset + limit]
    rows = [
        {
            "data_id": labels[code] if code < len(labels) else None,
            "a_count": int(a_count[code]), "b_count": int(b_count[code]),
            "a_success_rate": _number(a_success[code]), "b_success_rate": _number(b_success[code]),
            "success_delta": _number(b_success[code] - a_success[code]),
            "a_reward_mean": _number(a_reward[code]), "b_reward_mean": _number(b_reward[code]),
            "reward_delta": _number(b_reward[code] - a_reward[code]),
        }
        for code in page.tolist()
    ]  # fmt: skip
    return rows, len(both)


# --- pivot ------------------------------------------------------------------------------------


def pivot(projection: Projection, *, rows_by: str, columns_by: str, mask: np.ndarray | None, buckets: int) -> dict:
    """Rows: the values of `rows_by` (no value last); columns: `columns_by` (a number: iteration) cut
    into at most `buckets` equal ranges of whole numbers; per cell the count, the mean reward and the
    success rate. Each bucket is an inclusive (low, high) range."""
    found = pairs(projection, outer=rows_by, inner=columns_by, mask=mask)
    # Ranges over the values the selected rows hold (a filter on iterations narrows the columns).
    bucketing = _bucketing(projection, columns_by, buckets, mask, always=True)
    if bucketing is None:
        return {"rows": found.outer_labels, "buckets": [], "count": [], "reward_mean": [], "success_rate": []}
    width_all = len(bucketing.ranges) + 1  # the last column: no value
    inner = bucketing.of_code[found.inner]
    combined = found.outer * width_all + inner
    size = len(found.outer_labels) * width_all

    def per_cell(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(combined, weights=weights, minlength=size).reshape(len(found.outer_labels), width_all)

    rewards = projection.column(REWARD)
    flags = projection.column(SUCCESS).values[found.rows]
    count = per_cell(None)
    reward_mean = _ratio(per_cell(rewards.filled()[found.rows]), per_cell(rewards.presence()[found.rows]))
    success_rate = _ratio(per_cell((flags == 1).astype(np.float64)), per_cell((flags >= 0).astype(np.float64)))
    return {
        "rows": found.outer_labels,
        "buckets": bucketing.ranges,
        "count": count[:, :-1].tolist(),
        "reward_mean": [_nullable(row) for row in reward_mean[:, :-1]],
        "success_rate": [_nullable(row) for row in success_rate[:, :-1]],
    }


def extremes(projection: Projection, *, mask: np.ndarray | None, min_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Per GRPO group among `mask`'s rows (with a reward): the positions of its lowest and highest
    reward, for the groups whose two differ by at least `min_gap` (and by more than nothing)."""
    index = group_index(projection)
    rewards = projection.column(REWARD).floats()
    order = index.order
    keep = ~np.isnan(rewards[order])
    if mask is not None:
        keep &= mask[order]
    order = order[keep]
    if not len(order):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    numbers = index.numbers[order]
    starts = np.flatnonzero(np.concatenate([[True], numbers[1:] != numbers[:-1]]))
    stops = np.concatenate([starts[1:], [len(order)]]) - 1
    low, high = order[starts], order[stops]  # the group order is by reward, ascending, within a group
    gap = rewards[high] - rewards[low]
    wanted = (gap >= min_gap) & (gap > 0)
    return low[wanted], high[wanted]
