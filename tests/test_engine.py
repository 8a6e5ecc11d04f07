"""The query engine follows the store without making requests wait: a large projection is rebuilt in
the background while the previous one answers, and what a cache stores is never a mix of versions."""

from __future__ import annotations

import threading
import time

import pytest

from trajectories import cache, reads
from trajectories.importing.errors import ErrorSink
from trajectories.importing.pipeline import ImportOptions, run_import
from trajectories.query import TrajectoryQuery
from trajectories.store import engine as engine_module
from trajectories.store import projection as projection_module
from trajectories.store.engine import QueryEngine
from trajectories.store.repository import TrajectoryStore

pytestmark = pytest.mark.django_db


def _add(uri: str, path, **options) -> None:
    """An import by another process: its own store object on the same data."""
    run_import(paths=[str(path)], options=ImportOptions(**options), store=TrajectoryStore(uri=uri), errors=ErrorSink())


@pytest.fixture
def held_builds(monkeypatch):
    """Background builds wait until the test lets them go."""
    release = threading.Event()
    started = threading.Event()
    follow = QueryEngine._next

    def held(self, *args):
        if threading.current_thread().name == "trajsite-projection":
            started.set()
            assert release.wait(30)
        return follow(self, *args)

    monkeypatch.setattr(QueryEngine, "_next", held)
    return started, release


def _wait(condition, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_large_projection_keeps_answering_while_the_next_is_built(store, record, write_jsonl, held_builds):
    started, release = held_builds
    store.engine.background_rows = 0  # every projection counts as large
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(5)], "a.jsonl"))
    everything = TrajectoryQuery()
    assert store.page(query=everything).count == 5
    _add(store.uri, write_jsonl([record(trajectory_id=f"b{i}") for i in range(3)], "b.jsonl"))

    began = time.perf_counter()
    assert store.page(query=everything).count == 5, "the previous version answers, complete"
    assert time.perf_counter() - began < 0.5, "without waiting for the build"
    assert started.wait(10)
    # A user's edit shows at once, on the rows the previous version has.
    store.annotate(trajectory_ids=["a1"], change=store_change(), user="u")
    assert [row["trajectory_id"] for row in store.page(query=TrajectoryQuery.where(is_bookmarked=True)).rows] == ["a1"]

    release.set()
    _wait(lambda: store.page(query=everything).count == 8)
    assert store.page(query=TrajectoryQuery.where(is_bookmarked=True)).count == 1


def test_an_answer_from_the_previous_version_is_not_cached_as_the_next(store, record, write_jsonl, held_builds):
    _, release = held_builds
    store.engine.background_rows = 0
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(4)], "a.jsonl"))
    everything = TrajectoryQuery()
    assert reads.count(query=everything) == 4
    _add(store.uri, write_jsonl([record(trajectory_id=f"b{i}") for i in range(2)], "b.jsonl"))
    cache.bump_generation()  # what the other process's import sends
    assert reads.count(query=everything) == 4  # answered by the previous version, and not stored
    release.set()
    _wait(lambda: store.engine.peek() is not None and store.engine.peek().rows == 6)
    assert reads.count(query=everything) == 6


def test_pages_read_while_another_process_imports_are_each_one_version(store, record, write_jsonl):
    store.engine.background_rows = 0
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(10)], "a.jsonl"))
    path = write_jsonl([record(trajectory_id=f"b{i}") for i in range(200)], "b.jsonl")
    importing = threading.Thread(target=_add, args=(store.uri, path), kwargs={"batch_size": 20})
    importing.start()
    seen = set()
    query = TrajectoryQuery(page_size=1000)
    while importing.is_alive() or 210 not in seen:
        page = store.page(query=query)
        assert len(page.rows) == page.count, "rows and count of one version"
        assert page.count % 10 == 0, "whole writes only"
        seen.add(page.count)
        time.sleep(0.005)
    importing.join()
    assert max(seen) == 210


def test_sort_orders_are_built_with_the_projection_off_the_request_path(store, record, write_jsonl, monkeypatch):
    monkeypatch.setattr("trajectories.store.engine.WARM_ROWS", 0)
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}", reward=i / 10) for i in range(5)]))
    store.page(query=TrajectoryQuery())
    projection = store.engine.peek()
    _wait(lambda: ("reward", False) in projection._orders and ("category", True) in projection._orders)


def store_change():
    from trajectories.store import AnnotationChange

    return AnnotationChange(is_bookmarked=True)


def test_edits_by_another_process_are_followed_by_reading_only_what_they_added(store, record, write_jsonl, monkeypatch):
    from datetime import timedelta

    from trajectories.store import AnnotationChange

    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(6)]))
    assert store.page(query=TrajectoryQuery()).count == 6
    full_reads = []
    read = projection_module.AnnotationColumns.read.__func__
    monkeypatch.setattr(
        projection_module.AnnotationColumns,
        "read",
        classmethod(lambda cls, *args, **kwargs: full_reads.append(1) or read(cls, *args, **kwargs)),
    )
    other = TrajectoryStore(uri=store.uri)
    change = AnnotationChange(category="brand-new", add_tags=("x",))
    other.annotate(trajectory_ids=["a1", "a2"], change=change, user="u")
    other.annotate(trajectory_ids=["a2"], change=AnnotationChange(notes="second edit"), user="u")

    def ids(**filters):
        return sorted(row["trajectory_id"] for row in store.page(query=TrajectoryQuery.where(**filters)).rows)

    assert ids(category="brand-new") == ["a1", "a2"]
    assert ids(tags="x") == ["a1", "a2"]
    assert store.page(query=TrajectoryQuery.where(category="brand-new")).rows[0]["category"] == "brand-new"
    assert full_reads == [], "only the fragments the edits added were read"
    # A compaction rewrites fragments: rows of small ones are followed from where they sat...
    other.optimize(keep_versions=timedelta(hours=1))
    other.annotate(trajectory_ids=["a3"], change=AnnotationChange(category="brand-new"), user="u")
    assert ids(category="brand-new") == ["a1", "a2", "a3"]
    assert full_reads == []
    # ...a fragment too large to keep its rows' positions for is read in full, and still right.
    monkeypatch.setattr(projection_module, "_PLACED_ROWS", 0)
    other.annotate(trajectory_ids=["a4"], change=AnnotationChange(category="brand-new"), user="u")
    assert ids(category="brand-new") == ["a1", "a2", "a3", "a4"]
    other.optimize(keep_versions=timedelta(hours=1))
    other.annotate(trajectory_ids=["a5"], change=AnnotationChange(category="brand-new"), user="u")
    assert ids(category="brand-new") == ["a1", "a2", "a3", "a4", "a5"]
    assert full_reads == [1]


def test_a_new_version_with_the_same_rows_is_served_without_reading_them(store, record, write_jsonl):
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(5)]))
    assert store.page(query=TrajectoryQuery()).count == 5
    built, version = store.engine.builds, store.engine.peek().version
    # Another process changes the table's configuration: a new version, the same rows.
    TrajectoryStore(uri=store.uri)._table("trajectories").to_lance().update_config({"trajsite.test": "1"})
    page = store.page(query=TrajectoryQuery())
    assert page.count == 5 and page.version > version
    assert store.engine.builds == built, "the rows were not read again"


def test_an_import_is_followed_by_reading_only_the_rows_it_added(store, record, write_jsonl):
    def batch(tag: str, count: int) -> list[dict]:
        return [
            record(
                trajectory_id=f"{tag}{i}",
                agent_name=f"agent-{tag}",  # a value the projection has not seen
                tags=[f"tag-{tag}", "shared"],
                analysis={"is_success": i % 2 == 0, "category": f"cat-{tag}"},
                steps=[{"role": "assistant", "content": "x", "tool_calls": [{"id": "c", "name": f"tool-{tag}"}]}],
            )
            for i in range(count)
        ]

    _add(store.uri, write_jsonl(batch("m", 6), "m.jsonl"))
    everything = TrajectoryQuery(page_size=1000, ordering=(("trajectory_id", False),))
    assert store.page(query=everything).count == 6
    for tag in ("b", "a", "z"):  # new ids sort before, between and after the ones held
        _add(store.uri, write_jsonl(batch(tag, 4), f"{tag}.jsonl"))
        fresh = TrajectoryStore(uri=store.uri)  # reads the whole version
        assert store.page(query=everything).rows == fresh.page(query=everything).rows
        assert store.facets() == fresh.facets()
        for query in (TrajectoryQuery.where(agent_name=f"agent-{tag}"), TrajectoryQuery.where(category=f"cat-{tag}"),
                      TrajectoryQuery.where(tags="shared"), TrajectoryQuery.where(is_success=True)):  # fmt: skip
            assert store.page(query=query).rows == fresh.page(query=query).rows, query
        assert store.get(trajectory_id=f"{tag}1") == fresh.get(trajectory_id=f"{tag}1")
    assert store.engine.appends == 3


def test_sort_orders_of_appended_rows_are_merged_into_the_earlier_ones(store, record, write_jsonl, monkeypatch):
    """Each order asked for before an import is merged with the new rows' (a search per row, no
    sort of every row), and equals the order a fresh build sorts: nulls last, ties by id, values the
    earlier rows lack sorting before, between and after theirs."""
    import random

    rng = random.Random(5)

    def batch(tag: str, count: int) -> list[dict]:
        return [
            record(
                trajectory_id=f"{tag}{rng.randint(0, 10**6):07d}-{i}",
                agent_name=rng.choice([f"agent-{tag}", "agent-m", None]),
                reward=rng.choice([None, -1.5, 0.0, 0.5, 1.0, rng.random()]),
                iteration_id=rng.choice([None, 0, 1, 2, rng.randint(0, 50)]),
                exec_time=rng.choice([None, 1.0, rng.random() * 100]),
            )
            for i in range(count)
        ]

    merged = []
    merge = projection_module.Projection._merged_order
    monkeypatch.setattr(
        projection_module.Projection,
        "_merged_order",
        lambda self, *args: (lambda order: merged.append(order is not None) or order)(merge(self, *args)),
    )
    _add(store.uri, write_jsonl(batch("m", 30), "m.jsonl"))
    orders = [(name, descending) for name, descending in projection_module.Projection.every_order()
              if name not in projection_module.ANNOTATION_FIELDS]  # fmt: skip
    for tag in ("b", "a", "z"):
        projection = store.engine.current()
        for name, descending in orders:
            projection.order(name, descending)
        _add(store.uri, write_jsonl(batch(tag, 12), f"{tag}.jsonl"))
        appended = store.engine.current()
        assert appended.rows == projection.rows + 12 and store.engine.appends
        fresh = TrajectoryStore(uri=store.uri).engine.current()
        for name, descending in orders:
            assert appended.order(name, descending).tolist() == fresh.order(name, descending).tolist(), name
    assert len(merged) == 3 * len(orders) and all(merged)


def test_orders_not_asked_for_in_between_are_merged_across_several_imports(store, record, write_jsonl, monkeypatch):
    """An order built two imports ago is merged (not every row sorted again) when it is first asked
    for after both, annotation orders too; an edit of a field drops the orders by it, which are then
    sorted afresh. Each equals a fresh build's."""
    from trajectories.store import AnnotationChange

    merged = []
    merge = projection_module.Projection._merged_order
    monkeypatch.setattr(
        projection_module.Projection,
        "_merged_order",
        lambda self, name, *args: merged.append(name) or merge(self, name, *args),
    )
    rows = lambda tag, n: [record(trajectory_id=f"{tag}{i:03d}", reward=i % 7 / 7) for i in range(n)]  # noqa: E731
    _add(store.uri, write_jsonl(rows("m", 30), "m.jsonl"))
    store.annotate(trajectory_ids=["m001", "m007"], change=AnnotationChange(is_success=False), user=None)
    orders = projection_module.Projection.every_order()
    for name, descending in orders:
        store.engine.current().order(name, descending)
    for tag in ("b", "c"):
        _add(store.uri, write_jsonl(rows(tag, 12), f"{tag}.jsonl"))
        store.engine.current()  # the new version is followed; nobody asks for an order
    store.annotate(trajectory_ids=["b003", "m002"], change=AnnotationChange(is_success=True), user=None)
    newest, fresh = store.engine.current(), TrajectoryStore(uri=store.uri).engine.current()
    assert newest.rows == fresh.rows == 54 and store.engine.appends == 2
    for name, descending in orders:
        assert newest.order(name, descending).tolist() == fresh.order(name, descending).tolist(), (name, descending)
    # Each import's rows come with a category (their analysis): that field moved, like is_success.
    assert set(merged) == {name for name, _ in orders} - {"is_success", "category"}


def test_rows_imported_while_the_previous_version_answers_keep_their_annotations(
    store, record, write_jsonl, held_builds, monkeypatch
):
    started, release = held_builds
    store.engine.background_rows = 0
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(4)], "a.jsonl"))
    assert store.page(query=TrajectoryQuery()).count == 4
    judged = [record(trajectory_id=f"n{i}", analysis={"is_success": False, "category": "late"}) for i in range(3)]
    _add(store.uri, write_jsonl(judged, "n.jsonl"))
    # The previous version answers, and follows the annotations written with the new rows meanwhile.
    assert store.page(query=TrajectoryQuery.where(category="late")).count == 0
    # Edits meanwhile are followed by reading their own rows: the import's annotation rows, whose
    # trajectories this version does not hold, are not located again at every edit.
    located = []
    positions_of = projection_module.Projection.positions_of
    spy = lambda self, keys: located.append(len(keys)) or positions_of(self, keys)  # noqa: E731
    monkeypatch.setattr(projection_module.Projection, "positions_of", spy)
    other = TrajectoryStore(uri=store.uri)
    for number in range(3):
        other.annotate(trajectory_ids=[f"a{number}"], change=store_change(), user="u")
        assert store.page(query=TrajectoryQuery.where(is_bookmarked=True)).count == number + 1
    assert located == [1, 1, 1]
    assert started.wait(10)
    release.set()
    _wait(lambda: store.page(query=TrajectoryQuery()).count == 7)
    assert store.engine.appends == 1
    assert sorted(row["trajectory_id"] for row in store.page(query=TrajectoryQuery.where(category="late")).rows) == [
        "n0", "n1", "n2",
    ]  # fmt: skip


def test_a_sparse_filter_pages_through_the_sort_order_in_growing_pieces(store, record, write_jsonl, monkeypatch):
    monkeypatch.setattr(projection_module, "_SCAN_STEP", 2)  # 40 rows read as a large store would be
    rows = [record(trajectory_id=f"t{i:02}", agent_name="rare" if i % 7 == 0 else "common") for i in range(40)]
    _add(store.uri, write_jsonl(rows))
    query = TrajectoryQuery.where(agent_name="rare")
    for page in (1, 2, 3):
        chosen = TrajectoryQuery(**{**query.__dict__, "ordering": (("trajectory_id", False),), "page": page,
                                    "page_size": 2})  # fmt: skip
        found = store.page(query=chosen)
        expected = ["t00", "t07", "t14", "t21", "t28", "t35"][(page - 1) * 2 : page * 2]
        assert ([row["trajectory_id"] for row in found.rows], found.count) == (expected, 6)
    # The default order (newest first) ties on created_at here: by id.
    assert [row["trajectory_id"] for row in store.page(query=query).rows] == ["t00", "t07", "t14", "t21", "t28", "t35"]


def test_while_an_import_is_projected_its_rows_and_the_earlier_ones_are_found(
    store, record, write_jsonl, held_builds, monkeypatch
):
    """While the next version is built after an import, a detail of a row the projection holds is
    answered from it (the import only appended); a row only the new version holds is read from the
    store; and the check that the newest version only appended is made once per version."""
    started, release = held_builds
    store.engine.background_rows = 0
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}", reward=0.25) for i in range(4)], "a.jsonl"))
    assert store.page(query=TrajectoryQuery()).count == 4
    layouts = []
    rows_layout = engine_module.rows_layout
    monkeypatch.setattr(engine_module, "rows_layout", lambda dataset: layouts.append(1) or rows_layout(dataset))
    _add(store.uri, write_jsonl([record(trajectory_id=f"n{i}", reward=0.75) for i in range(3)], "n.jsonl"))
    assert store.page(query=TrajectoryQuery()).count == 4, "the previous version answers lists meanwhile"
    assert started.wait(10)
    read_from_store = []
    annotation_rows = TrajectoryStore._annotation_rows
    monkeypatch.setattr(
        TrajectoryStore, "_annotation_rows", lambda self, ids: read_from_store.append(ids) or annotation_rows(self, ids)
    )
    for _ in range(3):
        assert store.get(trajectory_id="a2")["reward"] == 0.25
        assert store.page(query=TrajectoryQuery()).count == 4, "the previous version answers lists meanwhile"
    assert read_from_store == [] and layouts == [1]
    found = store.get(trajectory_id="n1")
    assert found["reward"] == 0.75 and found["steps"] and read_from_store == [["n1"]]
    release.set()
    _wait(lambda: store.page(query=TrajectoryQuery()).count == 7)


def test_a_trajectory_deleted_while_the_projection_is_rebuilt_is_not_found(store, record, write_jsonl, held_builds):
    """A detail is answered from the projection only when it holds the newest rows: one deleted by
    another server while this one rebuilds is gone at once, and a PATCH of it edits nothing."""
    started, release = held_builds
    store.engine.background_rows = 0
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(4)], "a.jsonl"))
    assert store.page(query=TrajectoryQuery()).count == 4
    assert store.get(trajectory_id="a1") is not None
    TrajectoryStore(uri=store.uri).delete(trajectory_ids=["a1"])
    assert store.page(query=TrajectoryQuery()).count == 4, "the previous version answers lists meanwhile"
    assert started.wait(10)
    assert store.get(trajectory_id="a1") is None
    assert store.get(trajectory_id="a2")["trajectory_id"] == "a2"
    release.set()


def test_each_annotation_field_says_when_it_last_changed(store, record, write_jsonl):
    """What cache keys hold instead of the annotations table's version: an edit moves the fields it
    changed, whether this process wrote it or followed another's."""
    from trajectories.store import AnnotationChange

    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(4)]))
    engine = store.engine

    def changed_at(*names: str) -> int:
        rows_version, changed = engine.answering_versions(frozenset(names))
        assert rows_version == store.versions()[0]
        return changed

    start = changed_at("is_success")
    store.annotate(trajectory_ids=["a0"], change=AnnotationChange(add_tags=("x",)), user=None)
    assert changed_at("is_success") == start
    tags_moved = changed_at("tags")
    assert tags_moved > start
    assert changed_at() == -1
    assert engine.answering_versions() == store.versions()
    other = TrajectoryStore(uri=store.uri)  # another process's edit: followed from its fragment
    other.annotate(trajectory_ids=["a1"], change=AnnotationChange(is_success=False, add_tags=("x",)), user=None)
    assert changed_at("is_success") > tags_moved
    assert changed_at("category") == start
    other.annotate(trajectory_ids=["a1"], change=AnnotationChange(add_tags=("x",)), user=None)  # no change
    assert changed_at("tags", "is_success") == changed_at("is_success")
    assert [row["tags"] for row in engine.annotations_of(["a1", "a0"])] == [["arith", "x"], ["arith", "x"]]
    assert engine.annotations_of(["a1", "missing"]) is None


def test_while_the_next_projection_is_built_answers_are_keyed_by_the_previous_one(
    store, record, write_jsonl, held_builds
):
    """The projection that answers names the versions of a cache key: while the next one is built,
    its answers are cached as the previous version's (not as the newest's), and edits of its rows
    still move the fields they changed."""
    from trajectories.store import AnnotationChange

    _, release = held_builds
    store.engine.background_rows = 0
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}") for i in range(4)], "a.jsonl"))
    serving, before = store.engine.answering_versions(frozenset({"is_success"}))
    _add(store.uri, write_jsonl([record(trajectory_id=f"b{i}") for i in range(2)], "b.jsonl"))
    other = TrajectoryStore(uri=store.uri)
    other.annotate(trajectory_ids=["a0"], change=AnnotationChange(is_success=False), user=None)
    rows_version, changed = store.engine.answering_versions(frozenset({"is_success"}))
    assert rows_version == serving < store.versions()[0]
    assert changed == store.versions()[1] > before
    assert store.engine.annotations_of(["a0"])[0]["is_success"] is False
    assert store.engine.annotations_of(["b0"]) is None, "not held yet"
    assert reads.count(query=TrajectoryQuery()) == 4
    reads_before = store.reads
    assert reads.count(query=TrajectoryQuery()) == 4
    assert store.reads == reads_before, "the previous version's answer, cached as its own"
    release.set()
    _wait(lambda: store.engine.peek() is not None and store.engine.peek().rows == 6)
    assert reads.count(query=TrajectoryQuery()) == 6


def test_an_edit_keeps_what_reads_none_of_the_fields_it_changed(store, record, write_jsonl):
    """A tag added keeps the order by success, the statistics of every row and the untouched columns
    themselves (not copied); an edit of success makes those again, with the new value."""
    from trajectories.store import AnnotationChange

    judged = [{"is_success": i % 2 == 0, "category": "c", "root_cause": ""} for i in range(6)]
    _add(store.uri, write_jsonl([record(trajectory_id=f"a{i}", analysis=judged[i]) for i in range(6)]))
    engine = store.engine
    before = engine.current()
    by_success = before.order("is_success", True)
    stats = engine.stats(TrajectoryQuery(), by="agent_name")
    store.annotate(trajectory_ids=["a1"], change=AnnotationChange(add_tags=("x",)), user=None)
    tagged = engine.current()
    assert tagged is not before
    assert tagged.order("is_success", True) is by_success
    assert tagged.annotations.columns["is_success"] is before.annotations.columns["is_success"]
    assert tagged.annotations.columns["tags"] is not before.annotations.columns["tags"]
    assert tagged.cache["by annotation fields"], "the statistics of every row are kept"
    assert engine.stats(TrajectoryQuery(), by="agent_name") == stats
    store.annotate(trajectory_ids=["a1"], change=AnnotationChange(is_success=True), user=None)
    judged = engine.current()
    assert judged.order("is_success", True) is not by_success
    assert judged.ids.values_at(judged.order("is_success", True)[:4]) == ["a0", "a1", "a2", "a4"]
    assert engine.stats(TrajectoryQuery(), by="agent_name")[0]["successes"] == stats[0]["successes"] + 1
