"""Retrying LanceDB commits: conflicts are retried until a deadline, other errors pass through."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from trajectories import services
from trajectories.store import StoreBusy
from trajectories.store.commits import is_conflict, retrying


def test_conflicts_are_retried_until_the_operation_commits():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("Retryable commit conflict for version 7: This CreateIndex transaction was preempted")
        return "done"

    assert retrying(flaky, action="test") == "done" and len(attempts) == 3


def test_a_conflict_past_the_deadline_is_store_busy_and_other_errors_pass():
    with pytest.raises(StoreBusy, match="still conflicting"):
        retrying(
            lambda: (_ for _ in ()).throw(OSError("Too many concurrent writers")), action="t", deadline_seconds=0.05
        )
    with pytest.raises(ValueError, match="bad value"):
        retrying(lambda: (_ for _ in ()).throw(ValueError("bad value")), action="t")
    assert not is_conflict(OSError("No space left on device"))


@pytest.mark.django_db
def test_a_busy_store_is_a_503_that_says_nothing_changed(
    store, record, write_jsonl, run_import, django_user_model, monkeypatch
):
    run_import(write_jsonl([record(trajectory_id="t1")]))

    def busy(**_kwargs):
        raise StoreBusy("annotating: still conflicting with other writers after 900 attempts")

    monkeypatch.setattr(services, "annotate", busy)
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_superuser(username="b", password="pw-busy-123"))
    answer = client.patch("/api/trajectories/t1/", {"notes": "x"}, format="json")
    assert answer.status_code == 503 and answer["Retry-After"] == "5"
    assert "nothing was changed" in answer.json()["detail"]
    client.force_login(django_user_model.objects.get(username="b"))
    page = client.post("/trajectories/t1/annotate/", {"notes": "x"})
    assert page.status_code == 503 and b"nothing was changed" in page.content


@pytest.mark.django_db(transaction=True)
def test_an_imports_annotations_wait_out_people_editing_other_rows(store, record, run_import, write_jsonl):
    """People tagging rows while an import stores its records' annotations: both land (the import
    once failed with StoreBusy after 60 s of conflicts with edits of other rows)."""
    import threading

    from trajectories.store import AnnotationChange

    _, err, error = run_import(write_jsonl([record(trajectory_id=f"old{i}") for i in range(50)], name="old.jsonl"))
    assert error is None, err
    stop, editing = threading.Event(), threading.Event()
    edits: list[str] = []

    def edit() -> None:
        while not stop.is_set():
            tag = f"edit-{len(edits)}"
            store.annotate(trajectory_ids=[f"old{len(edits) % 50}"], change=AnnotationChange(add_tags=(tag,)), user="u")
            edits.append(tag)
            editing.set()

    editor = threading.Thread(target=edit)
    editor.start()
    assert editing.wait(60), "the edits run before and while the import writes"
    try:
        changes = {f"new{i}": AnnotationChange(category="imported") for i in range(5000)}
        store.insert_new(trajectories=_rows(record, list(changes)))
        assert store.annotate_new(changes=changes, user="import", deadline_seconds=300) == 5000
    finally:
        stop.set()
        editor.join()
    store.sync(force=True)
    assert store.get(trajectory_id="new4999")["category"] == "imported"
    tags = {tag for i in range(50) for tag in store.get(trajectory_id=f"old{i}")["tags"]}
    assert set(edits) <= tags


def _rows(record, ids: list[str]):
    import pyarrow as pa

    from trajectories.importing.validation import Defaults, validate
    from trajectories.store import TRAJECTORY_SCHEMA

    defaults = Defaults(training_id=None, agent_name=None, import_id=None, imported_at_us=1)
    built = [
        validate(record(trajectory_id=key), source="t", source_format="canonical", defaults=defaults).row for key in ids
    ]
    return pa.Table.from_pylist(built, schema=TRAJECTORY_SCHEMA)
