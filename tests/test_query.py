"""The query-string parser: allow-lists, types and ranges, one message per bad parameter."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from trajectories.query import (
    DEFAULT_ORDERING,
    NumberMatch,
    QueryError,
    TextMatch,
    describe_filters,
    parse_query,
    wildcard_regex,
)


def _parse(text: str):
    return parse_query(QueryDict(text))


def test_defaults():
    query = _parse("")
    assert (query.page, query.page_size, query.ordering) == (1, 50, DEFAULT_ORDERING)
    assert not query.is_filtered


def test_filters_of_every_kind():
    query = _parse(
        "agent_name=a&agent_name=b*&reward_min=0.5&reward_max=1&iteration_id=3&iteration_id=4"
        "&is_success=null&is_bookmarked=true&category=x&root_cause=loop&tag=t&tool=search&search=Q"
        "&created_at_min=2026-01-01&ordering=-reward,trajectory_id&page=3&page_size=20"
    )
    assert query.text == {"agent_name": TextMatch(exact=("a",), patterns=("b*",))}
    assert query.numbers["reward"] == NumberMatch(minimum=0.5, maximum=1.0)
    assert query.numbers["iteration_id"] == NumberMatch(values=(3, 4))
    assert query.numbers["created_at"].minimum == 1_767_225_600_000_000
    assert query.booleans == {"is_success": None, "is_bookmarked": True}
    assert (query.categories, query.root_cause, query.tags, query.tools, query.search) == (
        ("x",),
        "loop",
        ("t",),
        ("search",),
        "Q",
    )
    assert query.ordering == (("reward", True), ("trajectory_id", False))
    assert (query.page, query.page_size, query.offset) == (3, 20, 40)
    assert ("reward_min", 0.5) in describe_filters(query)


@pytest.mark.parametrize(
    ("text", "parameter", "message"),
    [
        ("colour=red", "colour", "unknown parameter"),
        ("reward_min=high", "reward_min", "'high' is not a finite number"),
        ("reward=nan", "reward", "'nan' is not a finite number"),
        ("iteration_id=1.5", "iteration_id", "'1.5' is not an integer"),
        ("reward_min=1&reward_max=0", "reward_min", "1 is greater than reward_max=0"),
        ("ordering=colour", "ordering", "cannot sort by 'colour'"),
        ("ordering=reward,-reward", "ordering", "'reward' given twice"),
        ("page=0", "page", "must be between 1 and 1000000000"),
        ("page=x", "page", "'x' is not a whole number"),
        ("page_size=1001", "page_size", "must be between 1 and 1000"),
        ("page=1&page=2", "page", "give this parameter once"),
        ("is_bookmarked=maybe", "is_bookmarked", "'maybe' is not true or false"),
        ("is_bookmarked=null", "is_bookmarked", "'null' is not true or false"),
        ("created_at_min=yesterday", "created_at_min", "is not unix seconds or an ISO-8601 date/time"),
        ("data_id=" + "x" * 1001, "data_id", "value longer than 1000 characters"),
        ("data_id=a%00b", "data_id", "NUL character not allowed"),
    ],
)
def test_bad_parameters_are_named(text, parameter, message):
    with pytest.raises(QueryError) as raised:
        _parse(text)
    assert raised.value.parameter == parameter
    assert message in raised.value.message


def test_empty_values_are_ignored_and_format_passes():
    assert not _parse("agent_name=&reward_min=&format=json").is_filtered


def test_wildcard_regex_escapes_everything_but_star():
    assert wildcard_regex("a.b*c") == r"(?s)^a\.b.*c$"
    assert wildcard_regex("x'(*)") == r"(?s)^x'\(.*\)$"
