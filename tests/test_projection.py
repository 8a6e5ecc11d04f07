"""Property tests: for random filters, sorts and pages over a few thousand generated trajectories,
the API returns exactly what a brute-force Python filter and sort of the same records returns."""

from __future__ import annotations

import functools
import random
import re
from datetime import datetime
from urllib.parse import urlencode

import pytest
from django.http import QueryDict
from rest_framework.test import APIClient

from trajectories import reads
from trajectories.demo import DemoShape, generate
from trajectories.query import parse_query

pytestmark = pytest.mark.django_db

CASES = 250
TEXT = ("trajectory_id", "data_id", "agent_name", "training_id")
NUMBERS = (
    "reward",
    "toolcall_reward",
    "res_reward",
    "exec_time",
    "step_count",
    "tool_call_count",
    "epoch_id",
    "iteration_id",
    "sample_id",
    "created_at",
)
SORTS = (*TEXT, *NUMBERS, "is_bookmarked", "is_success", "category")
# Parameters of "is empty" filters, and the field each looks at.
EMPTY_FIELDS = {"agent_name": "agent_name", "training_id": "training_id", "category": "category",
                "root_cause": "root_cause", "tag": "tags", "tool": "tools"}  # fmt: skip
EMPTY = tuple(EMPTY_FIELDS)


def _records() -> list[dict]:
    records = list(generate(DemoShape(count=3000, group_size=4, questions_per_iteration=10, seed=11)))
    for index, item in enumerate(records):
        # Nulls and annotation variety that the demo alone does not have.
        if index % 17 == 0:
            del item["reward"], item["iteration_id"]
        if index % 23 == 0:
            del item["training_id"], item["agent_name"]
        if index % 31 == 0:
            del item["analysis"]
        if index % 13 == 0:
            item["tags"] = ["hard"] if index % 2 else ["hard", "review"]
        if index % 29 == 0:
            item["created_at"] = records[index - 1]["created_at"] if index else item["created_at"]
    return records


def _flat(item: dict) -> dict:
    analysis = item.get("analysis") or {}
    return {
        **{name: item.get(name) for name in TEXT},
        **{name: item.get(name) for name in NUMBERS if name not in ("step_count", "tool_call_count")},
        "step_count": len(item["steps"]),
        "tool_call_count": sum(len(step.get("tool_calls", [])) for step in item["steps"]),
        "created_at": item["created_at"] * 1_000_000,
        "is_bookmarked": bool(item.get("is_bookmarked")),
        "is_success": analysis.get("is_success"),
        "category": analysis.get("category"),
        "root_cause": analysis.get("root_cause"),
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
    path = tmp_path_factory.mktemp("projection") / "dump.jsonl"
    import orjson

    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in records))
    previous = settings.TRAJSITE_DATA_DIR
    settings.TRAJSITE_DATA_DIR = str(path.parent / "lancedb")
    reset_store()
    with django_db_blocker.unblock():
        call_command("import_trajectories", str(path), "--no-progress", "--batch-size", "700")
        # Outside any test's transaction: the job row would outlive this module and count in others.
        ImportJob.objects.all().delete()
    yield [_flat(item) for item in records]
    settings.TRAJSITE_DATA_DIR = previous
    reset_store()


@pytest.fixture
def api(django_user_model, dataset, settings):
    user = django_user_model.objects.create_user(username="prop", password="pw-prop-123", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def _random_params(rng: random.Random, rows: list[dict]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    sample = rng.choice(rows)
    for _ in range(rng.choice((0, 1, 1, 2, 4))):
        kind = rng.choice(
            ("text", "wild", "number", "range", "bool", "category", "root", "tag", "tool", "search", "empty")
        )
        if kind == "text":
            name = rng.choice(TEXT)
            for value in {sample[name], rng.choice(rows)[name]}:
                if value is not None:
                    params.append((name, value))
        elif kind == "wild":
            name = rng.choice(TEXT)
            value = sample[name] or "grpo"
            cut = rng.randint(0, len(value))
            params.append((name, rng.choice((value[:cut] + "*", "*" + value[cut:], "*" + value[cut : cut + 3] + "*"))))
        elif kind == "number":
            name = rng.choice(NUMBERS)
            value = rng.choice(rows)[name]
            if value is not None:
                params.append((name, repr(value)))
        elif kind == "range":
            name = rng.choice(NUMBERS)
            values = sorted(v for v in (rng.choice(rows)[name], rng.choice(rows)[name]) if v is not None)
            if values:
                if rng.random() < 0.7:
                    params.append((name + "_min", repr(values[0])))
                if rng.random() < 0.7:
                    params.append((name + "_max", repr(values[-1])))
        elif kind == "bool":
            name = rng.choice(("is_bookmarked", "is_success"))
            params.append((name, rng.choice(("true", "false", "null") if name == "is_success" else ("true", "false"))))
        elif kind == "category":
            params.extend(("category", value) for value in rng.sample(["correct", "timeout", "wrong_tool", "nope"], 2))
        elif kind == "root":
            params.append(("root_cause", rng.choice(("python", "STEPS", "arguments to", "zzz"))))
        elif kind == "tag":
            params.append(("tag", rng.choice(("hard", "review", "none"))))
        elif kind == "tool":
            params.extend(("tool", value) for value in rng.sample(["search", "python", "bash", "calculator", "x"], 2))
        elif kind == "empty":
            params.append((rng.choice(EMPTY) + "_empty", rng.choice(("true", "false"))))
        else:
            params.append(("search", rng.choice(("Q0001", "LLAMA", "e1:i1", "q00"))))
    single = [
        name
        for name, _ in params
        if name in {"search", "root_cause", "is_bookmarked", "is_success"} or name.endswith(("_min", "_max", "_empty"))
    ]
    params = [
        (name, value)
        for index, (name, value) in enumerate(params)
        if name not in single or [n for n, _ in params].index(name) == index
    ]
    ordering = [("-" if rng.random() < 0.5 else "") + name for name in rng.sample(SORTS, rng.choice((1, 1, 2, 3)))]
    params.append(("ordering", ",".join(ordering)))
    params.append(("page_size", str(rng.choice((1, 7, 50, 200)))))
    return params


def _matches(row: dict, params: list[tuple[str, str]]) -> bool:
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        if name in ("ordering", "page_size", "page"):
            continue
        if not _field_matches(row, name, values):
            return False
    return True


def _field_matches(row: dict, name: str, values: list[str]) -> bool:
    if name.endswith("_empty"):
        value = row[EMPTY_FIELDS[name.removesuffix("_empty")]]
        return (value in (None, "", [])) == (values[0] == "true")
    if name in TEXT:
        value = row[name]
        return value is not None and any(
            re.fullmatch(_glob(v), value, re.S) if "*" in v else v == value for v in values
        )
    if name in NUMBERS:
        return row[name] is not None and row[name] in {_number(name, v) for v in values}
    if name.endswith(("_min", "_max")):
        field, bound = name[:-4], _number(name[:-4], values[0])
        value = row[field]
        return value is not None and (value >= bound if name.endswith("_min") else value <= bound)
    if name == "is_bookmarked":
        return row[name] == (values[0] == "true")
    if name == "is_success":
        return row[name] == {"true": True, "false": False, "null": None}[values[0]]
    if name == "category":
        return row["category"] in values
    if name == "root_cause":
        return row["root_cause"] is not None and values[0].lower() in row["root_cause"].lower()
    if name in ("tag", "tool"):
        return bool(set(row["tags" if name == "tag" else "tools"]) & set(values))
    if name == "search":
        return any(row[field] is not None and values[0].lower() in row[field].lower() for field in TEXT)
    raise AssertionError(name)


def _glob(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


def _number(name: str, text: str):
    if name == "created_at":
        return (
            int(float(text))
            if text.lstrip("-").replace(".", "").isdigit()
            else int(datetime.fromisoformat(text).timestamp() * 1e6)
        )
    return float(text)


def _sorted(rows: list[dict], ordering: str) -> list[dict]:
    keys = [(part.lstrip("-"), part.startswith("-")) for part in ordering.split(",")]

    def compare(left: dict, right: dict) -> int:
        for name, descending in keys:
            a, b = left[name], right[name]
            if a == b:
                continue
            if a is None or b is None:
                return 1 if a is None else -1  # nulls last either way
            result = -1 if a < b else 1
            return -result if descending else result
        return (
            -1 if left["trajectory_id"] < right["trajectory_id"] else (left["trajectory_id"] > right["trajectory_id"])
        )

    return sorted(rows, key=functools.cmp_to_key(compare))


def test_random_queries_match_brute_force(api, dataset):
    rng = random.Random(20261125)
    nonempty = 0
    for case in range(CASES):
        params = _random_params(rng, dataset)
        # created_at is given to the API in unix seconds, like users do.
        api_params = [(n, str(int(v) / 1_000_000) if n.startswith("created_at") else v) for n, v in params]
        expected = _sorted([row for row in dataset if _matches(row, params)], dict(params)["ordering"])
        page_size = int(dict(params)["page_size"])
        pages = max(1, -(-len(expected) // page_size))
        page = rng.choice((1, 2, pages, pages + 1)) if pages > 1 else rng.choice((1, 1, 2))
        response = api.get("/api/trajectories/", [*api_params, ("page", str(page))])
        if page > pages:
            assert response.status_code == 404, (case, params, page)
            continue
        assert response.status_code == 200, (case, params, response.content[:300])
        body = response.json()
        assert body["count"] == len(expected), (case, params)
        start = (page - 1) * page_size
        wanted = [row["trajectory_id"] for row in expected[start : start + page_size]]
        assert [row["trajectory_id"] for row in body["results"]] == wanted, (case, params, page)
        nonempty += bool(wanted)
    assert nonempty > CASES // 3, "too few cases returned rows to mean anything"


def _facet_counts(rows: list[dict]) -> dict[str, dict]:
    """Per facet field, value → rows holding it, and None → rows with no value (brute force)."""
    counts: dict[str, dict] = {name: {} for name in ("training_id", "agent_name", "tools", "category", "tags")}
    for row in rows:
        for name, found in counts.items():
            values = row[name] if name in ("tools", "tags") else [row[name]]
            values = [value for value in values if value not in (None, "")]
            for value in set(values) or {None}:
                found[value] = found.get(value, 0) + 1
    return counts


def test_facet_counts_of_random_filters_match_brute_force(api, dataset):
    rng = random.Random(20261128)
    for case in range(60):
        params = [(n, v) for n, v in _random_params(rng, dataset) if n not in ("ordering", "page_size")]
        api_params = [(n, str(int(v) / 1_000_000) if n.startswith("created_at") else v) for n, v in params]
        response = api.get("/api/trajectories/facets/", api_params)
        assert response.status_code == 200, (case, params)
        expected = _facet_counts([row for row in dataset if _matches(row, params)])
        for name, found in response.json().items():
            values = {value: count for value, count in expected[name].items() if value is not None}
            assert {item["value"]: item["count"] for item in found} == values, (case, name, params)
        # The store's answer also counts the rows with no value (the pages offer them as a choice).
        query = parse_query(QueryDict(urlencode(api_params)))
        for name, found in reads.facets(query=query).items():
            assert dict(found) == expected[name], (case, name, params)


# Changes the data: runs after the tests that compare with the records as generated.
def test_results_follow_annotation_changes(api, dataset):
    ids = [row["trajectory_id"] for row in dataset[:5]]
    api.post(
        "/api/trajectories/bulk-update/",
        {"ids": ids, "changes": {"is_bookmarked": True, "category": "zz"}},
        format="json",
    )
    body = api.get("/api/trajectories/", {"category": "zz", "ordering": "trajectory_id"}).json()
    assert [row["trajectory_id"] for row in body["results"]] == sorted(ids)
    last = api.get("/api/trajectories/", {"ordering": "-category", "page_size": 5}).json()["results"]
    assert {row["trajectory_id"] for row in last} == set(ids)
    api.post("/api/trajectories/bulk-update/", {"ids": ids, "changes": {"category": None}}, format="json")
    assert api.get("/api/trajectories/", {"category": "zz"}).json()["count"] == 0
