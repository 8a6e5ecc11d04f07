"""Annotation edits racing each other across the server's processes and threads (issue: never lose a write)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BASE_RECORD

from .conftest import imported

pytestmark = pytest.mark.adversarial
API = "/api/trajectories/"


@pytest.fixture(scope="module")
def rows(site):
    records = [{**BASE_RECORD, "trajectory_id": f"edit{i:03d}", "agent_name": "racer"} for i in range(60)]
    imported(site, "edits.jsonl", records)
    return site


def _parallel(calls, workers: int = 8) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_eighty_parallel_add_tags_keep_every_tag(rows):
    calls = [lambda n=n: rows.request("PATCH", f"{API}edit000/", {"add_tags": [f"tag-{n:02d}"]}) for n in range(80)]
    statuses = [answer.status for answer in _parallel(calls)]
    assert statuses == [200] * 80
    tags = rows.request("GET", f"{API}edit000/").json()["tags"]
    assert sorted(tags) == sorted(["arith", *(f"tag-{n:02d}" for n in range(80))])


def test_notes_and_category_set_at_once_both_stay(rows):
    for pair in range(20):
        path = f"{API}edit{pair + 1:03d}/"
        answers = _parallel(
            [
                lambda path=path, pair=pair: rows.request("PATCH", path, {"notes": f"note {pair}"}),
                lambda path=path, pair=pair: rows.request("PATCH", path, {"category": f"cat {pair}"}),
            ],
            workers=2,
        )
        assert [answer.status for answer in answers] == [200, 200]
        stored = rows.request("GET", path).json()
        assert (stored["notes"], stored["category"]) == (f"note {pair}", f"cat {pair}")


def test_bulk_add_and_remove_compose_with_single_edits(rows):
    targets = [f"edit{i:03d}" for i in range(30, 60)]
    bulk = [
        lambda n=n: rows.request(
            "POST", f"{API}bulk-update/", {"query": "agent_name=racer", "changes": {"add_tags": [f"bulk{n}"]}}
        )
        for n in range(4)
    ]
    single = [
        lambda target=target: rows.request(
            "PATCH", f"{API}{target}/", {"add_tags": ["single"], "remove_tags": ["arith"]}
        )
        for target in targets
    ]
    answers = _parallel([*bulk, *single])
    assert [answer.status for answer in answers] == [200] * len(answers), [a.body[:300] for a in answers]
    assert [answer.json()["count"] for answer in answers[:4]] == [60] * 4
    stored = rows.store().annotations(trajectory_ids=[f"edit{i:03d}" for i in range(60)])
    for trajectory_id, annotation in stored.items():
        tags = set(annotation["tags"])
        assert {"bulk0", "bulk1", "bulk2", "bulk3"} <= tags, trajectory_id
        if trajectory_id in targets:
            assert "single" in tags and "arith" not in tags, trajectory_id


def test_a_tag_with_a_comma_is_one_tag(rows):
    answer = rows.request("PATCH", f"{API}edit059/", {"tags": ["needs review, urgent"]})
    assert answer.json()["tags"] == ["needs review, urgent"]


@pytest.mark.django_db
def test_the_page_form_keeps_a_tag_with_a_comma_whole(staff_client, store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id="form")]))
    page = staff_client.get("/trajectories/form/").content.decode()
    assert '<textarea name="tags" id="id_tags"' in page and 'name="was_tags" value="arith"' in page
    form = {
        "tags": "arith\nneeds review, urgent",
        "was_tags": "arith",
        "category": "correct",
        "was_category": "correct",
    }
    staff_client.post("/trajectories/form/annotate/", form)
    assert store.get(trajectory_id="form")["tags"] == ["arith", "needs review, urgent"]


def test_an_edit_racing_a_delete_leaves_nothing_a_reimport_would_inherit(rows):
    ids = [f"gone{i:02d}" for i in range(24)]
    imported(rows, "gone.jsonl", [{**BASE_RECORD, "trajectory_id": key, "tags": None, "analysis": None} for key in ids])
    calls = []
    for key in ids:
        calls += [
            lambda key=key: rows.request("PATCH", f"{API}{key}/", {"notes": "ghost"}),
            lambda key=key: rows.request("PATCH", f"{API}{key}/", {"add_tags": ["ghost"]}),
            lambda key=key: rows.request("DELETE", f"{API}{key}/"),
        ]
    answers = _parallel(calls)
    assert {answer.status for answer in answers} <= {200, 204, 404}, [a.body[:200] for a in answers]
    table = rows.store()._table("annotations").to_lance()
    left = table.to_table(filter=__import__("pyarrow.compute").compute.field("trajectory_id").isin(ids))
    assert left.num_rows == 0, left.column("trajectory_id").to_pylist()
    imported(rows, "back.jsonl", [{**BASE_RECORD, "trajectory_id": key, "tags": None, "analysis": None} for key in ids])
    back = rows.store().annotations(trajectory_ids=ids)
    assert all(value["notes"] is None and value["tags"] == [] for value in back.values())
