"""The one query-string parser shared by the API and the HTML pages.

`parse_query(request.GET)` validates every parameter against allow-lists and returns a
`TrajectoryQuery`: plain data the store evaluates. A page URL's parameters work against the API unchanged.

    page, page_size           page number (1-based) and size (1-1000, default 50)
    ordering                  comma-separated fields, "-" for descending (default: -created_at)
    search                    case-insensitive substring of trajectory_id, data_id, agent_name, training_id
    <text field>=v            exact; "*" is a wildcard; repeat the parameter for "any of"
    <number field>=v          exact value; repeat for "any of"
    <number field>_min/_max   inclusive range
    is_bookmarked, is_success true/false (is_success also "null": not judged yet)
    category=c                any of; root_cause=text: contains (case-insensitive)
    tag=t, tool=name          has any of these tags / used any of these tools
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PAGE_VAR = "page"
PAGE_SIZE_VAR = "page_size"
ORDERING_VAR = "ordering"
SEARCH_VAR = "search"
MIN_SUFFIX = "_min"
MAX_SUFFIX = "_max"
TAG_VAR = "tag"
TOOL_VAR = "tool"
CATEGORY_VAR = "category"
ROOT_CAUSE_VAR = "root_cause"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_ORDERING = (("created_at", True),)
MAX_VALUE_LENGTH = 1000
MAX_VALUES = 500
_INT64_LIMIT = 2**63

TEXT_FIELDS = ("trajectory_id", "data_id", "agent_name", "training_id")
FLOAT_FIELDS = ("reward", "toolcall_reward", "res_reward", "exec_time")
INT_FIELDS = ("step_count", "epoch_id", "iteration_id", "sample_id")
TIME_FIELDS = ("created_at",)
NUMBER_FIELDS = FLOAT_FIELDS + INT_FIELDS + TIME_FIELDS
BOOL_FIELDS = ("is_bookmarked", "is_success")
SORT_FIELDS = TEXT_FIELDS + NUMBER_FIELDS + BOOL_FIELDS + (CATEGORY_VAR,)
# Parameters a caller may pass through untouched: DRF's format suffix, the list page's column choice.
PASS_THROUGH = frozenset({"format", "columns"})
# Parameters that shape a page but choose no rows: refused where a query states a bulk action's scope.
DISPLAY_ONLY = PASS_THROUGH | {PAGE_VAR, PAGE_SIZE_VAR, ORDERING_VAR}
# Python's int() and float() also take "1_0", " 5 " and "nan": query values are plain decimal numbers.
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class QueryError(ValueError):
    """A bad parameter: `parameter` names it, the message says why (a 400, never a 500)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class TextMatch:
    """Exact values and `*` wildcard patterns; a row matches any of them."""

    exact: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumberMatch:
    values: tuple[float, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class TrajectoryQuery:
    text: dict[str, TextMatch] = field(default_factory=dict)
    numbers: dict[str, NumberMatch] = field(default_factory=dict)
    booleans: dict[str, bool | None] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    root_cause: str | None = None
    tags: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    search: str | None = None
    ordering: tuple[tuple[str, bool], ...] = DEFAULT_ORDERING
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def filter_key(self) -> tuple:
        """Everything that decides which rows match (not order or page): for counts and caches."""
        return (
            tuple(sorted(self.text.items())),
            tuple(sorted(self.numbers.items())),
            tuple(sorted(self.booleans.items())),
            self.categories,
            self.root_cause,
            self.tags,
            self.tools,
            self.search,
        )

    @property
    def is_filtered(self) -> bool:
        return any(self.filter_key())


def parse_query(params, *, allow: frozenset[str] = frozenset()) -> TrajectoryQuery:
    """Validate a QueryDict (or dict of lists) into a TrajectoryQuery; raises QueryError."""
    values = {key: _values(params, key) for key in params}
    unknown = [key for key in values if not _known(key) and key not in allow and key not in PASS_THROUGH]
    if unknown:
        raise QueryError(unknown[0], "unknown parameter")
    numbers = {name: match for name in NUMBER_FIELDS if (match := _number_match(values, name)) is not None}
    return TrajectoryQuery(
        text={name: _text_match(values[name], name) for name in TEXT_FIELDS if values.get(name)},
        numbers=numbers,
        booleans={name: _boolean(values[name], name) for name in BOOL_FIELDS if values.get(name)},
        categories=_distinct(values.get(CATEGORY_VAR, []), CATEGORY_VAR),
        root_cause=_single(values, ROOT_CAUSE_VAR),
        tags=_distinct(values.get(TAG_VAR, []), TAG_VAR),
        tools=_distinct(values.get(TOOL_VAR, []), TOOL_VAR),
        search=_single(values, SEARCH_VAR),
        ordering=_ordering(_single(values, ORDERING_VAR)),
        page=_bounded_int(_single(values, PAGE_VAR), PAGE_VAR, default=1, low=1, high=10**9),
        page_size=_bounded_int(
            _single(values, PAGE_SIZE_VAR), PAGE_SIZE_VAR, default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE
        ),
    )


def parse_filters(params) -> TrajectoryQuery:
    """The rows a bulk action applies to, from a list URL's query string, stated strictly.

    The list page drops empty fields and ignores display parameters; a bulk action must not, or a
    typo ("agent_name=") silently widens it to every row. Here an empty value and a parameter that
    does not filter (page, ordering, columns, ...) are errors. Whether an unfiltered query may act on
    everything is the caller's decision (`TrajectoryQuery.is_filtered`).
    """
    for key in params:
        if key in DISPLAY_ONLY:
            raise QueryError(key, "does not choose trajectories; a bulk query takes filters only")
        raw = params.getlist(key) if hasattr(params, "getlist") else params[key]
        items = [raw] if isinstance(raw, str) else list(raw)
        if any(item.strip() == "" for item in items):
            raise QueryError(key, "empty value; remove the parameter or give a value")
    return parse_query(params)


def _values(params, key: str) -> list[str]:
    raw = params.getlist(key) if hasattr(params, "getlist") else params[key]
    items = [raw] if isinstance(raw, str) else list(raw)
    if len(items) > MAX_VALUES:
        raise QueryError(key, f"at most {MAX_VALUES} values")
    for item in items:
        if len(item) > MAX_VALUE_LENGTH:
            raise QueryError(key, f"value longer than {MAX_VALUE_LENGTH} characters")
        if "\x00" in item:
            raise QueryError(key, "NUL character not allowed")
    return [item for item in items if item != ""]


def _known(key: str) -> bool:
    if key in {PAGE_VAR, PAGE_SIZE_VAR, ORDERING_VAR, SEARCH_VAR, CATEGORY_VAR, ROOT_CAUSE_VAR, TAG_VAR, TOOL_VAR}:
        return True
    if key in TEXT_FIELDS or key in NUMBER_FIELDS or key in BOOL_FIELDS:
        return True
    return any(key == name + suffix for name in NUMBER_FIELDS for suffix in (MIN_SUFFIX, MAX_SUFFIX))


def _single(values: dict[str, list[str]], key: str) -> str | None:
    items = values.get(key) or []
    if len(items) > 1:
        raise QueryError(key, "give this parameter once")
    return items[0] if items else None


def _distinct(items: list[str], key: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _text_match(items: list[str], name: str) -> TextMatch:
    exact = tuple(dict.fromkeys(item for item in items if "*" not in item))
    patterns = tuple(dict.fromkeys(item for item in items if "*" in item))
    return TextMatch(exact=exact, patterns=patterns)


def wildcard_regex(pattern: str) -> str:
    """`*` matches any run of characters, newlines too; everything else is literal. Anchored at both ends."""
    return "(?s)^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def _number_match(values: dict[str, list[str]], name: str) -> NumberMatch | None:
    exact = tuple(_number(item, name, name) for item in values.get(name, []))
    minimum = _single(values, name + MIN_SUFFIX)
    maximum = _single(values, name + MAX_SUFFIX)
    if not exact and minimum is None and maximum is None:
        return None
    low = _number(minimum, name, name + MIN_SUFFIX) if minimum is not None else None
    high = _number(maximum, name, name + MAX_SUFFIX) if maximum is not None else None
    if low is not None and high is not None and low > high:
        raise QueryError(name + MIN_SUFFIX, f"{minimum} is greater than {name + MAX_SUFFIX}={maximum}")
    return NumberMatch(values=tuple(dict.fromkeys(exact)), minimum=low, maximum=high)


def _number(text: str, name: str, parameter: str) -> float:
    if name in TIME_FIELDS:
        return _timestamp_us(text, parameter)
    pattern = _INTEGER_TEXT if name in INT_FIELDS else _NUMBER_TEXT
    if not pattern.fullmatch(text):
        kind = "an integer" if name in INT_FIELDS else "a finite number"
        raise QueryError(parameter, f"{text!r} is not {kind}")
    if name in INT_FIELDS:
        value = int(text)
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            raise QueryError(parameter, f"{text[:40]!r} is out of range")
        return value
    value = float(text)
    if not math.isfinite(value):
        raise QueryError(parameter, f"{text[:40]!r} is not a finite number")
    return value


def _timestamp_us(text: str, parameter: str) -> int:
    """created_at as unix seconds or ISO-8601 (UTC when no offset) → microseconds."""
    if _NUMBER_TEXT.fullmatch(text):
        seconds = float(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(parameter, f"{text!r} is not unix seconds or an ISO-8601 date/time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not math.isfinite(seconds) or abs(seconds) > 1e11:
        raise QueryError(parameter, f"{text!r} is out of range")
    return round(seconds * 1_000_000)


def _boolean(items: list[str], name: str) -> bool | None:
    if len(items) > 1:
        raise QueryError(name, "give this parameter once")
    text = items[0].lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    if text == "null" and name == "is_success":
        return None
    allowed = "true, false or null" if name == "is_success" else "true or false"
    raise QueryError(name, f"{items[0]!r} is not {allowed}")


def _ordering(text: str | None) -> tuple[tuple[str, bool], ...]:
    if not text:
        return DEFAULT_ORDERING
    ordering: list[tuple[str, bool]] = []
    for part in text.split(","):
        name = part.strip()
        descending = name.startswith("-")
        name = name.removeprefix("-")
        if name not in SORT_FIELDS:
            raise QueryError(ORDERING_VAR, f"cannot sort by {name!r}; choose from {', '.join(SORT_FIELDS)}")
        if any(existing == name for existing, _ in ordering):
            raise QueryError(ORDERING_VAR, f"{name!r} given twice")
        ordering.append((name, descending))
    return tuple(ordering)


def _bounded_int(text: str | None, parameter: str, *, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    if not _INTEGER_TEXT.fullmatch(text):
        raise QueryError(parameter, f"{text!r} is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise QueryError(parameter, f"must be between {low} and {high}")
    return value


def describe_filters(query: TrajectoryQuery) -> list[tuple[str, Any]]:
    """(parameter, value) pairs of the active filters, for "no results because…" messages."""
    pairs: list[tuple[str, Any]] = []
    for name, match in query.text.items():
        pairs.extend((name, value) for value in match.exact + match.patterns)
    for name, match in query.numbers.items():
        pairs.extend((name, value) for value in match.values)
        if match.minimum is not None:
            pairs.append((name + MIN_SUFFIX, match.minimum))
        if match.maximum is not None:
            pairs.append((name + MAX_SUFFIX, match.maximum))
    pairs.extend(query.booleans.items())
    pairs.extend((CATEGORY_VAR, value) for value in query.categories)
    if query.root_cause:
        pairs.append((ROOT_CAUSE_VAR, query.root_cause))
    pairs.extend((TAG_VAR, value) for value in query.tags)
    pairs.extend((TOOL_VAR, value) for value in query.tools)
    if query.search:
        pairs.append((SEARCH_VAR, query.search))
    return pairs
