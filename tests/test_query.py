"""The query-string parser: allow-lists, types and ranges, one message per bad parameter."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from trajectories.query import (
    DEFAULT_ORDERING,
    BoolMatch,
    ContainsMatch,
    EmptyMatch,
    NumberMatch,
    QueryError,
    TextMatch,
    TrajectoryQuery,
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
    filters = dict(query.filters)
    assert filters["agent_name"] == TextMatch(exact=("a",), patterns=("b*",))
    assert filters["reward"] == NumberMatch(minimum=0.5, maximum=1.0)
    assert filters["iteration_id"] == NumberMatch(values=(3, 4))
    assert filters["created_at"].minimum == 1_767_225_600_000_000
    assert (filters["is_success"], filters["is_bookmarked"]) == (BoolMatch(None), BoolMatch(True))
    assert (filters["category"], filters["root_cause"], filters["tags"], filters["tools"], query.search) == (
        TextMatch(exact=("x",)),
        ContainsMatch("loop"),
        TextMatch(exact=("t",)),
        TextMatch(exact=("search",)),
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


def test_a_category_star_is_a_value_not_a_wildcard():
    assert dict(_parse("category=a*b").filters)["category"] == TextMatch(exact=("a*b",))


def test_is_empty_filters_for_nullable_text_and_lists_only():
    query = _parse("agent_name_empty=true&tag_empty=false&training_id=run-1")
    assert query.matches("agent_name") == [EmptyMatch(True)]
    assert query.matches("tags") == [EmptyMatch(False)]
    assert ("agent_name_empty", "true") in describe_filters(query)
    for never_empty in ("trajectory_id_empty", "data_id_empty", "reward_empty"):
        with pytest.raises(QueryError, match="unknown parameter"):
            _parse(f"{never_empty}=true")
    with pytest.raises(QueryError, match="'maybe' is not true or false"):
        _parse("agent_name_empty=maybe")


def test_equal_questions_are_equal_queries():
    one = _parse("tool=a&agent_name=x&tool=b&reward_min=0.5")
    other = _parse("reward_min=0.5&agent_name=x&tool=a&tool=b")
    assert one == other
    assert one.filter_key() == TrajectoryQuery.where(agent_name="x").replace(filters=other.filters).filter_key()


def test_where_builds_queries_from_code():
    query = TrajectoryQuery.where(is_bookmarked=True, agent_name="a", root_cause="loop")
    assert dict(query.filters) == {
        "agent_name": TextMatch(exact=("a",)),
        "is_bookmarked": BoolMatch(True),
        "root_cause": ContainsMatch("loop"),
    }
