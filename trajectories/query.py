"""The one query-string parser shared by the API and the HTML pages.

`parse_query(request.GET)` validates every parameter against the field catalogue and returns a
`TrajectoryQuery`: plain data the store evaluates. A page URL's parameters work against the API
unchanged. Which parameters exist follows from each field's `filter` in `trajectories.fields`:

    page, page_size           page number (1-based) and size (1-1000, default 50)
    ordering                  comma-separated sortable fields, "-" for descending (default: -created_at)
    search                    case-insensitive substring of the fields marked `searched`
    q, regex                  words, phrases or a pattern inside the steps (trajectories.textquery);
                              with `q`, `ordering=relevance` (the default then) ranks by match
    EXACT      name=v         exact; "*" is a wildcard; repeat the parameter for "any of"
    ANY_OF     name=v         any of these values (a list field: has any of them)
    RANGE      name=v         exact value (repeat for any of); name_min / name_max inclusive
    BOOLEAN    name=true      true/false (a field that may be unjudged also "null")
    CONTAINS   name=text      contains, case-insensitive
    name_empty=true|false     nullable text and list fields: no value (null, "" or no items) or some
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trajectories import fields as catalogue
from trajectories.fields import EMPTY_SUFFIX, MAX_SUFFIX, MIN_SUFFIX, Filter, Kind
from trajectories.textquery import REGEX_VAR, RELEVANCE, TEXT_VAR, TextError, TextQuery, parse_text
from trajectories.textquery import describe as describe_text

PAGE_VAR = "page"
PAGE_SIZE_VAR = "page_size"
ORDERING_VAR = "ordering"
SEARCH_VAR = "search"
KEY_PARAM = catalogue.get(catalogue.KEY).param

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_ORDERING = (("created_at", True),)
MAX_VALUE_LENGTH = 1000
MAX_VALUES = 500
_INT64_LIMIT = 2**63

SORT_FIELDS = catalogue.SORTABLE
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
    """EXACT and ANY_OF: a row matches any of the values (`*` patterns only for EXACT)."""

    exact: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumberMatch:
    values: tuple[float, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class BoolMatch:
    value: bool | None  # None: not judged (TRISTATE fields only)


@dataclass(frozen=True)
class ContainsMatch:
    text: str


@dataclass(frozen=True)
class EmptyMatch:
    empty: bool  # True: rows with no value; False: rows with one


Match = TextMatch | NumberMatch | BoolMatch | ContainsMatch | EmptyMatch


@dataclass(frozen=True)
class TrajectoryQuery:
    """`filters` holds the conditions, all of which a row meets: (field name, match) pairs, at most
    one value match and one "is empty" match per field, sorted so that equal questions are equal."""

    filters: tuple[tuple[str, Match], ...] = ()
    search: str | None = None
    text: TextQuery | None = None
    ordering: tuple[tuple[str, bool], ...] = DEFAULT_ORDERING
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    @classmethod
    def where(cls, **matches: Match | bool | str) -> TrajectoryQuery:
        """A query from code: `where(is_bookmarked=True, agent_name="a")` (page and ordering default)."""
        return cls(filters=tuple(sorted((name, _match_of(name, value)) for name, value in matches.items())))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def filter_key(self) -> tuple:
        """Everything that decides which rows match (not order or page): for counts and caches."""
        return (self.filters, self.search, self.text)

    @property
    def is_filtered(self) -> bool:
        return bool(self.filters) or bool(self.search) or self.text is not None

    @property
    def by_relevance(self) -> bool:
        return self.ordering[0][0] == RELEVANCE

    def matches(self, name: str) -> list[Match]:
        return [match for field_name, match in self.filters if field_name == name]

    def replace(self, **changes) -> TrajectoryQuery:
        return TrajectoryQuery(**{**self.__dict__, **changes})


def _match_of(name: str, value) -> Match:
    if isinstance(value, Match):
        return value
    kind = catalogue.get(name).filter
    if kind is Filter.BOOLEAN:
        return BoolMatch(value)
    if kind is Filter.CONTAINS:
        return ContainsMatch(value)
    if kind is Filter.RANGE:
        return NumberMatch(values=(value,))
    return TextMatch(exact=(value,))


def parse_query(params, *, allow: frozenset[str] = frozenset()) -> TrajectoryQuery:
    """Validate a QueryDict (or dict of lists) into a TrajectoryQuery; raises QueryError."""
    values = {key: _values(params, key) for key in params}
    unknown = [key for key in values if key not in _KNOWN and key not in allow and key not in PASS_THROUGH]
    if unknown:
        raise QueryError(unknown[0], "unknown parameter")
    filters: list[tuple[str, Match]] = []
    for field in catalogue.FILTERED:
        match = _PARSERS[field.filter](values, field)
        if match is not None:
            filters.append((field.name, match))
        if field.empty_param and values.get(field.empty_param):
            filters.append((field.name, EmptyMatch(_flag(values[field.empty_param], field.empty_param))))
    try:
        text = parse_text(_single(values, TEXT_VAR), _single(values, REGEX_VAR))
    except TextError as error:
        raise QueryError(error.parameter, error.message) from None
    return TrajectoryQuery(
        filters=tuple(sorted(filters, key=lambda pair: (pair[0], type(pair[1]).__name__))),
        search=_single(values, SEARCH_VAR),
        text=text,
        ordering=_ordering(_single(values, ORDERING_VAR), ranked=text is not None and text.ranked),
        page=_bounded_int(_single(values, PAGE_VAR), PAGE_VAR, default=1, low=1, high=10**9),
        page_size=_bounded_int(
            _single(values, PAGE_SIZE_VAR), PAGE_SIZE_VAR, default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE
        ),
    )


def parameters(field: catalogue.Field) -> tuple[str, ...]:
    """Every query parameter a field takes."""
    names = [field.param]
    if field.filter is Filter.RANGE:
        names += [field.param + MIN_SUFFIX, field.param + MAX_SUFFIX]
    if field.empty_param:
        names.append(field.empty_param)
    return tuple(names)


_KNOWN = frozenset(
    {PAGE_VAR, PAGE_SIZE_VAR, ORDERING_VAR, SEARCH_VAR, TEXT_VAR, REGEX_VAR}
    | {name for field in catalogue.FILTERED for name in parameters(field)}
)


def parse_filters(params, *, blank_is_empty: bool = True) -> TrajectoryQuery:
    """The rows a bulk action applies to, from a list URL's query string, stated strictly.

    The list page drops empty fields and ignores display parameters; a bulk action must not, or a
    typo ("agent_name=") silently widens it to every row. Here an empty value and a parameter that
    does not filter (page, ordering, columns, ...) are errors. Whether an unfiltered query may act on
    everything is the caller's decision (`TrajectoryQuery.is_filtered`). A value of spaces counts as
    empty too, unless `blank_is_empty` is False (a list page's own URL, where " " is what it filtered by).
    """
    for key in params:
        if key in DISPLAY_ONLY:
            raise QueryError(key, "does not choose trajectories; a bulk query takes filters only")
        raw = params.getlist(key) if hasattr(params, "getlist") else params[key]
        items = [raw] if isinstance(raw, str) else list(raw)
        if any((item.strip() if blank_is_empty else item) == "" for item in items):
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


def _single(values: dict[str, list[str]], key: str) -> str | None:
    items = values.get(key) or []
    if len(items) > 1:
        raise QueryError(key, "give this parameter once")
    return items[0] if items else None


def _text_match(values: dict[str, list[str]], field: catalogue.Field) -> TextMatch | None:
    items = values.get(field.param)
    if not items:
        return None
    if field.filter is Filter.ANY_OF:
        return TextMatch(exact=tuple(dict.fromkeys(items)))
    exact = tuple(dict.fromkeys(item for item in items if "*" not in item))
    patterns = tuple(dict.fromkeys(item for item in items if "*" in item))
    return TextMatch(exact=exact, patterns=patterns)


def _contains_match(values: dict[str, list[str]], field: catalogue.Field) -> ContainsMatch | None:
    text = _single(values, field.param)
    return ContainsMatch(text) if text else None


def _bool_match(values: dict[str, list[str]], field: catalogue.Field) -> BoolMatch | None:
    items = values.get(field.param)
    if not items:
        return None
    if len(items) > 1:
        raise QueryError(field.param, "give this parameter once")
    text = items[0].lower()
    if text == "null" and field.kind is Kind.TRISTATE:
        return BoolMatch(None)
    if text in _TRUE or text in _FALSE:
        return BoolMatch(text in _TRUE)
    allowed = "true, false or null" if field.kind is Kind.TRISTATE else "true or false"
    raise QueryError(field.param, f"{items[0]!r} is not {allowed}")


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _flag(items: list[str], parameter: str) -> bool:
    text = _single({parameter: items}, parameter).lower()
    if text not in _TRUE | _FALSE:
        raise QueryError(parameter, f"{text!r} is not true or false")
    return text in _TRUE


def wildcard_regex(pattern: str) -> str:
    """`*` matches any run of characters, newlines too; everything else is literal. Anchored at both ends."""
    return "(?s)^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def _number_match(values: dict[str, list[str]], field: catalogue.Field) -> NumberMatch | None:
    name = field.param
    exact = tuple(_number(item, field, name) for item in values.get(name, []))
    minimum = _single(values, name + MIN_SUFFIX)
    maximum = _single(values, name + MAX_SUFFIX)
    if not exact and minimum is None and maximum is None:
        return None
    low = _number(minimum, field, name + MIN_SUFFIX) if minimum is not None else None
    high = _number(maximum, field, name + MAX_SUFFIX) if maximum is not None else None
    if low is not None and high is not None and low > high:
        raise QueryError(name + MIN_SUFFIX, f"{minimum} is greater than {name + MAX_SUFFIX}={maximum}")
    return NumberMatch(values=tuple(dict.fromkeys(exact)), minimum=low, maximum=high)


_PARSERS = {
    Filter.EXACT: _text_match,
    Filter.ANY_OF: _text_match,
    Filter.RANGE: _number_match,
    Filter.BOOLEAN: _bool_match,
    Filter.CONTAINS: _contains_match,
}


def _number(text: str, field: catalogue.Field, parameter: str) -> float:
    if field.kind is Kind.TIME:
        return _timestamp_us(text, parameter)
    integer = field.kind is Kind.INT
    pattern = _INTEGER_TEXT if integer else _NUMBER_TEXT
    if not pattern.fullmatch(text):
        kind = "an integer" if integer else "a finite number"
        raise QueryError(parameter, f"{text!r} is not {kind}")
    if integer:
        value = int(text)
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            raise QueryError(parameter, f"{text[:40]!r} is out of range")
        return value
    value = float(text)
    if not math.isfinite(value):
        raise QueryError(parameter, f"{text[:40]!r} is not a finite number")
    return value


def _timestamp_us(text: str, parameter: str) -> int:
    """Unix seconds or ISO-8601 (UTC when no offset) → microseconds."""
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


def _ordering(text: str | None, *, ranked: bool = False) -> tuple[tuple[str, bool], ...]:
    """Sort keys; `ranked` (a `q` the index answers): by relevance unless told otherwise."""
    if not text:
        return ((RELEVANCE, True),) if ranked else DEFAULT_ORDERING
    ordering: list[tuple[str, bool]] = []
    for part in text.split(","):
        name = part.strip()
        descending = name.startswith("-")
        name = name.removeprefix("-")
        if name == RELEVANCE:
            if not ranked:
                raise QueryError(ORDERING_VAR, "relevance needs words in q to rank by")
            if len(text.split(",")) > 1:
                raise QueryError(ORDERING_VAR, "relevance is the only sort key (ties go by trajectory id)")
            return ((RELEVANCE, True),)
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
    """(parameter, value) pairs of the active filters: chips, "no results because…", bulk scopes."""
    pairs: list[tuple[str, Any]] = []
    for name, match in query.filters:
        param = catalogue.get(name).param
        if isinstance(match, TextMatch):
            pairs.extend((param, value) for value in match.exact + match.patterns)
        elif isinstance(match, NumberMatch):
            pairs.extend((param, value) for value in match.values)
            if match.minimum is not None:
                pairs.append((param + MIN_SUFFIX, match.minimum))
            if match.maximum is not None:
                pairs.append((param + MAX_SUFFIX, match.maximum))
        elif isinstance(match, BoolMatch):
            pairs.append((param, "null" if match.value is None else str(match.value).lower()))
        elif isinstance(match, ContainsMatch):
            pairs.append((param, match.text))
        else:
            pairs.append((param + EMPTY_SUFFIX, str(match.empty).lower()))
    if query.search:
        pairs.append((SEARCH_VAR, query.search))
    pairs.extend(describe_text(query.text))
    return pairs


def multi_valued(parameter: str) -> bool:
    """Whether a parameter may be repeated (a chip then removes one value, not all)."""
    field = catalogue.BY_PARAM.get(parameter)
    return field is not None and field.filter in {Filter.EXACT, Filter.ANY_OF, Filter.RANGE}
