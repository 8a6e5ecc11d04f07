"""Projections shared between processes: written once per table layout, mapped by the others, and
answering exactly as a projection built in memory does."""

from __future__ import annotations

import mmap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
from django.http import QueryDict

from tests.test_store import _batch
from trajectories import priority
from trajectories.analysis import GroupQuery
from trajectories.query import parse_query
from trajectories.store import AnnotationChange, TrajectoryStore, analytics, build_in_child, mapped
from trajectories.store.projection import _ORDERS_BEFORE, AnnotationColumns, Projection, _located

pytestmark = pytest.mark.django_db

_QUERIES = tuple(
    parse_query(QueryDict(text))
    for text in (
        "ordering=trajectory_id&page_size=100",
        "ordering=-reward&page_size=7&page=2",
        "ordering=-iteration_id,exec_time&page_size=100",
        "training_id=训练-二&ordering=created_at&page_size=100",
        "tool=calculator&reward_min=0.3&page_size=100",
        "search=T01&page_size=100",
        "trajectory_id=t0*5&page_size=100",
    )
)


def _records(record, start: int, count: int) -> list[dict]:
    return [
        record(
            trajectory_id=f"t{i:03d}",
            training_id="训练-二" if i % 3 else "run-a",
            iteration_id=i % 7,
            reward=None if i % 5 == 0 else (i * 37 % 11) / 10,
            exec_time=float(i % 4),
            tags=[f"tag{i % 2}"],
        )
        for i in range(start, start + count)
    ]


def _add(store: TrajectoryStore, records: list[dict]) -> None:
    batch = _batch(records)
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)


def _server(uri: str, root) -> TrajectoryStore:
    """Another web process of this machine: its own store object, sharing projections under `root`."""
    return TrajectoryStore(uri=uri, projection_dir=root, shared_rows=1)


def _lowered(call, *args, **kwargs):
    """`call` on a thread at a background build's priority (the calling one, a pool's thread)."""
    priority.lower_this_thread(priority.BUILD_NICE)
    return call(*args, **kwargs)


def _answers(store: TrajectoryStore) -> list:
    pages = [(page.count, page.rows) for page in (store.page(query=query) for query in _QUERIES)]
    everything = parse_query(QueryDict(""))
    stats = [store.stats_by(query=everything, by=by) for by in ("iteration_id", "training_id", "tools")]
    groups = store.groups(query=GroupQuery(rows=everything, ordering=(("reward_std", True),)))
    return [*pages, store.facets(), stats, groups]


def _mapped(projection: Projection) -> bool:
    return all(
        isinstance(column.values, np.memmap) for column in projection.columns.values() if hasattr(column, "values")
    )


def test_a_second_process_maps_what_the_first_built_and_answers_the_same(store, record, tmp_path, monkeypatch):
    _add(store, _records(record, 0, 40))
    root = tmp_path / "projections"
    first = _server(store.uri, root)
    expected = _answers(store)  # a store of its own, nothing shared
    assert _answers(first) == expected
    built = first.engine.current()
    assert built.files is not None and built.files.parent == root and _mapped(built)

    def no_build(*args, **kwargs):
        raise AssertionError("the second process read the table instead of mapping the shared projection")

    monkeypatch.setattr(Projection, "load", no_build)
    second = _server(store.uri, root)
    assert _answers(second) == expected
    served = second.engine.current()
    assert served.files == built.files and _mapped(served)
    # What analytics derive from the rows (group index, per-key value orders) is mapped too.
    assert isinstance(analytics.group_index(served).order, np.memmap)
    assert isinstance(served.ids._haystack(lowered=True), mmap.mmap)  # the ids' bytes searches scan
    # And the analytics' per-row weights and group numbers of number columns, the same as made here.
    for name, made in (("reward", "presence"), ("reward", "filled"), ("iteration_id", "floats")):
        mapped_values = getattr(served.columns[name], made)()
        assert isinstance(mapped_values, np.memmap), (name, made)
        fresh = type(served.columns[name])(values=np.array(served.columns[name].values), kind=served.columns[name].kind)
        assert np.array_equal(mapped_values, getattr(fresh, made)(), equal_nan=True), (name, made)
    codes, labels = served.columns["iteration_id"].keys()
    assert isinstance(codes, np.memmap) and labels == sorted({r % 7 for r in range(40)})


def test_processes_seeing_a_new_version_at_once_build_it_once(store, record, tmp_path, monkeypatch):
    _add(store, _records(record, 0, 30))
    root = tmp_path / "projections"
    servers = [_server(store.uri, root) for _ in range(3)]
    load = Projection.load
    loads = []

    def slow_load(*args, **kwargs):
        loads.append(threading.current_thread().name)
        time.sleep(0.3)  # long enough for every server to be waiting on the first
        return load(*args, **kwargs)

    monkeypatch.setattr(Projection, "load", slow_load)
    with ThreadPoolExecutor(3) as pool:  # background builds: they wait for each other
        answers = list(pool.map(lambda server: _lowered(_answers, server), servers))
    assert len(loads) == 1
    assert answers == [_answers(store)] * 3


def test_processes_warming_at_once_sort_each_order_once(store, record, tmp_path, monkeypatch):
    _add(store, _records(record, 0, 30))
    root = tmp_path / "projections"
    projections = [_server(store.uri, root).engine.current() for _ in range(3)]
    built = Projection._built_order
    sorted_here = []

    def slow(self, name, descending, before=None):
        sorted_here.append((name, descending))
        time.sleep(0.05)
        return built(self, name, descending, before)

    monkeypatch.setattr(Projection, "_built_order", slow)
    with ThreadPoolExecutor(3) as pool:  # warming in the background: one sorts, the others wait
        orders = list(pool.map(lambda projection: _lowered(projection.order, "exec_time", True), projections))
    assert sorted_here == [("exec_time", True)]
    assert all(np.array_equal(order, orders[0]) for order in orders)
    # A request never waits on another process's background work (it runs at the lowest priority).
    held = threading.Event()
    release = threading.Event()

    def hold(projection):
        def wait_and_sort(name, descending):
            held.set()
            assert release.wait(10)
            return built(projection, name, descending)

        return _lowered(mapped.derived, projection.files, ("order", "reward", False),
                        lambda: wait_and_sort("reward", False))  # fmt: skip

    with ThreadPoolExecutor(1) as pool:
        holding = pool.submit(hold, projections[0])
        assert held.wait(10)
        started = time.monotonic()
        asked = projections[1].order("reward", False)
        assert time.monotonic() - started < 5
        release.set()
        assert np.array_equal(holding.result(), asked)


def test_sort_orders_are_built_once_and_orders_by_annotations_are_not_shared(store, record, tmp_path):
    _add(store, _records(record, 0, 30))
    root = tmp_path / "projections"
    first, second = _server(store.uri, root), _server(store.uri, root)
    by_reward = first.engine.current().order("reward", True)
    shared = second.engine.current().order("reward", True)
    assert isinstance(shared, np.memmap) and np.array_equal(shared, by_reward)
    shared_before = sorted((first.engine.current().files / "derived").iterdir())
    by_category = first.engine.current().order("category", False)
    assert not isinstance(by_category, np.memmap)
    assert sorted((first.engine.current().files / "derived").iterdir()) == shared_before


def test_edits_stay_per_process_and_imports_write_new_layouts(store, record, tmp_path):
    _add(store, _records(record, 0, 20))
    root = tmp_path / "projections"
    first, second = _server(store.uri, root), _server(store.uri, root)
    assert _answers(first) == _answers(second)
    first.annotate(trajectory_ids=["t003"], change=AnnotationChange(add_tags=("编辑",), is_bookmarked=True), user=None)
    assert _answers(second) == _answers(first) == _answers(store)
    for start in (20, 30, 40, 50):  # four imports: four new layouts, each mapped by the other process
        _add(store, _records(record, start, 10))
        assert _answers(first) == _answers(store)
        assert _answers(second) == _answers(store)
        assert second.engine.current().files == first.engine.current().files
        for server in (first, second):  # orders merged here or mapped from the other's files alike
            projection = server.engine.current()
            projection.warm()
            assert not projection.cache.get(_ORDERS_BEFORE), "no earlier version's order is kept alive"
    tagged = parse_query(QueryDict("tag=编辑"))
    assert [row["trajectory_id"] for row in second.page(query=tagged).rows] == ["t003"]
    assert len([path for path in root.iterdir() if not path.name.startswith(".")]) == 3  # older layouts removed


def test_damaged_or_unwritable_files_fall_back_to_a_projection_of_its_own(store, record, tmp_path):
    _add(store, _records(record, 0, 25))
    root = tmp_path / "projections"
    expected = _answers(store)
    first = _server(store.uri, root)
    assert _answers(first) == expected
    directory = first.engine.current().files
    (directory / "reward.values.npy").write_bytes(b"\x93NUMPY broken")
    second = _server(store.uri, root)
    assert _answers(second) == expected
    assert second.engine.current().files is None
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the root cannot be made: a disk mounted read-only, full, or mis-set
    third = _server(store.uri, blocked / "projections")
    assert _answers(third) == expected
    assert third.engine.current().files is None


def test_derived_values_are_shared_when_they_can_be(tmp_path):
    (tmp_path / "derived").mkdir()
    made = mapped.derived(tmp_path, ("pair",), lambda: (np.arange(5, dtype=np.int64), 5, None))
    assert isinstance(made[0], np.memmap) and made[1:] == (5, None)

    def not_again():
        raise AssertionError("built twice")

    again = mapped.derived(tmp_path, ("pair",), not_again)
    assert np.array_equal(again[0], np.arange(5)) and again[1:] == (5, None)
    kept = mapped.derived(tmp_path, ("python",), lambda: {"a": [1, 2]})  # not shareable: kept as made
    assert kept == {"a": [1, 2]}
    assert not list((tmp_path / "derived").glob(".writing-*"))


def test_annotation_rows_find_their_trajectories_whichever_side_is_hashed():
    """A few annotation rows among many trajectories hash the annotation keys; repeated keys (never
    written by the store, but possible in a damaged table) go the other way: both agree."""
    ids = pa.array([f"t{i:03d}" for i in range(100)] + ["雪"])
    few = pa.chunked_array([pa.array(["t007", "missing", "雪"]), pa.array(["t099"])])
    assert _located(few, ids).tolist() == [7, -1, 100, 99]
    repeated = pa.chunked_array([pa.array(["t007", "t007", "missing"])])
    assert _located(repeated, ids).tolist() == [7, 7, -1]
    assert _located(pa.chunked_array([], pa.string()), ids).tolist() == []


def test_a_restore_then_another_delete_of_as_many_rows_is_not_taken_for_the_first(store, record, tmp_path):
    """Layouts that delete as many rows of the same fragment are told apart by their deletion files."""
    _add(store, _records(record, 0, 30))
    web = _server(store.uri, tmp_path / "projections")
    everything = parse_query(QueryDict("ordering=trajectory_id&page_size=100"))

    def ids(server):
        return [row["trajectory_id"] for row in server.page(query=everything).rows]

    assert len(ids(web)) == 30
    store.snapshot(tag="full")
    store.delete(trajectory_ids=["t003"])
    assert "t003" not in ids(web)
    store.restore(plan=store.restore_plan(tag="full"))
    store.delete(trajectory_ids=["t007"])
    assert ids(web) == ids(store) and "t003" in ids(web) and "t007" not in ids(web)
    assert web.get(trajectory_id="t003")["iteration_id"] == 3


def test_a_new_process_reads_the_annotations_whole_not_row_by_row(store, record, tmp_path, monkeypatch):
    records = _records(record, 0, 40)
    for index, made in enumerate(records):
        made["analysis"] = {"is_success": True, "category": "c", "root_cause": f"cause {index}"}
    _add(store, records)
    root = tmp_path / "projections"
    _answers(_server(store.uri, root))
    patched = []
    original = AnnotationColumns.patched

    def spy(self, positions, rows, *, version):
        patched.append(len(rows))
        return original(self, positions, rows, version=version)

    monkeypatch.setattr(AnnotationColumns, "patched", spy)
    second = _server(store.uri, root)
    assert _answers(second) == _answers(store)
    assert second.engine.current().files is not None and patched == []


def _settled(server: TrajectoryStore, rows: int) -> Projection:
    """The server's projection once its background build holds `rows` rows."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        projection = server.engine.current()
        if projection.rows == rows:
            return projection
        time.sleep(0.05)
    raise AssertionError(f"no projection of {rows} rows within a minute")


def test_new_versions_are_written_by_a_child_process_and_mapped(store, record, tmp_path, settings):
    settings.TRAJSITE_PROJECTION_DIR = str(tmp_path / "projections")
    server = TrajectoryStore(uri=store.uri, projection_dir=settings.TRAJSITE_PROJECTION_DIR, shared_rows=1,
                             background_rows=0, build_elsewhere=build_in_child)  # fmt: skip
    _add(store, _records(record, 0, 30))
    assert _answers(server) == _answers(store)  # the first projection: built here, nothing answers meanwhile
    assert server.engine.built_elsewhere == 0
    server.annotate(trajectory_ids=["t004"], change=AnnotationChange(add_tags=("子进程",)), user=None)
    for step, start in enumerate((30, 40), start=1):
        _add(store, _records(record, start, 10))
        projection = _settled(server, start + 10)
        assert server.engine.built_elsewhere == step
        assert server.engine.appends == 0, "the web process read the new rows instead of mapping the child's"
        assert _mapped(projection) and projection.files.parent == tmp_path / "projections"
        assert _answers(server) == _answers(store)
        # The child shared every sort order, merged into the previous version's.
        assert isinstance(projection.order("exec_time", True), np.memmap)
    tagged = parse_query(QueryDict("tag=子进程"))
    assert [row["trajectory_id"] for row in server.page(query=tagged).rows] == ["t004"]


def test_a_child_that_fails_leaves_the_build_to_the_web_process(store, record, tmp_path, settings, caplog):
    settings.TRAJSITE_PROJECTION_DIR = str(tmp_path / "projections")
    failing = lambda *, version, previous: build_in_child(version=version + 1000, previous=previous)  # noqa: E731
    server = TrajectoryStore(uri=store.uri, projection_dir=settings.TRAJSITE_PROJECTION_DIR, shared_rows=1,
                             background_rows=0, build_elsewhere=failing)  # fmt: skip
    _add(store, _records(record, 0, 20))
    assert _answers(server) == _answers(store)
    _add(store, _records(record, 20, 10))
    assert _settled(server, 30).files is not None
    assert _answers(server) == _answers(store)
    assert server.engine.built_elsewhere == 0
    assert "not built by a child process" in caplog.text
