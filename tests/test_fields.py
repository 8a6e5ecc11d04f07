"""Every catalogued field works everywhere its entry says: API filter, page filter, "is empty", sorting
both ways with nulls last, facet, list column and OpenAPI parameter, on real stored data.

The expected answers are computed here in Python from each trajectory's full API record, so a field
added to the catalogue is checked by these tests without writing a new one.
"""

from __future__ import annotations

import functools
import re
from html import unescape

import orjson
import pytest
import yaml
from rest_framework.test import APIClient

from trajectories import fields
from trajectories import query as q
from trajectories.fields import Filter, Kind
from trajectories.pages.cells import cell_text

pytestmark = pytest.mark.django_db

NOTES = {"t1": "Looked at the 检索 step", "t3": "RETRY storm", "t5": ""}


def _records() -> list[dict]:
    tool = lambda name: {"role": "assistant", "content": "", "tool_calls": [{"name": name, "arguments": "{}"}]}  # noqa: E731
    answer = {"role": "assistant", "content": "done"}
    return [
        {"trajectory_id": "t1", "data_id": "q1", "training_id": "run-a", "agent_name": "qwen", "epoch_id": 0,
         "iteration_id": 3, "sample_id": 0, "reward": 1.0, "toolcall_reward": 0.5, "res_reward": 1.0,
         "exec_time": 12.5, "steps": [tool("search"), tool("python"), answer], "created_at": 1000,
         "analysis": {"is_success": True, "category": "correct", "root_cause": "Found it"},
         "is_bookmarked": True, "tags": ["hard", "review"]},
        {"trajectory_id": "t2", "data_id": "q1", "training_id": "run-a", "agent_name": "llama", "epoch_id": 0,
         "iteration_id": 3, "sample_id": 1, "reward": 0.0, "exec_time": 3.0, "steps": [answer], "created_at": 2000,
         "analysis": {"is_success": False, "category": "timeout"}},
        {"trajectory_id": "t3", "data_id": "q2", "agent_name": "qwen", "iteration_id": 7, "sample_id": 0,
         "reward": 0.5, "toolcall_reward": 0.25, "steps": [tool("search"), tool("search"), answer], "created_at": 3000,
         "tags": ["hard"]},
        {"trajectory_id": "t4", "data_id": "q3", "training_id": "run-b", "epoch_id": 1, "iteration_id": 9,
         "reward": -0.5, "res_reward": 0.0, "exec_time": 40.0, "steps": [tool("bash"), answer], "created_at": 4000,
         "analysis": {"is_success": False, "category": "wrong_tool", "root_cause": "used bash for math"}},
        {"trajectory_id": "t5", "data_id": "q3", "training_id": "run-b", "agent_name": "", "steps": [answer],
         "created_at": 5000},
        {"trajectory_id": "t6/名前", "data_id": "q4", "training_id": "运行-c", "agent_name": "qwen", "epoch_id": 1,
         "iteration_id": 9, "sample_id": 2, "reward": 1.0, "exec_time": 0.5, "steps": [tool("python"), answer],
         "created_at": 6000, "analysis": {"is_success": True, "category": "correct"}, "tags": ["review"]},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def stored(django_db_setup, django_db_blocker, tmp_path_factory):
    """The records imported by the command, notes written through the API, every full record read back."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from trajectories.store import reset_store

    folder = tmp_path_factory.mktemp("fields")
    path = folder / "dump.jsonl"
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in _records()))
    previous = (settings.TRAJSITE_DATA_DIR, settings.TRAJSITE_CACHE)
    settings.TRAJSITE_DATA_DIR, settings.TRAJSITE_CACHE = str(folder / "lancedb"), False
    reset_store()
    with django_db_blocker.unblock():
        call_command("import_trajectories", str(path), "--no-progress")
        user = get_user_model().objects.create_user(username="fields", password="pw-fields-1", is_staff=True)
        api = APIClient()
        api.force_authenticate(user)
        for trajectory_id, notes in NOTES.items():
            response = api.patch(_detail_url(trajectory_id), {"notes": notes}, format="json")
            assert response.status_code == 200, response.content
        rows = {
            row["trajectory_id"]: row for row in (api.get(_detail_url(r["trajectory_id"])).json() for r in _records())
        }
        yield {"rows": rows, "user": user}
        # Rows made outside any test's transaction: leave the database as the next module expects it.
        from trajectories.models import ImportJob

        ImportJob.objects.all().delete()
        user.delete()
    settings.TRAJSITE_DATA_DIR, settings.TRAJSITE_CACHE = previous
    reset_store()


@pytest.fixture
def api(stored):
    client = APIClient()
    client.force_authenticate(stored["user"])
    return client


@pytest.fixture
def page_client(client, stored):
    client.force_login(stored["user"])
    return client


def _detail_url(trajectory_id: str) -> str:
    from trajectories.links import id_path

    return f"/api/trajectories/{id_path(trajectory_id)}/"


def _value(row: dict, field: fields.Field):
    value = row[field.name]
    if field.kind is Kind.TIME and value is not None:
        from datetime import datetime

        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return value


def _empty(value) -> bool:
    return value in (None, "", [])


def _probes(field: fields.Field, rows: dict[str, dict]) -> list[tuple[list[tuple[str, str]], set[str]]]:
    """(query parameters, the ids they must select) for this field's filter, from the stored values."""
    values = {key: _value(row, field) for key, row in rows.items()}
    present = sorted({value for value in values.values() if not _empty(value)} if field.kind is not Kind.LIST else
                     {item for value in values.values() for item in value or []}, key=repr)  # fmt: skip
    probes = []
    if field.filter is Filter.EXACT:
        first = present[0]
        probes.append(([(field.param, first)], {k for k, v in values.items() if v == first}))
        probes.append(([(field.param, v) for v in present[:2]], {k for k, v in values.items() if v in present[:2]}))
        pattern = first[:1] + "*"
        probes.append(([(field.param, pattern)], {k for k, v in values.items() if v and v.startswith(first[:1])}))
    elif field.filter is Filter.ANY_OF:
        chosen = present[:2]
        if field.kind is Kind.LIST:
            expected = {k for k, v in values.items() if set(v or []) & set(chosen)}
        else:
            expected = {k for k, v in values.items() if v in chosen}
        probes.append(([(field.param, v) for v in chosen], expected))
    elif field.filter is Filter.CONTAINS:
        word = present[0][1:4].upper()
        probes.append(([(field.param, word)], {k for k, v in values.items() if v and word.lower() in v.lower()}))
    elif field.filter is Filter.BOOLEAN:
        options = ("true", "false", "null") if field.kind is Kind.TRISTATE else ("true", "false")
        for text in options:
            wanted = {"true": True, "false": False, "null": None}[text]
            probes.append(([(field.param, text)], {k for k, v in values.items() if v is wanted}))
    elif field.filter is Filter.RANGE:
        low, high = present[0], present[len(present) // 2]
        text = (lambda v: repr(v)) if field.kind is not Kind.TIME else (lambda v: str(v))
        probes.append(([(field.param, text(low))], {k for k, v in values.items() if v == low}))
        probes.append(
            (
                [(field.param + q.MIN_SUFFIX, text(low)), (field.param + q.MAX_SUFFIX, text(high))],
                {k for k, v in values.items() if v is not None and low <= v <= high},
            )
        )
    if field.empty_param:
        for flag in (True, False):
            probes.append(
                ([(field.empty_param, str(flag).lower())], {k for k, v in values.items() if _empty(v) == flag})
            )
    return probes


FILTERED = [field.name for field in fields.FILTERED]


@pytest.mark.parametrize("name", FILTERED)
def test_every_filter_selects_the_right_rows_in_api_and_page(name, stored, api, page_client):
    field = fields.get(name)
    rows = stored["rows"]
    for params, expected in _probes(field, rows):
        response = api.get("/api/trajectories/", [*params, ("page_size", "100")])
        assert response.status_code == 200, (params, response.content[:300])
        assert {row["trajectory_id"] for row in response.json()["results"]} == expected, params
        page = page_client.get("/trajectories/", [*params, ("page_size", "100")])
        assert page.status_code == 200, (params, page.content[:300])
        assert set(_page_ids(page)) == expected, params


def _page_ids(response) -> list[str]:
    return [unescape(value) for value in re.findall(r'name="ids" value="([^"]*)"', response.content.decode())]


def _expected_order(rows: dict[str, dict], field: fields.Field, descending: bool) -> list[str]:
    def compare(left: str, right: str) -> int:
        a, b = _value(rows[left], field), _value(rows[right], field)
        if a != b:
            if a is None or b is None:
                return 1 if a is None else -1  # nulls last either way
            result = -1 if a < b else 1
            return -result if descending else result
        return -1 if left < right else (left > right)

    return sorted(rows, key=functools.cmp_to_key(compare))


@pytest.mark.parametrize("name", fields.SORTABLE)
@pytest.mark.parametrize("descending", [False, True])
def test_every_sortable_field_sorts_both_ways_with_nulls_last(name, descending, stored, api, page_client):
    rows = stored["rows"]
    ordering = ("-" if descending else "") + name
    expected = _expected_order(rows, fields.get(name), descending)
    answer = api.get("/api/trajectories/", {"ordering": ordering}).json()
    assert [row["trajectory_id"] for row in answer["results"]] == expected
    assert _page_ids(page_client.get("/trajectories/", {"ordering": ordering})) == expected


@pytest.mark.parametrize("name", [field.name for field in fields.FACETS])
def test_every_facet_counts_values_and_rows_without_one(name, stored, api, page_client):
    field = fields.get(name)
    counts: dict = {}
    for row in stored["rows"].values():
        value = row[name]
        for item in (value or [None]) if field.kind is Kind.LIST else [None if value == "" else value]:
            counts[item] = counts.get(item, 0) + 1
    answered = api.get("/api/trajectories/facets/").json()[name]
    assert {item["value"]: item["count"] for item in answered} == {k: v for k, v in counts.items() if k is not None}
    page = page_client.get("/trajectories/").content.decode()
    block = page.split(f'data-filter-title="{field.label}"')[1].split("</details>")[0]
    for value, count in counts.items():
        label = "(none)" if value is None else value
        assert f"{label} ({count})" in unescape(block), (value, count)


@pytest.mark.parametrize("name", [field.name for field in fields.COLUMNS])
def test_every_column_shows_its_cells(name, stored, page_client):
    page = page_client.get("/trajectories/", {"columns": f"trajectory_id,{name}", "ordering": "trajectory_id"})
    body = page.content.decode()
    assert f'class="column-{name}' in body
    rows = stored["rows"]
    cells = [unescape(cell) for cell in re.findall(rf'<td class="field-{name}(?: [^"]*)?"[^>]*>([^<]*)</td>', body)]
    if name == fields.KEY:
        return  # the key is the row's link, checked by the filter and sort tests
    expected = [cell_text(_as_stored(rows[key], name), name) for key in sorted(rows)]
    assert cells == expected


def _as_stored(row: dict, name: str) -> dict:
    """The API's JSON row with times as datetimes again, as cells get them."""
    from datetime import datetime

    value = row[name]
    if fields.get(name).kind is Kind.TIME and value is not None:
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return {name: value}


def test_defaults_and_summaries_are_shown(stored, api, page_client):
    body = page_client.get("/trajectories/").content.decode()
    for name in fields.DEFAULT_COLUMNS:
        assert f'class="column-{name}' in body, name
    for field in fields.FILTERED:
        if field.filter is Filter.BOOLEAN:
            block = body.split(f'data-filter-title="{field.label}"')[1].split("</details>")[0]
            assert [label for _, label in field.choices] == re.findall(r'">([^<]+)</a></li>', block)[1:], field.name
            assert {value for value, _ in field.choices} == (
                {"true", "false", "null"} if field.kind is Kind.TRISTATE else {"true", "false"}
            )
    row = api.get("/api/trajectories/").json()["results"][0]
    assert {field.name for field in fields.SUMMARY} <= set(row)


def test_every_filter_parameter_is_in_the_openapi_schema(stored, api):
    schema = yaml.safe_load(api.get("/api/schema/").content)
    listed = {parameter["name"] for parameter in schema["paths"]["/api/trajectories/"]["get"]["parameters"]}
    for field in fields.FILTERED:
        assert set(q.parameters(field)) <= listed, field.name
    assert {q.SEARCH_VAR, q.TEXT_VAR, q.REGEX_VAR, q.ORDERING_VAR, q.PAGE_VAR, q.PAGE_SIZE_VAR} <= listed
    detail = schema["components"]["schemas"]["TrajectoryDetail"]["properties"]
    assert {field.name for field in fields.FIELDS if not field.internal} <= set(detail)
    assert not {field.name for field in fields.FIELDS if field.internal} & set(detail)


def test_the_schema_states_the_annotation_limits(api):
    from trajectories import annotating

    schema = yaml.safe_load(api.get("/api/schema/").content)
    for name in ("Annotation", "PatchedAnnotation"):
        properties = schema["components"]["schemas"][name]["properties"]
        for field, limit in annotating.TEXT_LIMITS.items():
            assert properties[field]["maxLength"] == limit, (name, field)
        for field in ("tags", "add_tags"):
            assert properties[field]["maxItems"] == annotating.MAX_TAGS
            assert properties[field]["items"]["maxLength"] == annotating.MAX_TAG_LENGTH


def test_tool_call_count_is_a_field_like_step_count(stored, api):
    rows = stored["rows"]
    assert {key: row["tool_call_count"] for key, row in rows.items()} == {
        "t1": 2, "t2": 0, "t3": 2, "t4": 1, "t5": 0, "t6/名前": 1,
    }  # fmt: skip
    found = api.get("/api/trajectories/", {"tool_call_count_min": 2, "ordering": "-tool_call_count"}).json()
    assert [row["trajectory_id"] for row in found["results"]] == ["t1", "t3"]


def test_what_one_import_added_is_one_filter(stored, api):
    import_id = stored["rows"]["t1"]["import_id"]
    assert import_id
    found = api.get("/api/trajectories/", {"import_id": import_id}).json()
    assert found["count"] == len(stored["rows"])
    assert api.get("/api/trajectories/", {"source_format": "canonical"}).json()["count"] == len(stored["rows"])


def test_grouping_keys_and_measures_are_the_training_questions():
    """What charts and groups split by, and what they aggregate (the analytics read these lists)."""
    assert set(fields.GROUP_KEYS) == {
        "training_id", "agent_name", "epoch_id", "iteration_id", "data_id", "category", "tools", "tags", "import_id",
    }  # fmt: skip
    assert set(fields.MEASURES) == {
        "reward", "toolcall_reward", "res_reward", "step_count", "tool_call_count", "exec_time", "is_success",
    }  # fmt: skip
    assert all(fields.get(name).projected for name in fields.GROUP_KEYS + fields.MEASURES)


def test_the_catalogue_is_the_one_description():
    """The shape of a trajectory is written down once: other modules derive it (see fields.py)."""
    from pathlib import Path

    root = Path(fields.__file__).parent
    allowed = {"fields.py", "demo.py", "importing/validation.py"}
    mentions = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "toolcall_reward" in path.read_text() and str(path.relative_to(root)) not in allowed
    ]
    assert mentions == []
    templates = Path(fields.__file__).parent.parent / "templates"
    assert [p.name for p in templates.rglob("*.html") if "toolcall_reward" in p.read_text()] == []
