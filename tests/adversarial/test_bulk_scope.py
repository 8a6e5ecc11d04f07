"""Bulk actions never act on more than their caller stated (issue: empty bulk filters emptied the store)."""

from __future__ import annotations

import pytest

from tests.conftest import BASE_RECORD

from .conftest import imported

pytestmark = pytest.mark.adversarial
API = "/api/trajectories/"
UNSTATED = ["", "agent_name= ", "agent_name=", "tag=", "is_success=", "reward_min=", "format=json", "columns=x"]


@pytest.fixture(scope="module")
def rows(site):
    records = [
        {**BASE_RECORD, "trajectory_id": f"scope{i:03d}", "agent_name": "wide" if i < 150 else "narrow"}
        for i in range(160)
    ]
    imported(site, "scope.jsonl", records)
    return site


@pytest.mark.parametrize("query", [*UNSTATED, "page=2&page_size=1", "ordering=-reward", "agent_name=narrow&page=1"])
def test_a_query_that_does_not_state_its_rows_is_refused(rows, query):
    for path, extra in (("bulk-delete/", {}), ("bulk-update/", {"changes": {"category": "wiped"}})):
        answer = rows.request("POST", f"{API}{path}", {"query": query, **extra})
        assert answer.status == 400, (query, answer.body)
    assert len(rows.stored_ids()) == 160
    assert rows.request("GET", f"{API}?category=wiped").json()["count"] == 0


def test_all_must_be_said_and_then_confirmed_on_the_counted_rows(rows):
    asked = rows.request("POST", f"{API}bulk-update/", {"all": True, "changes": {"add_tags": ["everyone"]}})
    assert asked.status == 428, asked.body
    body = asked.json()
    assert body["count"] == 160 and "every trajectory" in body["selection"]
    assert rows.request("GET", f"{API}?tag=everyone").json()["count"] == 0
    done = rows.request(
        "POST", f"{API}bulk-update/", {"all": True, "changes": {"add_tags": ["everyone"]}, "confirm": body["confirm"]}
    )
    assert done.status == 200 and done.json() == {"count": 160}


def test_a_confirmation_does_not_stretch_over_rows_imported_after_it(rows):
    asked = rows.request("POST", f"{API}bulk-delete/", {"query": "agent_name=wide"})
    assert asked.status == 428 and asked.json()["count"] == 150
    imported(rows, "late.jsonl", [{**BASE_RECORD, "trajectory_id": "scope-late", "agent_name": "wide"}])
    stale = rows.request("POST", f"{API}bulk-delete/", {"query": "agent_name=wide", "confirm": asked.json()["confirm"]})
    assert stale.status == 409, stale.body
    assert stale.json()["count"] == 151 and "changed" in stale.json()["detail"]
    assert len(rows.stored_ids()) == 161, "nothing is deleted on a stale confirmation"


def test_a_confirmation_is_for_one_user_and_one_action(rows):
    token = rows.request("POST", f"{API}bulk-update/", {"all": True, "changes": {"notes": "x"}}).json()["confirm"]
    as_delete = rows.request("POST", f"{API}bulk-delete/", {"all": True, "confirm": token})
    assert as_delete.status == 409 and "another action" in as_delete.json()["detail"]
    forged = rows.request("POST", f"{API}bulk-delete/", {"all": True, "confirm": token[:-3] + "abc"})
    assert forged.status == 409 and "not valid" in forged.json()["detail"]
    editor = rows.request(
        "POST", f"{API}bulk-update/", {"all": True, "changes": {"notes": "x"}, "confirm": token}, user="editor"
    )
    assert editor.status == 409
    assert len(rows.stored_ids()) >= 160


@pytest.mark.django_db
def test_the_page_states_every_row_and_asks_again_when_rows_changed(
    staff_client, store, record, write_jsonl, run_import
):
    import re

    run_import(write_jsonl([record(trajectory_id=f"p{i}") for i in range(3)]))
    form = {"action": "category", "value": "bulk", "select_all": "1", "query": "ordering=-reward&page=1"}
    asked = staff_client.post("/trajectories/actions/", form).content.decode()
    assert "every trajectory in the store" in asked and "<strong>3</strong>" in asked
    token = re.search(r'name="confirm" value="([^"]+)"', asked).group(1)
    run_import(write_jsonl([record(trajectory_id="p-late")], name="late.jsonl"))
    again = staff_client.post("/trajectories/actions/", {**form, "confirm": token}).content.decode()
    assert "Nothing was changed" in again and "<strong>4</strong>" in again
    assert store.get(trajectory_id="p0")["category"] == "correct"
    token = re.search(r'name="confirm" value="([^"]+)"', again).group(1)
    assert staff_client.post("/trajectories/actions/", {**form, "confirm": token}).status_code == 302
    assert {store.get(trajectory_id=f"p{i}")["category"] for i in (0, 1, 2)} == {"bulk"}


def test_a_confirmation_is_for_the_changes_it_was_shown(rows):
    first = {"all": True, "changes": {"category": "one"}}
    token = rows.request("POST", f"{API}bulk-update/", first).json()["confirm"]
    other = rows.request("POST", f"{API}bulk-update/", {**first, "changes": {"category": "two"}, "confirm": token})
    assert other.status == 409 and rows.request("GET", f"{API}?category=two").json()["count"] == 0
