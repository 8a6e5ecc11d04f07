"""Bulk actions from the list: confirmation with the count, then the change; export streams JSONL."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from trajectories.store import AnnotationChange

pytestmark = pytest.mark.django_db
URL = reverse("trajectories:actions")


@pytest.fixture
def stored(store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id=f"t{i}", agent_name="alpha" if i < 6 else "beta") for i in range(10)]))
    return store


def _token(page) -> str:
    return re.search(r'name="confirm" value="([^"]+)"', page.content.decode()).group(1)


def test_action_on_checked_rows_asks_then_applies(staff_client, stored):
    form = {"action": "category", "value": "triaged", "ids": ["t1", "t2"], "query": "agent_name=alpha"}
    confirm = staff_client.post(URL, form)
    assert "set the category of</strong> <strong>2</strong> trajectories" in confirm.content.decode()
    assert stored.get(trajectory_id="t1")["category"] == "correct"
    done = staff_client.post(URL, {**form, "confirm": _token(confirm)})
    assert done.status_code == 302 and done["Location"] == "/trajectories/?agent_name=alpha"
    assert [stored.get(trajectory_id=i)["category"] for i in ("t1", "t2", "t3")] == ["triaged", "triaged", "correct"]


def test_action_on_everything_matching_the_filters(staff_client, stored):
    form = {"action": "add_tag", "value": "beta-run", "select_all": "1", "query": "agent_name=beta"}
    confirm = staff_client.post(URL, form)
    assert "<strong>4</strong> trajectories" in confirm.content.decode()
    staff_client.post(URL, {**form, "confirm": _token(confirm)})
    tagged = stored.page(query=__import__("trajectories.query", fromlist=["q"]).TrajectoryQuery.where(tags="beta-run"))
    assert sorted(row["trajectory_id"] for row in tagged.rows) == ["t6", "t7", "t8", "t9"]


def test_actions_needing_a_value_or_a_selection_say_so(staff_client, stored):
    response = staff_client.post(URL, {"action": "category", "ids": ["t1"]}, follow=True)
    assert "needs a value" in response.content.decode()
    response = staff_client.post(URL, {"action": "bookmark"}, follow=True)
    assert "No trajectories selected" in response.content.decode()


def test_a_bad_list_query_is_an_error_not_an_empty_or_wider_selection(staff_client, stored):
    form = {"action": "bookmark", "select_all": "1", "query": "agent_name=beta&reward_min=high"}
    response = staff_client.post(URL, form, follow=True)
    body = response.content.decode()
    assert "Nothing changed: the list&#x27;s filters are not valid (reward_min: &#x27;high&#x27; is not" in body
    assert "No trajectories selected" not in body
    assert not any(stored.get(trajectory_id=f"t{i}")["is_bookmarked"] for i in range(10))


def test_all_matching_a_list_filtered_by_spaces_acts_on_what_the_list_showed(staff_client, stored):
    stored.annotate(trajectory_ids=["t3"], change=AnnotationChange(root_cause="a b"), user="x")
    listed = staff_client.get("/trajectories/", {"root_cause": " "}).content.decode()
    assert 'value="t3"' in listed and "1 result" in listed
    form = {"action": "bookmark", "select_all": "1", "query": "root_cause=+"}
    confirm = staff_client.post(URL, form)
    assert "<strong>1</strong> trajectories" in confirm.content.decode()
    staff_client.post(URL, {**form, "confirm": _token(confirm)})
    assert [i for i in range(10) if stored.get(trajectory_id=f"t{i}")["is_bookmarked"]] == [3]


def test_an_action_value_over_its_limit_is_refused_with_the_limit(staff_client, stored):
    response = staff_client.post(URL, {"action": "category", "value": "c" * 250, "ids": ["t1"]}, follow=True)
    assert "Nothing changed: category: at most 200 characters (got 250)" in response.content.decode()
    assert stored.get(trajectory_id="t1")["category"] == "correct"


def test_the_action_menu_is_the_actions_definition(staff_client, stored, django_user_model):
    from trajectories.pages.actions import ACTIONS

    body = staff_client.get("/trajectories/").content.decode()
    offered = re.findall(r'<option value="([a-z_]+)"', body.split('id="action-select"')[1].split("</select>")[0])
    assert offered == [name for name, action in ACTIONS.items() if not action.destructive]
    admin = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123")
    staff_client.force_login(admin)
    body = staff_client.get("/trajectories/").content.decode()
    offered = re.findall(r'<option value="([a-z_]+)"', body.split('id="action-select"')[1].split("</select>")[0])
    assert offered == list(ACTIONS)


def test_export_streams_reimportable_jsonl(staff_client, stored, tmp_path, run_import):
    response = staff_client.post(URL, {"action": "export", "select_all": "1", "query": "agent_name=beta"})
    assert response["Content-Type"] == "application/x-ndjson"
    body = b"".join(response.streaming_content)
    lines = [json.loads(line) for line in body.splitlines()]
    assert sorted(line["trajectory_id"] for line in lines) == ["t6", "t7", "t8", "t9"]
    assert lines[0]["steps"][2]["tool_calls"][0]["name"] == "calculator"
    stored.delete(trajectory_ids=["t6"])
    path = tmp_path / "export.jsonl"
    path.write_bytes(body)
    out, _, error = run_import(path)
    assert error is None and "1 imported, 0 updated, 3 duplicates skipped" in out


def test_delete_needs_the_permission(staff_client, stored, django_user_model):
    form = {"action": "delete", "ids": ["t1"]}
    assert staff_client.post(URL, form).status_code == 403
    user = django_user_model.objects.get(username="staff")
    user.user_permissions.add(Permission.objects.get(codename="delete_trajectory"))
    staff_client.force_login(user)
    confirm = staff_client.post(URL, form)
    assert stored.get(trajectory_id="t1") is not None
    assert staff_client.post(URL, {**form, "confirm": _token(confirm)}).status_code == 302
    assert stored.get(trajectory_id="t1") is None
