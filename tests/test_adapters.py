"""Real dumps from public agent projects import with the right counts, rewards and step counts."""

from __future__ import annotations

import json

import pytest

from trajectories.importing import adapters
from trajectories.importing.errors import Location, RecordError

from .conftest import REALDATA, all_rows

pytestmark = pytest.mark.django_db

# (path under tests/data/realdata, trajectories, min steps, max steps) as listed in SOURCES.md there.
REAL_FILES = [
    ("tau-bench/historical_trajectories/gpt-4o-airline.json", 200, 6, 62),
    ("tau-bench/few_shot_data/MockAirlineDomainEnv-few_shot.jsonl", 19, 7, 102),
    ("nemo-gym/resources_servers/example_multi_step/data/example_rollouts.jsonl", 5, 7, 9),
    ("nemo-gym/resources_servers/workplace_assistant/data/example_rollouts.jsonl", 5, 3, 5),
    ("nemo-gym/resources_servers/math_with_code/data/example_rollouts.jsonl", 5, 1, 55),
    ("nemo-gym/resources_servers/xlam_fc/data/example_rollouts.jsonl", 5, 6, 8),
    ("nemo-gym/resources_servers/swebench/data/example_rollouts.jsonl", 5, 0, 0),
    ("nemo-gym/responses_api_agents/openclaw_agent/data/example_rollout.jsonl", 5, 3, 24),
    ("nemo-gym/resources_servers/circle_click/data/example_rollouts.jsonl", 5, 2, 2),
    ("swe-agent/trajectories/demonstrations/function_calling_simple.traj", 1, 12, 12),
    ("swe-agent/trajectories/demonstrations/ctf/misc/networking_1.traj", 1, 4, 4),
    ("swe-agent/trajectories/demonstrations/ctf/crypto/katy.traj", 1, 18, 18),
    (
        "swe-agent/trajectories/demonstrations/human_thought__swe-bench-HumanEvalFix-python__lcb__t-0.00__p-0.95__"
        "c-4.00__install-0/humanevalfix-python-0.traj",
        1, 5, 5,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "count", "min_steps", "max_steps"),
    REAL_FILES,
    ids=[f[0].split("/")[0] + ":" + f[0].rsplit("/", 3)[-3] for f in REAL_FILES],
)
def test_real_dump_imports_with_right_counts(store, run_import, name, count, min_steps, max_steps):
    _out, err, error = run_import(REALDATA / name)
    assert error is None, err
    assert store.count() == count
    rows = all_rows(store)
    assert min(row["step_count"] for row in rows) == min_steps
    assert max(row["step_count"] for row in rows) == max_steps


def test_tau_bench_rewards_and_positions(store, run_import):
    path = REALDATA / "tau-bench/historical_trajectories/gpt-4o-airline.json"
    run_import(path)
    source = json.loads(path.read_text())
    rows = {(row["data_id"], row["sample_id"]): row for row in all_rows(store)}
    for item in source:
        row = rows[(str(item["task_id"]), item["trial"])]
        assert row["reward"] == item["reward"]
        assert row["step_count"] == len(item["traj"])
    stored = store.get(trajectory_id=rows[("0", 0)]["trajectory_id"])
    assert json.loads(stored["metadata"])["info"] == source[0]["info"]
    assert stored["source_format"] == "chat"


def test_tau_bench_tool_calls_are_found(store, run_import):
    run_import(REALDATA / "tau-bench/historical_trajectories/gpt-4o-airline.json")
    rows = all_rows(store)
    assert sum(row["tool_call_count"] for row in rows) > 200
    assert any("get_user_details" in row["tools"] for row in rows)


def test_nemo_gym_rewards_tools_and_groups(store, run_import):
    path = REALDATA / "nemo-gym/resources_servers/example_multi_step/data/example_rollouts.jsonl"
    run_import(path)
    source = [json.loads(line) for line in path.read_text().splitlines()]
    rows = sorted(
        (store.get(trajectory_id=row["trajectory_id"]) for row in all_rows(store)), key=lambda row: row["source"]
    )
    assert [row["reward"] for row in rows] == [item["reward"] for item in source]
    assert [row["step_count"] for row in rows] == [len(item["response"]["output"]) for item in source]
    assert all("get_synonym_value" in row["tools"] for row in rows)
    assert rows[0]["agent_name"] == source[0]["response"]["model"]
    full = store.get(trajectory_id=rows[0]["trajectory_id"])
    steps = json.loads(full["steps"])
    assert steps[0]["tool_calls"][0]["arguments"] == {"synonym": "Blazing"}
    assert steps[1] == {
        "role": "tool",
        "tool_call_id": steps[0]["tool_calls"][0]["id"],
        "content": '{"synonym_value": 711}',
        "type": "function_call_output",
    }
    assert "responses_create_params" in json.loads(full["metadata"])


def test_swe_agent_entries_become_steps_with_actions(store, run_import):
    run_import(REALDATA / "swe-agent/trajectories/demonstrations/ctf/misc/networking_1.traj")
    row = all_rows(store)[0]
    full = store.get(trajectory_id=row["trajectory_id"])
    steps = json.loads(full["steps"])
    assert row["data_id"] == "networking_1"
    assert all(step["role"] == "assistant" and "observation" in step for step in steps)
    assert row["tool_call_count"] == 4
    assert "history" in json.loads(full["metadata"])


def test_detect_names_each_shape():
    assert adapters.detect({"steps": []}) == adapters.CANONICAL
    assert adapters.detect({"messages": []}) == adapters.CHAT
    assert adapters.detect([{"role": "user"}]) == adapters.CHAT
    assert adapters.detect({"response": {"output": []}}) == adapters.RESPONSES
    assert adapters.detect({"trajectory": []}) == adapters.SWE_AGENT
    assert adapters.detect({"messages_display": "user: hi"}) == adapters.MESSAGES_DISPLAY
    with pytest.raises(RecordError, match="unrecognised shape"):
        adapters.detect({"foo": 1})
    with pytest.raises(RecordError, match="expected a JSON object, got a string"):
        adapters.detect("text")


def test_forced_format_reports_wrong_shape():
    with pytest.raises(RecordError, match=r"response\.output"):
        adapters.to_canonical({"steps": []}, Location("f", 1), format_name=adapters.RESPONSES)


def test_chat_question_hash_groups_samples_of_one_question():
    first = adapters.chat([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], Location("f", 1))
    second = adapters.chat(
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]}, Location("f", 2)
    )
    assert first["data_id"] == second["data_id"]
    assert first["data_id"].startswith("q-")
