"""Stats per grouping key and GRPO groups, through the API, against a brute-force computation of the
same generated records (known groups, nulls, equal-reward groups, unjudged samples)."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import orjson
import pytest
from rest_framework.test import APIClient

from trajectories import fields
from trajectories.demo import DemoShape, generate

pytestmark = pytest.mark.django_db

NUMBERS = ("reward", "toolcall_reward", "res_reward", "exec_time", "step_count", "tool_call_count")
REWARDS = ("reward", "toolcall_reward", "res_reward")
FILTERS = (
    [],
    [("agent_name", "qwen2.5-7b-instruct")],
    [("reward_min", "0.2"), ("iteration_id_max", "20")],
    [("is_success", "false")],
    [("tool", "python")],
    [("training_id_empty", "true")],
    [("category", "timeout"), ("category", "correct")],
)


def _records() -> list[dict]:
    records = list(generate(DemoShape(count=2400, group_size=4, questions_per_iteration=6, seed=5)))
    for index, item in enumerate(records):
        if index % 19 == 0:
            del item["reward"]
        if index % 37 == 0:
            del item["training_id"], item["agent_name"]
        if index % 11 == 0:
            item["analysis"] = {**item.get("analysis", {}), "is_success": None}
        if index % 41 == 0:
            del item["iteration_id"]
        if index % 13 == 0:
            item["tags"] = ["hard"] if index % 2 else ["hard", "review"]
        if index % 29 == 0 and "agent_name" in item:  # a group with two agents
            item["agent_name"] = "other-agent"
        if item["data_id"].endswith("3"):  # whole groups with one reward: no signal
            item["reward"] = 0.25
    return records


def _flat(item: dict) -> dict:
    analysis = item.get("analysis") or {}
    return {
        "trajectory_id": item["trajectory_id"],
        "data_id": item["data_id"],
        "training_id": item.get("training_id"),
        "agent_name": item.get("agent_name"),
        "epoch_id": item.get("epoch_id"),
        "iteration_id": item.get("iteration_id"),
        "import_id": None,
        "reward": item.get("reward"),
        "toolcall_reward": item.get("toolcall_reward"),
        "res_reward": item.get("res_reward"),
        "exec_time": item.get("exec_time"),
        "step_count": len(item["steps"]),
        "tool_call_count": sum(len(step.get("tool_calls", [])) for step in item["steps"]),
        "is_success": analysis.get("is_success"),
        "category": analysis.get("category"),
        "tags": item.get("tags", []),
        "tools": sorted({call["name"] for step in item["steps"] for call in step.get("tool_calls", [])}),
    }


@pytest.fixture(scope="module")
def dataset(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.conf import settings
    from django.core.management import call_command

    from trajectories.models import ImportJob
    from trajectories.store import reset_store

    records = _records()
    path = tmp_path_factory.mktemp("analytics") / "dump.jsonl"
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in records))
    previous = settings.TRAJSITE_DATA_DIR
    settings.TRAJSITE_DATA_DIR = str(path.parent / "lancedb")
    reset_store()
    with django_db_blocker.unblock():
        call_command("import_trajectories", str(path), "--no-progress", "--batch-size", "700")
        import_id = str(ImportJob.objects.latest("pk").pk)
        ImportJob.objects.all().delete()
    yield [{**_flat(item), "import_id": import_id} for item in records]
    settings.TRAJSITE_DATA_DIR = previous
    reset_store()


@pytest.fixture
def api(django_user_model, dataset):
    user = django_user_model.objects.create_user(username="stats", password="pw-stats-123", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def _matches(row: dict, params: list[tuple[str, str]]) -> bool:
    wanted = defaultdict(list)
    for name, value in params:
        wanted[name].append(value)
    for name, values in wanted.items():
        if name == "tool":
            ok = any(value in row["tools"] for value in values)
        elif name == "training_id_empty":
            ok = not row["training_id"]
        elif name == "is_success":
            ok = row["is_success"] is (values[0] == "true")
        elif name.endswith("_min"):
            value = row[name.removesuffix("_min")]
            ok = value is not None and value >= float(values[0])
        elif name.endswith("_max"):
            value = row[name.removesuffix("_max")]
            ok = value is not None and value <= float(values[0])
        else:
            ok = row[name] in values
        if not ok:
            return False
    return True


def _keys(row: dict, by: str) -> list:
    if by in ("tools", "tags"):
        return row[by] or [None]
    return [row[by]]


def _close(found, expected, context) -> None:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        assert found is None, context
    else:
        assert found == pytest.approx(expected, rel=1e-9, abs=1e-9), context


def _expected_stats(rows: list[dict], by: str) -> dict:
    split = defaultdict(list)
    for row in rows:
        for key in _keys(row, by):
            split[key].append(row)
    expected = {}
    for key, members in split.items():
        found = {"count": len(members)}
        for name in NUMBERS:
            values = [row[name] for row in members if row[name] is not None]
            found[f"{name}_mean"] = float(np.mean(values)) if values else None
            if name in REWARDS:
                for label, q in (("p10", 10), ("p50", 50), ("p90", 90)):
                    found[f"{name}_{label}"] = float(np.percentile(values, q)) if values else None
        judged = [row for row in members if row["is_success"] is not None]
        found["judged"] = len(judged)
        found["successes"] = sum(1 for row in judged if row["is_success"])
        found["success_rate"] = found["successes"] / len(judged) if judged else None
        groups = defaultdict(list)
        for row in members:
            if row["reward"] is not None:
                groups[(row["training_id"], row["iteration_id"], row["data_id"])].append(row["reward"])
        capable = [rewards for rewards in groups.values() if len(rewards) >= 2]
        found["groups"] = len(capable)
        found["zero_signal_groups"] = sum(1 for rewards in capable if min(rewards) == max(rewards))
        expected[key] = found
    return expected


@pytest.mark.parametrize("by", fields.GROUP_KEYS)
def test_stats_per_key_equal_brute_force(api, dataset, by):
    for params in FILTERS:
        response = api.get("/api/stats/", [("by", by), *params])
        assert response.status_code == 200, (by, params, response.content[:300])
        body = response.json()
        assert body["by"] == by
        expected = _expected_stats([row for row in dataset if _matches(row, params)], by)
        keys = [row["key"] for row in body["results"]]
        present = [key for key in keys if key is not None]
        assert present == sorted(present), "ordered by key"
        assert None not in keys[:-1], "no value comes last"
        assert set(keys) == set(expected), (by, params)
        for row in body["results"]:
            wanted = expected[row["key"]]
            for name, value in wanted.items():
                _close(row[name], value, (by, params, row["key"], name))
            share = wanted["zero_signal_groups"] / wanted["groups"] if wanted["groups"] else None
            _close(row["zero_signal_share"], share, (by, params, row["key"], "share"))


def test_every_stats_link_lists_exactly_its_rows(api, dataset):
    body = api.get("/api/stats/", {"by": "agent_name", "reward_min": "0.2"}).json()
    for row in body["results"]:
        listed = api.get(row["trajectories"] + "&page_size=1").json()
        assert listed["count"] == row["count"], row["key"]


def _expected_groups(rows: list[dict], k: int) -> list[dict]:
    split = defaultdict(list)
    for row in rows:
        split[(row["training_id"], row["iteration_id"], row["data_id"])].append(row)
    groups = []
    for (training_id, iteration_id, data_id), members in split.items():
        rewards = [row["reward"] for row in members if row["reward"] is not None]
        n, c = len(members), sum(1 for row in members if row["is_success"])
        judged = sum(1 for row in members if row["is_success"] is not None)
        k_here = min(k, n)
        groups.append(
            {
                "training_id": training_id,
                "iteration_id": iteration_id,
                "data_id": data_id,
                "size": n,
                "reward_mean": float(np.mean(rewards)) if rewards else None,
                "reward_std": float(np.std(rewards)) if rewards else None,
                "reward_min": min(rewards) if rewards else None,
                "reward_max": max(rewards) if rewards else None,
                "successes": c,
                "judged": judged,
                "pass_at_k": 1 - math.comb(n - c, k_here) / math.comb(n, k_here),
                "zero_signal": len(rewards) >= 2 and min(rewards) == max(rewards),
                "all_failed": judged == n and c == 0,
                "all_passed": c == n,
                "high_spread": len(rewards) >= 2 and max(rewards) - min(rewards) >= 0.5,
            }
        )
    return groups


def _group_key(group: dict) -> tuple:
    # Nulls last, like the list.
    return tuple((value is None, value if value is not None else 0) for value in
                 (group["training_id"], group["iteration_id"], group["data_id"]))  # fmt: skip


def _all_groups(api, params: list[tuple[str, str]]) -> tuple[list[dict], int]:
    found, page = [], 1
    while True:
        body = api.get("/api/groups/", [*params, ("page", str(page)), ("page_size", "1000")]).json()
        found += body["results"]
        if not body["next"]:
            return found, body["count"]
        page += 1


def test_groups_equal_brute_force_with_flags_and_pass_at_k(api, dataset):
    rng = random.Random(7)
    for params in FILTERS:
        k = rng.choice((1, 2, 4, 8))
        expected = sorted(_expected_groups([row for row in dataset if _matches(row, params)], k), key=_group_key)
        found, count = _all_groups(api, [*params, ("k", str(k))])
        assert count == len(expected) == len(found), params
        for got, wanted in zip(found, expected, strict=True):
            for name, value in wanted.items():
                if isinstance(value, bool | str) or value is None:
                    assert got[name] == value, (params, wanted, name)
                else:
                    _close(got[name], value, (params, wanted, name))
        for flag in ("zero_signal", "all_failed", "all_passed", "high_spread"):
            for wanted in (True, False):
                flagged, flagged_count = _all_groups(api, [*params, (flag, str(wanted).lower())])
                expected_keys = [_group_key(g) for g in expected if g[flag] is wanted]
                assert [_group_key(g) for g in flagged] == expected_keys, (params, flag, wanted)
                assert flagged_count == len(expected_keys)
    assert any(g["zero_signal"] for g in _expected_groups(dataset, 1)), "the data has groups with no signal"


def test_groups_sort_by_measures_with_key_as_tie_break(api, dataset):
    expected = sorted(_expected_groups(dataset, 1), key=_group_key)
    for ordering in ("-reward_std", "size,-reward_mean", "reward_min"):
        keys = []
        for part in reversed(ordering.split(",")):
            name = part.removeprefix("-")
            keys.append((name, part.startswith("-")))
        wanted = list(expected)
        for name, descending in keys:  # stable sorts, least significant first
            present = [g for g in wanted if g[name] is not None]
            missing = [g for g in wanted if g[name] is None]
            wanted = sorted(present, key=lambda g, n=name: g[n], reverse=descending) + missing
        found, _ = _all_groups(api, [("ordering", ordering)])
        # Ties keep key order in both: reverse=True in Python keeps ties in order too.
        assert [_group_key(g) for g in found] == [_group_key(g) for g in wanted], ordering


def test_each_group_links_to_exactly_its_samples(api, dataset):
    body = api.get("/api/groups/", {"page_size": "20", "training_id_empty": "false"}).json()
    assert body["results"]
    for group in body["results"]:
        if group["iteration_id"] is None:
            assert group["trajectories"] is None
            continue
        listed = api.get(group["trajectories"]).json()
        assert listed["count"] == group["size"]


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/stats/", {"by": "reward"}, "by"),
        ("/api/stats/", {"by": "x", "agent_name": "a"}, "by"),
        ("/api/groups/", {"ordering": "steps"}, "ordering"),
        ("/api/groups/", {"zero_signal": "maybe"}, "zero_signal"),
        ("/api/groups/", {"k": "0"}, "k"),
        ("/api/groups/", {"nonsense": "1"}, "nonsense"),
    ],
)
def test_bad_parameters_are_named(api, path, params, parameter):
    response = api.get(path, params)
    assert response.status_code == 400
    assert parameter in response.json()


def test_analytics_need_a_staff_login(client, dataset):
    for path in ("/api/stats/", "/api/groups/"):
        assert client.get(path).status_code in (401, 403)


def _side(rows: list[dict], data_id: str) -> tuple[int, float | None, float | None]:
    mine = [row for row in rows if row["data_id"] == data_id]
    rewards = [row["reward"] for row in mine if row["reward"] is not None]
    judged = [row["is_success"] for row in mine if row["is_success"] is not None]
    return (len(mine), float(np.mean(rewards)) if rewards else None,
            sum(judged) / len(judged) if judged else None)  # fmt: skip


@pytest.mark.parametrize(
    ("shared", "a", "b", "ordering"),
    [
        ([], [("a.iteration_id_max", "10")], [("b.iteration_id_min", "30")], "success_delta"),
        ([("agent_name", "qwen2.5-7b-instruct")], [("a.iteration_id_max", "20")], [("b.iteration_id_min", "21")],
         "-reward_delta"),
        ([], [("a.training_id", "grpo-qwen2.5-7b-math")], [("b.training_id_empty", "true")], "data_id"),
    ],
)  # fmt: skip
def test_question_changes_equal_brute_force(api, dataset, shared, a, b, ordering):
    found, page = [], 1
    while True:
        params = [*shared, *a, *b, ("ordering", ordering), ("page_size", "1000"), ("page", str(page))]
        response = api.get("/api/questions/changes/", params)
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        found += body["results"]
        if not body["next"]:
            break
        page += 1
    base = [row for row in dataset if _matches(row, shared)]
    side_a = [row for row in base if _matches(row, [(k[2:], v) for k, v in a])]
    side_b = [row for row in base if _matches(row, [(k[2:], v) for k, v in b])]
    expected = []
    for data_id in sorted({row["data_id"] for row in side_a} & {row["data_id"] for row in side_b}):
        (a_count, a_reward, a_success), (b_count, b_reward, b_success) = _side(side_a, data_id), _side(side_b, data_id)
        expected.append({
            "data_id": data_id, "a_count": a_count, "b_count": b_count, "a_reward_mean": a_reward,
            "b_reward_mean": b_reward, "a_success_rate": a_success, "b_success_rate": b_success,
            "success_delta": None if a_success is None or b_success is None else b_success - a_success,
            "reward_delta": None if a_reward is None or b_reward is None else b_reward - a_reward,
        })  # fmt: skip
    name, descending = ordering.removeprefix("-"), ordering.startswith("-")
    present = sorted((e for e in expected if e[name] is not None), key=lambda e: e[name], reverse=descending)
    wanted = present + [e for e in expected if e[name] is None]
    assert expected, "the sides share questions"
    assert body["count"] == len(expected)
    assert [row["data_id"] for row in found] == [row["data_id"] for row in wanted]
    for got, row in zip(found, wanted, strict=True):
        for key, value in row.items():
            if isinstance(value, str):
                assert got[key] == value
            else:
                _close(got[key], value, (ordering, row["data_id"], key))


def test_question_changes_need_both_sides(api, dataset):
    response = api.get("/api/questions/changes/", {"a.iteration_id_max": "3"})
    assert response.status_code == 400 and "b." in response.json()
    response = api.get("/api/questions/changes/", {"a.iteration_id_max": "x", "b.iteration_id_min": "3"})
    assert response.status_code == 400 and "a.iteration_id_max" in response.json()


@pytest.mark.parametrize("params", [[], [("agent_name", "qwen2.5-7b-instruct"), ("iteration_id_min", "10")]])
def test_stats_in_iteration_ranges_equal_brute_force(api, dataset, params):
    rows = [row for row in dataset if _matches(row, params)]
    iterations = sorted({row["iteration_id"] for row in rows if row["iteration_id"] is not None})
    low, high = iterations[0], iterations[-1]
    width = math.ceil((high - low + 1) / 7)
    body = api.get("/api/stats/", [*params, ("by", "iteration_id"), ("buckets", "7")]).json()
    expected = {}
    for row in rows:
        bucket = None if row["iteration_id"] is None else low + (row["iteration_id"] - low) // width * width
        expected.setdefault(bucket, []).append(row)
    keys = [*sorted(k for k in expected if k is not None), *([None] if None in expected else [])]
    assert [r["key"] for r in body["results"]] == keys
    for result in body["results"]:
        members = expected[result["key"]]
        if result["key"] is not None:
            assert result["key_max"] == min(result["key"] + width - 1, high)
            assert api.get(result["trajectories"] + "&page_size=1").json()["count"] == len(members)
        # The range's measures, recomputed over its rows as one key.
        merged = _expected_stats([{**m, "range": "all"} for m in members], "range")["all"]
        for name, value in merged.items():
            _close(result[name], value, (params, result["key"], name))
