"""Validation of canonical records: one error per bad field, named; rows shaped for the store."""

from __future__ import annotations

import pytest

from trajectories.importing.errors import RecordError
from trajectories.importing.validation import Defaults, validate
from trajectories.store import UNSET

DEFAULTS = Defaults(training_id="default-run", agent_name="default-agent", import_id="9", imported_at_us=123)


def _validate(record):
    return validate(record, source="f.jsonl:1", source_format="canonical", defaults=DEFAULTS)


def _errors(record) -> dict[str, str]:
    with pytest.raises(RecordError) as raised:
        _validate(record)
    return {error.field: error.reason for error in raised.value.errors}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("reward", "0.5", "expected a finite number, got a string"),
        ("reward", float("nan"), "nan is not a finite number"),
        ("reward", float("inf"), "inf is not a finite number"),
        ("toolcall_reward", True, "expected a finite number, got a boolean"),
        ("exec_time", -1, "must be >= 0, got -1"),
        ("iteration_id", -3, "expected an integer >= 0, got -3"),
        ("iteration_id", 2**64, f"expected an integer >= 0, got {2**64}"),
        ("epoch_id", "1", "expected an integer >= 0, got a string"),
        ("sample_id", 1.5, "expected an integer >= 0, got a number"),
        ("data_id", None, "missing (required)"),
        ("data_id", ["q"], "expected a string or integer, got a list"),
        ("data_id", "", "must be 1-512 printable characters"),
        ("trajectory_id", "a\nb", "must be 1-512 printable characters"),
        ("trajectory_id", "x" * 513, "must be 1-512 printable characters"),
        ("training_id", 5, "expected a string, got an integer"),
        ("steps", None, "missing (required)"),
        ("steps", {"role": "user"}, "expected a list, got an object"),
        ("created_at", "yesterday", "Invalid isoformat string: 'yesterday'"),
        ("created_at", [1], "expected unix seconds or an ISO-8601 string, got a list"),
        ("analysis", "good", "expected an object, got a string"),
        ("is_bookmarked", "yes", "expected a boolean, got a string"),
        ("tags", ["a", 1], "expected a list of strings"),
    ],
)
def test_bad_field_is_named_with_its_reason(record, field, value, reason):
    assert _errors(record(**{field: value}))[field] == reason


def test_step_problems_name_the_step(record):
    steps = [
        "hello",
        {"content": "no role"},
        {"role": "assistant", "tool_calls": "x"},
        {"role": "assistant", "tool_calls": [{"arguments": {}}]},
    ]
    assert _errors(record(steps=steps)) == {
        "steps[0]": "expected an object, got a string",
        "steps[1].role": "missing or not a string",
        "steps[2].tool_calls": "expected a list",
        "steps[3].tool_calls[0].name": "missing or not a string",
    }


def test_analysis_fields_are_checked(record):
    errors = _errors(record(analysis={"is_success": "yes", "category": 3}))
    assert errors == {
        "analysis.is_success": "expected a boolean, got a string",
        "analysis.category": "expected a string, got an integer",
    }


def test_every_bad_field_is_reported_at_once(record):
    assert set(_errors(record(reward="x", iteration_id=-1, data_id=None))) == {"reward", "iteration_id", "data_id"}


def test_openai_tool_calls_are_normalised(record):
    steps = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}],
        },
        {"role": "assistant", "tool_calls": [{"name": "bash", "arguments": "not json"}]},
    ]
    row = _validate(record(steps=steps)).row
    assert '"tool_calls":[{"id":"c","name":"search","arguments":{"q":"x"}}]' in row["steps"]
    assert '"arguments":"not json"' in row["steps"]
    assert row["tools"] == ["search", "bash"]
    assert row["tool_call_count"] == 2


def test_final_answer_is_last_assistant_text_including_parts(record):
    steps = [
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "more?"},
        {"role": "assistant", "content": [{"type": "text", "text": "final"}, {"type": "image"}]},
    ]
    assert _validate(record(steps=steps)).row["final_answer"] == "final"


def test_defaults_and_integral_floats(record):
    row = _validate(record(training_id=None, agent_name=None, iteration_id=4.0, data_id=17)).row
    assert (row["training_id"], row["agent_name"], row["iteration_id"], row["data_id"]) == (
        "default-run",
        "default-agent",
        4,
        "17",
    )
    assert (row["import_id"], row["imported_at"]) == ("9", 123)


def test_created_at_accepts_unix_seconds_and_iso(record):
    assert _validate(record(created_at=1.5)).row["created_at"] == 1_500_000
    assert _validate(record(created_at="1970-01-01T00:00:02+00:00")).row["created_at"] == 2_000_000
    assert _validate(record(created_at="1970-01-01T00:00:03")).row["created_at"] == 3_000_000
    assert _validate(record(created_at=None)).row["created_at"] == 123


def test_derived_id_is_stable_and_positional(record):
    first = record(trajectory_id=None)
    second = record(trajectory_id=None, reward=0.1)  # same position, other content
    other = record(trajectory_id=None, sample_id=2)
    ids = [_validate(r).row["trajectory_id"] for r in (first, second, other)]
    assert ids[0] == ids[1] != ids[2]
    assert len(ids[0]) == 32


def test_derived_id_falls_back_to_content(record):
    base = {"data_id": "q", "steps": [{"role": "user", "content": "a"}]}
    same = _validate(dict(base)).row["trajectory_id"]
    again = _validate(dict(reversed(list(base.items())))).row["trajectory_id"]
    changed = _validate({**base, "reward": 1.0}).row["trajectory_id"]
    assert same == again != changed


def test_annotation_only_when_record_carries_one(record):
    assert _validate(record(analysis=None, tags=None)).annotation is None
    annotation = _validate(record(is_bookmarked=True, tags=["a", "a", "b"])).annotation
    assert annotation.is_bookmarked is True
    assert annotation.add_tags == ("a", "b")
    assert (annotation.is_success, annotation.category) == (True, "correct")
    assert annotation.root_cause is UNSET  # "" is no root cause: it never clears one a user wrote
    assert annotation.notes is UNSET


def test_unknown_fields_and_analysis_extras_go_to_metadata(record):
    row = _validate(record(custom=1, analysis={"is_success": False, "judge": "gpt"})).row
    assert row["metadata"] == '{"custom":1,"analysis":{"judge":"gpt"}}'
