"""Snapshots, restore and import undo (`store_snapshot`, `store_restore`, `import_undo`): each says
its scope, changes nothing without --yes, and changes exactly that with it."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from trajectories.models import ImportJob
from trajectories.store import AnnotationChange

pytestmark = pytest.mark.django_db(transaction=True)


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _ids(store) -> set[str]:
    store.sync(force=True)
    return set(store.matching_ids(query=__import__("trajectories.query").query.TrajectoryQuery()))


def _category(store, trajectory_id: str):
    store.sync(force=True)
    return store.get(trajectory_id=trajectory_id)["category"]


def test_a_snapshot_restores_rows_and_annotations_and_the_restore_can_be_undone(store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id=f"a{i}") for i in range(5)], name="a.jsonl"))
    store.annotate(trajectory_ids=["a1"], change=AnnotationChange(category="before"), user="u")
    assert "snapshot 'good'" in _call("store_snapshot", "--tag", "good")
    run_import(write_jsonl([record(trajectory_id=f"b{i}") for i in range(3)], name="b.jsonl"))
    store.annotate(trajectory_ids=["a1"], change=AnnotationChange(category="after"), user="u")

    shown = _call("store_restore", "--tag", "good")
    assert "trajectories: version" in shown and "(8 rows) -> version" in shown and "(5 rows" in shown
    assert "nothing changed" in shown and len(_ids(store)) == 8, "no --yes: nothing restored"

    done = _call("store_restore", "--tag", "good", "--yes")
    assert "done: trajectories" in done
    assert _ids(store) == {f"a{i}" for i in range(5)} and _category(store, "a1") == "before"

    safety = [s.tag for s in store.snapshots() if s.tag.startswith("before-restore-")]
    assert len(safety) == 1
    _call("store_restore", "--tag", safety[0], "--yes")
    assert len(_ids(store)) == 8 and _category(store, "a1") == "after"


def test_optimize_keeps_tagged_versions_and_prunes_the_rest(store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id="k0")], name="k0.jsonl"))
    store.snapshot(tag="kept")
    for index in range(1, 4):
        run_import(write_jsonl([record(trajectory_id=f"k{index}")], name=f"k{index}.jsonl"))
    before = len(store._table("trajectories").list_versions())
    store.optimize(keep_versions=timedelta(0))
    after = [entry["version"] for entry in store._table("trajectories").list_versions()]
    assert len(after) < before and store.snapshots()[0].versions["trajectories"] in after
    store.restore(plan=store.restore_plan(tag="kept"))
    assert _ids(store) == {"k0"}


def test_restore_to_a_version_takes_the_annotations_of_that_moment(store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id="v0")], name="v0.jsonl"))
    version = store.sync(force=True)[0]
    assert _category(store, "v0") == "correct"
    store.annotate(trajectory_ids=["v0"], change=AnnotationChange(category="later"), user="u")
    run_import(write_jsonl([record(trajectory_id="v1")], name="v1.jsonl"))
    _call("store_restore", "--version", str(version), "--yes")
    assert _ids(store) == {"v0"} and _category(store, "v0") == "correct", "the edit made after it is undone"


def test_bad_tags_and_versions_are_refused_in_words(store, record, run_import, write_jsonl):
    run_import(write_jsonl([record()]))
    with pytest.raises(CommandError, match="letters, digits"):
        _call("store_snapshot", "--tag", "../x")
    _call("store_snapshot", "--tag", "one")
    with pytest.raises(CommandError, match="exists already"):
        _call("store_snapshot", "--tag", "one")
    with pytest.raises(CommandError, match="no snapshot tagged 'two'"):
        _call("store_restore", "--tag", "two")
    with pytest.raises(CommandError, match="has no version 9999"):
        _call("store_restore", "--version", "9999")
    assert "one: trajectories v" in _call("store_snapshot", "--list")


def test_undo_removes_exactly_what_an_import_added(store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id=f"x{i}") for i in range(4)], name="x.jsonl"))
    # The second import repeats two of the first's ids (skipped) and adds three.
    second = [record(trajectory_id=f"x{i}") for i in range(2)] + [record(trajectory_id=f"y{i}") for i in range(3)]
    run_import(write_jsonl(second, name="y.jsonl"))
    job = ImportJob.objects.latest("pk")
    store.annotate(trajectory_ids=["y1", "x0"], change=AnnotationChange(notes="look"), user="u")
    shown = _call("import_undo", str(job.pk))
    assert "stored 3 trajectories" in shown and "1 of them annotated" in shown and "nothing changed" in shown
    assert len(_ids(store)) == 7
    assert "3 trajectories removed" in _call("import_undo", str(job.pk), "--yes")
    assert _ids(store) == {f"x{i}" for i in range(4)}
    assert store.get(trajectory_id="x0")["notes"] == "look", "the first import's rows keep their annotations"
    job.refresh_from_db()
    assert job.status == "undone"


def test_an_import_that_replaced_rows_is_not_undone(store, record, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id="r0")], name="r.jsonl"))
    run_import(
        write_jsonl([record(trajectory_id="r0", final_answer="new")], name="r2.jsonl"), "--on-duplicate", "update"
    )
    job = ImportJob.objects.latest("pk")
    with pytest.raises(CommandError, match="replaced 1 stored trajectories"):
        _call("import_undo", str(job.pk), "--yes")
    assert _ids(store) == {"r0"}
