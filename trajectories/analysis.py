"""The questions of training-step analytics, parsed from a list URL plus their own parameters.

    by=<grouping key>                stats: what to split by (a field marked `group` in the catalogue)
    zero_signal|all_failed|all_passed|high_spread=true|false
                                     groups: keep the groups with (or without) that flag
    ordering=<group field>,...       groups: "-" for descending (default: run, iteration, data id)
    k=<n>                            groups: pass@k (default 1)

Every other parameter is a list parameter (`parse_query`): stats and groups cover exactly the rows
the same list shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from trajectories import fields
from trajectories.query import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_VALUE_LENGTH,
    ORDERING_VAR,
    PAGE_SIZE_VAR,
    PAGE_VAR,
    QueryError,
    TrajectoryQuery,
    parse_query,
)

BY_VAR = "by"
BUCKETS_VAR = "buckets"
MAX_BUCKETS = 1000
K_VAR = "k"
FLAGS = ("zero_signal", "all_failed", "all_passed", "high_spread")
GROUP_KEY = ("training_id", "iteration_id", "data_id")
GROUP_SORTS = (*GROUP_KEY, "size", "reward_mean", "reward_std", "reward_min", "reward_max", "successes", "pass_at_k")
DEFAULT_BY = "iteration_id"
MAX_K = 64
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


@dataclass(frozen=True)
class GroupQuery:
    """Which GRPO groups of the rows `rows` selects, in which order, which page."""

    rows: TrajectoryQuery
    flags: tuple[tuple[str, bool], ...] = ()
    ordering: tuple[tuple[str, bool], ...] = ()  # empty: by (run, iteration, data id)
    k: int = 1
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def key(self) -> tuple:
        return (self.rows.filter_key(), self.flags, self.ordering, self.k, self.page, self.page_size)


def rows_of(by: str, value) -> list[tuple[str, str]] | None:
    """List parameters that select exactly the rows whose `by` is `value` (None: no value); None when
    no list filter can say it."""
    field = fields.get(by)
    if value is None:
        return [(field.empty_param, "true")] if field.empty_param else None
    if isinstance(value, str) and not listable(value, exact=field.filter is fields.Filter.EXACT):
        return None
    return [(field.param, str(value))]


def listable(value: str, *, exact: bool = True) -> bool:
    """Whether a list URL can ask for exactly this text: the list drops "" (no filter), refuses NUL and
    values over its length, and reads "*" as a wildcard in an exact filter."""
    return value != "" and "\x00" not in value and len(value) <= MAX_VALUE_LENGTH and not (exact and "*" in value)


def link(path: str, *groups: list[tuple[str, str]] | None) -> str | None:
    """`path?` with the parameter groups joined (a later one replaces an earlier one's parameter, see
    `narrowed`); None when any group is None (rows no list URL can select exactly)."""
    joined: list[tuple[str, str]] = []
    for group in groups:
        joined = narrowed(joined, group)
        if joined is None:
            return None
    return f"{path}?{urlencode(joined)}" if joined else path


def rows_of_group(row: dict) -> list[tuple[str, str]] | None:
    """List parameters that select exactly one GRPO group's rows."""
    found: list[tuple[str, str]] = []
    for name in GROUP_KEY:
        params = rows_of(name, row[name])
        if params is None:
            return None
        found += params
    return found


@dataclass(frozen=True)
class ChangeQuery:
    """Which questions moved between side a and side b (each: the shared rows plus its own filters)."""

    rows: TrajectoryQuery
    a: TrajectoryQuery
    b: TrajectoryQuery
    ordering: tuple[str, bool] = ("success_delta", False)
    min_count: int = 1
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def key(self) -> tuple:
        return (self.rows.filter_key(), self.a.filter_key(), self.b.filter_key(), self.ordering, self.min_count,
                self.page, self.page_size)  # fmt: skip


SIDES = ("a", "b")
CHANGE_SORTS = ("success_delta", "reward_delta", "a_count", "b_count", "data_id")
MIN_COUNT_VAR = "min_count"
CHANGE_OWN = frozenset({ORDERING_VAR, PAGE_VAR, PAGE_SIZE_VAR, MIN_COUNT_VAR})


def parse_changes(params) -> ChangeQuery:
    """`a.<list parameter>` and `b.<list parameter>` state the two sides (e.g. a.iteration_id_max=100,
    b.iteration_id_min=400; or a.training_id=x, b.training_id=y); other list parameters both share."""
    values = _lists(params)
    sides: dict[str, dict[str, list[str]]] = {side: {} for side in SIDES}
    shared: dict[str, list[str]] = {}
    for key, items in values.items():
        side, dot, name = key.partition(".")
        if dot and side in sides:
            sides[side][name] = items
        elif key not in CHANGE_OWN:
            shared[key] = items
    parsed = {}
    for side, side_values in sides.items():
        try:
            query = parse_query(side_values)
        except QueryError as error:
            raise QueryError(f"{side}.{error.parameter}", error.message) from error
        if not query.is_filtered:
            raise QueryError(f"{side}.", f"side {side} needs a filter, e.g. {side}.iteration_id_min=100")
        parsed[side] = query
    ordering = _one(values, ORDERING_VAR) or "success_delta"
    name = ordering.removeprefix("-")
    if name not in CHANGE_SORTS:
        raise QueryError(ORDERING_VAR, f"{name!r} does not sort questions; one of {', '.join(CHANGE_SORTS)}")
    return ChangeQuery(
        rows=parse_query(shared),
        a=parsed["a"],
        b=parsed["b"],
        ordering=(name, ordering.startswith("-")),
        min_count=whole_number(_one(values, MIN_COUNT_VAR), MIN_COUNT_VAR, default=1, high=10**6),
        **_paging(values),
    )


def parse_by(params) -> str:
    by = _one(_lists(params), BY_VAR) or DEFAULT_BY
    if by not in fields.GROUP_KEYS:
        raise QueryError(BY_VAR, f"{by!r} is not a grouping key; one of {', '.join(fields.GROUP_KEYS)}")
    return by


def parse_buckets(params) -> int | None:
    """`buckets=N`: a numeric key (iteration, epoch) in at most N ranges; none by default."""
    text = _one(_lists(params), BUCKETS_VAR)
    return None if text is None else whole_number(text, BUCKETS_VAR, default=1, high=MAX_BUCKETS)


def narrowed(shared: list[tuple[str, str]], extra: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
    """`shared` list parameters and `extra` ones (the rows of one key value, range or group, which lie
    inside what `shared` selects) together, as a list URL's parameters selecting exactly those rows.

    A parameter in both would mean "any of" the two: `extra`'s replaces `shared`'s (the value is one
    `shared` allows), except on a list field (tags, tools), where rows would need both values: no
    list URL says that, so None unless `shared` asked for that value alone."""
    if extra is None:
        return None
    given: dict[str, list[str]] = {}
    for name, value in shared:
        given.setdefault(name, []).append(value)
    for name, value in extra:
        field = fields.BY_PARAM.get(name)
        if name in given and field is not None and field.kind is fields.Kind.LIST and given[name] != [value]:
            return None
    replaced = {name for name, _ in extra}
    return [*((name, value) for name, value in shared if name not in replaced), *extra]


def rows_of_range(by: str, low: int, high: int) -> list[tuple[str, str]]:
    """List parameters selecting the rows whose `by` (a number) lies in [low, high]."""
    param = fields.get(by).param
    return [(f"{param}_min", str(low)), (f"{param}_max", str(high))]


def parse_stats(params) -> tuple[TrajectoryQuery, str]:
    """The rows (list parameters) and the grouping key of a stats question."""
    values = _lists(params)
    rows = parse_query({key: items for key, items in values.items() if key not in _STATS_OWN})
    return rows, parse_by(values)


def parse_groups(params) -> GroupQuery:
    values = _lists(params)
    rows = parse_query({key: items for key, items in values.items() if key not in GROUPS_OWN})
    flags = []
    for name in FLAGS:
        text = _one(values, name)
        if text:
            if text.lower() not in _TRUE | _FALSE:
                raise QueryError(name, f"{text!r} is not true or false")
            flags.append((name, text.lower() in _TRUE))
    return GroupQuery(
        rows=rows,
        flags=tuple(flags),
        ordering=_group_ordering(_one(values, ORDERING_VAR)),
        k=whole_number(_one(values, K_VAR), K_VAR, default=1, high=MAX_K),
        **_paging(values),
    )


def _paging(values: dict[str, list[str]]) -> dict[str, int]:
    """`page` and `page_size` of a paged analytics answer, bounded like the list's."""
    return {
        "page": whole_number(_one(values, PAGE_VAR), PAGE_VAR, default=1, high=10**9),
        "page_size": whole_number(_one(values, PAGE_SIZE_VAR), PAGE_SIZE_VAR, default=DEFAULT_PAGE_SIZE,
                                  high=MAX_PAGE_SIZE),
    }  # fmt: skip


def _group_ordering(text: str | None) -> tuple[tuple[str, bool], ...]:
    if not text:
        return ()
    ordering = []
    for part in text.split(","):
        name = part.strip().removeprefix("-")
        if name not in GROUP_SORTS:
            raise QueryError(ORDERING_VAR, f"{name!r} does not sort groups; one of {', '.join(GROUP_SORTS)}")
        ordering.append((name, part.strip().startswith("-")))
    return tuple(ordering)


def whole_number(text: str | None, name: str, *, default: int, high: int) -> int:
    """A plain decimal 1..high: ASCII digits only (superscript and full-width digits are refused)."""
    if not text:
        return default
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= high:
        raise QueryError(name, f"{text!r} is not a whole number from 1 to {high}")
    return int(text)


_DIGITS = re.compile(r"[0-9]{1,12}")


_STATS_OWN = frozenset({BY_VAR, BUCKETS_VAR, PAGE_VAR, PAGE_SIZE_VAR, ORDERING_VAR})
STATS_OWN = _STATS_OWN | {"format", "series"}  # parameters of a stats question that choose no rows
GROUPS_OWN = frozenset({*FLAGS, K_VAR, ORDERING_VAR, PAGE_VAR, PAGE_SIZE_VAR, "format"})


def _lists(params) -> dict[str, list[str]]:
    """A QueryDict or a dict of values or lists, as a dict of lists."""
    if hasattr(params, "getlist"):
        return {key: params.getlist(key) for key in params}
    return {key: [value] if isinstance(value, str) else list(value) for key, value in params.items()}


def _one(values: dict[str, list[str]], key: str) -> str | None:
    items = [item for item in values.get(key) or [] if item != ""]
    if len(items) > 1:
        raise QueryError(key, "give this parameter once")
    return items[0] if items else None
