"""The LanceDB repository on a real temp-dir database: writes, reads, quoting, maintenance."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from trajectories.importing.batches import BatchBuilder
from trajectories.importing.errors import Location
from trajectories.importing.validation import Defaults, validate
from trajectories.query import TextMatch, TrajectoryQuery
from trajectories.store import AnnotationChange, TrajectoryStore

HOSTILE = ["x' OR '1'='1", "a\\b", "it''s", "-- comment", "%_", "ü€😀", "'; DROP TABLE t; --", "y" * 512]


def _batch(records):
    builder = BatchBuilder(on_duplicate="skip")
    for index, item in enumerate(records):
        builder.add(
            validate(
                item, source=f"t.jsonl:{index + 1}", source_format="canonical", defaults=Defaults(imported_at_us=1)
            ),
            location=Location("t.jsonl", index + 1),
        )
    return builder.build()


def test_append_then_get_and_existing_ids(store, record):
    batch = _batch([record(trajectory_id=f"t{i}") for i in range(5)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    assert store.count() == 5
    assert store.existing_ids(ids=["t1", "t4", "zzz"]) == {"t1", "t4"}
    assert store.get(trajectory_id="t3")["data_id"] == "q7"
    assert store.get(trajectory_id="missing") is None


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_match_only_themselves(store, record, hostile):
    batch = _batch([record(trajectory_id="plain"), record(trajectory_id=hostile)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    assert store.get(trajectory_id=hostile)["trajectory_id"] == hostile
    assert store.existing_ids(ids=[hostile]) == {hostile}
    assert store.annotations(trajectory_ids=[hostile])[hostile]["category"] == "correct"
    query = TrajectoryQuery(filters=(("trajectory_id", TextMatch(exact=(hostile,))),))
    assert [row["trajectory_id"] for row in store.page(query=query).rows] == [hostile]
    assert store.count() == 2
    assert store.get(trajectory_id="x" * 100_000) is None
    assert store.count() == 2
    # Before any list is read, `get` asks LanceDB itself (no projection): still only this id.
    fresh = TrajectoryStore(uri=store.uri)
    assert fresh.get(trajectory_id=hostile)["trajectory_id"] == hostile
    assert fresh.engine.builds == 0


def test_annotations_default_when_absent(store, record):
    batch = _batch([record(trajectory_id="plain", analysis=None, tags=None)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    assert batch.annotations == {}
    stored = store.get(trajectory_id="plain")
    assert (stored["is_bookmarked"], stored["is_success"], stored["tags"]) == (False, None, [])


def test_upsert_replaces_and_counts(store, record):
    first = _batch([record(trajectory_id="a", reward=0.1)])
    store.insert_new(trajectories=first.trajectories, annotations=first.annotations)
    second = _batch([record(trajectory_id="a", reward=0.2), record(trajectory_id="b")])
    result = store.upsert(trajectories=second.trajectories, annotations=second.annotations)
    assert (result.inserted, result.updated) == (1, 1)
    assert store.get(trajectory_id="a")["reward"] == 0.2
    assert store.count() == 2


def test_default_order_is_newest_first_with_id_tiebreak(store, record):
    records = [record(trajectory_id=f"t{i}", created_at=1000 + (i // 2)) for i in range(6)]
    batch = _batch(records)
    store.insert_new(trajectories=batch.trajectories)
    first = store.page(query=TrajectoryQuery(page_size=4))
    assert [row["trajectory_id"] for row in first.rows] == ["t4", "t5", "t2", "t3"]
    assert first.count == 6
    second = store.page(query=TrajectoryQuery(page_size=4, page=2))
    assert [row["trajectory_id"] for row in second.rows] == ["t0", "t1"]


def test_optimize_compacts_indexes_and_keeps_recent_versions(store, record):
    for index in range(4):
        batch = _batch([record(trajectory_id=f"t{index}")])
        store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    before = store.stats()[0]
    assert before.fragments == 4
    after = store.optimize(keep_versions=timedelta(minutes=60))[0]
    assert after.fragments == 1
    assert after.rows == 4
    assert "trajectory_id_idx" in after.indexes
    # Versions younger than the window survive: a reader pinned to one can still read it.
    assert len(store._table("trajectories").list_versions()) > 1


def test_table_schemas_are_created_empty(store):
    assert store.count() == 0
    assert store.stats()[0].rows == 0
    assert isinstance(store._table("trajectories").schema, pa.Schema)


def test_get_is_the_same_with_and_without_a_loaded_projection(store, record):
    batch = _batch([record(trajectory_id="a", tags=["x", "y"], custom={"k": 1}), record(trajectory_id="b")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    store.annotate(trajectory_ids=["a"], change=AnnotationChange(notes="why", is_bookmarked=True), user="me")
    assert store.engine.peek() is None
    cold = store.get(trajectory_id="a")
    store.page(query=TrajectoryQuery())
    assert store.engine.peek() is not None
    warm = store.get(trajectory_id="a")
    assert warm == cold
    assert (warm["notes"], warm["is_bookmarked"], warm["tags"], warm["updated_by"]) == ("why", True, ["x", "y"], "me")
    assert store.get(trajectory_id="zzz") is None


def test_projection_follows_writes_from_another_handle(store, record, settings):
    from trajectories.store import TrajectoryStore

    first = _batch([record(trajectory_id="a")])
    store.insert_new(trajectories=first.trajectories, annotations=first.annotations)
    assert store.page(query=TrajectoryQuery()).count == 1
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)  # as another process would
    second = _batch([record(trajectory_id="b")])
    other.insert_new(trajectories=second.trajectories, annotations=second.annotations)
    other.annotate(trajectory_ids=["a"], change=AnnotationChange(category="seen"), user=None)
    page = store.page(query=TrajectoryQuery())
    assert page.count == 2
    assert {row["trajectory_id"]: row["category"] for row in page.rows} == {"a": "seen", "b": "correct"}
    other.delete(trajectory_ids=["a"])
    assert [row["trajectory_id"] for row in store.page(query=TrajectoryQuery()).rows] == ["b"]


def test_patched_annotations_equal_a_fresh_read(store, record, settings):
    """Own writes are folded into the loaded projection; the result must equal a full re-read."""
    import random

    from trajectories.query import TrajectoryQuery as Query
    from trajectories.store import TrajectoryStore

    batch = _batch(
        [
            record(trajectory_id=f"t{i:03d}", analysis=None if i % 3 else {"category": f"c{i % 4}"}, tags=None)
            for i in range(120)
        ]
    )
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    store.page(query=Query())
    rng = random.Random(5)
    words = ["alpha", "beta", "zeta", "ämne", "a", None]
    for _ in range(25):
        ids = [f"t{rng.randrange(120):03d}" for _ in range(rng.randint(1, 6))]
        change = AnnotationChange(
            category=rng.choice(words),
            notes=rng.choice(words),
            root_cause=rng.choice(words),
            is_success=rng.choice([True, False, None]),
            is_bookmarked=rng.random() < 0.5,
            add_tags=tuple(rng.sample(["x", "y", "new-" + str(rng.randrange(50))], 2)),
            remove_tags=tuple(rng.sample(["x", "y"], 1)),
        )
        builds = store.engine.builds
        store.annotate(trajectory_ids=ids, change=change, user=rng.choice(["u1", "u2"]))
        fresh = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
        for query in (
            Query(page_size=200, ordering=(("category", False),)),
            Query(page_size=200, ordering=(("is_success", True), ("trajectory_id", False))),
            Query.where(tags="x").replace(page_size=200),
            Query(page_size=200, filters=(("category", TextMatch(exact=("beta", "ämne"))),)),
        ):
            patched = store.page(query=query)
            expected = fresh.page(query=query).rows
            for left, right in zip(patched.rows, expected, strict=True):
                assert left == right, {k: (left[k], right.get(k)) for k in left if left[k] != right.get(k)}
        # Facet counts of unchanged fields are kept across the edit, the annotation ones recounted.
        assert store.facets() == fresh.facets()
        assert store.engine.builds == builds, "an own write must not rebuild the projection"
    assert store.facets() == TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR).facets()


def test_an_edit_keeps_what_the_rows_alone_decide(store, record):
    """Masks of trajectory fields, their facet counts and sort orders survive an annotation edit;
    those of annotation fields are dropped and recomputed from the new annotations."""
    batch = _batch([record(trajectory_id=f"t{i}", agent_name=f"agent-{i % 3}") for i in range(30)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    by_agent, by_tag = TrajectoryQuery.where(agent_name="agent-1"), TrajectoryQuery.where(tags="keep")
    assert store.page(query=by_agent).count == 10 and store.page(query=by_tag).count == 0
    store.facets()
    before = store.engine.current()
    store.annotate(trajectory_ids=["t1", "t2"], change=AnnotationChange(add_tags=("keep",)), user=None)
    after = store.engine.current()
    assert after is not before and after.annotations.version > before.annotations.version
    assert after.cache["masks"][by_agent.filter_key()] is before.cache["masks"][by_agent.filter_key()]
    assert by_tag.filter_key() not in after.cache["masks"]
    assert after.cache["facets"]["agent_name"] is before.cache["facets"]["agent_name"]
    assert "tags" not in after.cache["facets"]
    assert store.page(query=by_tag).count == 2
    assert dict(store.facets()["tags"])["keep"] == 2


def test_another_server_follows_rows_edited_again_and_restored(store, record, settings):
    """A second server follows edits by reading only new fragments, also when a row edited again
    makes its earlier fragment vanish, and when a restore goes back past an edit (the row is blank
    again): always equal to a fresh read, never a full re-read."""
    from trajectories.store import TrajectoryStore

    batch = _batch([record(trajectory_id=f"t{i}", tags=None, analysis=None) for i in range(40)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    query = TrajectoryQuery(page_size=50, ordering=(("trajectory_id", False),))
    other.page(query=query)
    store.snapshot(tag="before-edits")
    builds = other.engine.builds
    for tag in ("one", "two", "three"):
        store.annotate(trajectory_ids=["t1", "t2"], change=AnnotationChange(add_tags=(tag,)), user=None)
        store.annotate(trajectory_ids=["t2"], change=AnnotationChange(category=tag), user=None)
        assert other.page(query=query).rows == TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR).page(query=query).rows
    rows = {row["trajectory_id"]: row for row in other.page(query=query).rows}
    assert rows["t1"]["tags"] == ["one", "two", "three"] and rows["t2"]["category"] == "three"
    assert other.engine.builds == builds, "followed by reading the edits' fragments alone"

    store.restore(plan=store.restore_plan(tag="before-edits"))
    rows = {row["trajectory_id"]: row for row in other.page(query=query).rows}
    assert rows["t1"]["tags"] == [] and rows["t2"]["category"] is None
    assert other.page(query=query).rows == TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR).page(query=query).rows


def test_get_follows_another_servers_edit_from_the_projection(store, record, settings):
    from trajectories.store import TrajectoryStore

    batch = _batch([record(trajectory_id="a"), record(trajectory_id="b")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    store.page(query=TrajectoryQuery())
    builds, reads_before = store.engine.builds, store.engine.current().annotations.version
    TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR).annotate(
        trajectory_ids=["a"], change=AnnotationChange(notes="later 后来"), user="you"
    )
    found = store.get(trajectory_id="a")
    assert (found["notes"], found["updated_by"]) == ("later 后来", "you")
    assert store.engine.current().annotations.version > reads_before and store.engine.builds == builds


def test_another_server_follows_a_bulk_edit_then_each_row_edited_again(store, record, settings):
    """A bulk edit writes one fragment for both rows; editing each again empties it and it vanishes:
    the row edited first keeps its value (it is in a fragment read before), nothing turns blank."""
    from trajectories.store import TrajectoryStore

    batch = _batch([record(trajectory_id=key, tags=["x"]) for key in ("a", "b", "c")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    query = TrajectoryQuery(ordering=(("trajectory_id", False),))
    other.page(query=query)
    store.annotate(trajectory_ids=["a", "b"], change=AnnotationChange(tags=["bulk"]), user=None)
    other.page(query=query)
    for key in ("a", "b"):
        store.annotate(trajectory_ids=[key], change=AnnotationChange(tags=[key.upper()]), user=None)
        other.page(query=query)
    assert [row["tags"] for row in other.page(query=query).rows] == [["A"], ["B"], ["x"]]
    assert other.page(query=query).rows == TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR).page(query=query).rows


def test_after_a_restore_an_edited_row_has_its_value_from_before(store, record, settings):
    from trajectories.store import TrajectoryStore

    batch = _batch([record(trajectory_id=key, tags=["x"]) for key in ("a", "b")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    query = TrajectoryQuery(ordering=(("trajectory_id", False),))
    other.page(query=query)
    store.snapshot(tag="before")
    store.annotate(trajectory_ids=["a"], change=AnnotationChange(tags=["A"]), user=None)
    assert [row["tags"] for row in other.page(query=query).rows] == [["A"], ["x"]]
    store.restore(plan=store.restore_plan(tag="before"))
    assert [row["tags"] for row in other.page(query=query).rows] == [["x"], ["x"]]


def test_edits_ask_the_projection_which_rows_exist_only_while_it_holds_the_newest_rows(store, record, settings):
    """An edit's existence checks come from the projection while every row it holds is in the newest
    version; a row deleted or imported by another server since is asked of the table."""
    from trajectories.store.repository import TRAJECTORIES_TABLE, _latest

    batch = _batch([record(trajectory_id=key) for key in ("a", "b", "c")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    store.page(query=TrajectoryQuery())
    newest = lambda: _latest(store._table(TRAJECTORIES_TABLE))  # noqa: E731
    assert store.engine.held_in(newest(), ["a", "c", "zzz"]) == {"a", "c"}

    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    more = _batch([record(trajectory_id="d")])
    other.insert_new(trajectories=more.trajectories, annotations=more.annotations)
    assert store.engine.held_in(newest(), ["a", "d"]) == {"a"}  # appended rows: what it holds still holds
    assert store.annotate(trajectory_ids=["a", "d"], change=AnnotationChange(notes="新"), user=None) == 2

    other.delete(trajectory_ids=["b"])
    assert store.engine.held_in(newest(), ["a", "b"]) == set()  # rows changed: nothing taken from memory
    assert store.annotate(trajectory_ids=["b"], change=AnnotationChange(notes="ghost"), user=None) == 0
    assert store.annotations(trajectory_ids=["b"])["b"]["notes"] is None
    assert other.annotations(trajectory_ids=["a", "d"]) == store.annotations(trajectory_ids=["a", "d"])
    assert {value["notes"] for value in store.annotations(trajectory_ids=["a", "d"]).values()} == {"新"}


def test_threads_of_one_process_editing_one_row_keep_every_edit(store, record):
    """Each edit reads the row, changes it and commits on the version it read: a commit made by
    another thread in between must conflict (and be retried), never be written over. A dataset a
    writer commits through is its own: LanceDB moves that object to the version it commits."""
    from concurrent.futures import ThreadPoolExecutor

    batch = _batch([record(trajectory_id="one", tags=None)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    server = TrajectoryStore(uri=store.uri)  # its handles opened at the newest versions: the only writer
    server.page(query=TrajectoryQuery())
    change = lambda n: AnnotationChange(add_tags=(f"t{n:02d}",))  # noqa: E731
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: server.annotate(trajectory_ids=["one"], change=change(n), user=None), range(40)))
    assert sorted(TrajectoryStore(uri=store.uri).annotations(trajectory_ids=["one"])["one"]["tags"]) == [
        f"t{n:02d}" for n in range(40)
    ]


def test_a_write_does_not_move_a_dataset_another_thread_reads_or_writes_through(store, record):
    from trajectories.store.repository import ANNOTATIONS_TABLE

    batch = _batch([record(trajectory_id=key) for key in ("a", "b")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    first, second = store._newest(ANNOTATIONS_TABLE), store._newest(ANNOTATIONS_TABLE)
    version = first.version
    first.merge_insert("trajectory_id").when_matched_update_all().execute(
        first.to_table(filter=pc.field("trajectory_id") == "a")
    )
    assert (first.version, second.version) == (version + 1, version)
    store.annotate(trajectory_ids=["b"], change=AnnotationChange(notes="moved?"), user=None)
    assert second.version == version and store._newest(ANNOTATIONS_TABLE).version == version + 2


def test_lancedb_caches_stay_within_their_bounds_however_many_versions_are_edited(store, record):
    """Every version read leaves its manifest in LanceDB's metadata cache: unbounded (its defaults are
    GBs), a worker's heap grew for as long as people edited."""
    batch = _batch([record(trajectory_id=f"t{i}") for i in range(20)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    bound = 64 * 1024
    bounded = TrajectoryStore(uri=store.uri, cache_bytes=(bound, bound))
    unbounded = TrajectoryStore(uri=store.uri)
    for n in range(60):
        for server in (bounded, unbounded):
            server.annotate(trajectory_ids=[f"t{n % 20}"], change=AnnotationChange(add_tags=(f"x{n}",)), user=None)
            server.page(query=TrajectoryQuery())
            # Through the LanceDB tables too, which then follow each version.
            assert tuple(table.version for table in server.stats()) == server.sync()
    # Each session on its own (a dataset opened outside the store's session would escape the bound and
    # not be counted): the tables' and the datasets' caches, index pages and metadata each.
    for session in (lambda server: server._tables_session.size_bytes, lambda server: server._session.size_bytes()):
        assert session(unbounded) > 2 * bound  # what the bounds keep out
        assert session(bounded) <= 2 * bound
    assert bounded.cache_bytes() <= 4 * bound
    assert {"x0", "x20", "x40"} <= set(bounded.annotations(trajectory_ids=["t0"])["t0"]["tags"])


def test_a_workers_first_requests_on_several_threads_share_one_store(settings, tmp_path):
    """A worker's first requests arrive on several threads at once; each must get the store the
    others got (a thread that looked on one store in its read scope and read through another found
    no tables open on it: a 500 in CI)."""
    import threading

    from trajectories.store import get_store, reset_store

    settings.TRAJSITE_DATA_DIR = str(tmp_path / "lancedb")
    reset_store()
    start = threading.Barrier(6)
    got: list = []

    def first() -> None:
        start.wait()
        got.append(get_store())

    threads = [threading.Thread(target=first) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len({id(store) for store in got}) == 1 and got[0] is get_store()
    finally:
        reset_store()


def test_two_stores_of_one_uri_in_one_read_scope_each_open_their_tables(store, record):
    from trajectories.store import read_scope

    batch = _batch([record(trajectory_id="a")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    with read_scope():
        assert [row["trajectory_id"] for row in store.page(query=TrajectoryQuery()).rows] == ["a"]
        other = TrajectoryStore(uri=store.uri)
        assert [row["trajectory_id"] for row in other.page(query=TrajectoryQuery()).rows] == ["a"]


def test_what_a_sync_pinned_stays_at_its_version_through_this_processs_own_writes(store, record):
    """Reads of one request keep the versions its sync found, however this process writes meanwhile
    (the pinned datasets are checked out from one probe, and writes go through others)."""
    from trajectories.store.repository import ANNOTATIONS_TABLE

    batch = _batch([record(trajectory_id=key) for key in ("a", "b")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    store.annotate(trajectory_ids=["a"], change=AnnotationChange(notes="one"), user=None)
    store.sync()
    pinned = store._datasets[ANNOTATIONS_TABLE]
    version = pinned.version
    store.annotate(trajectory_ids=["b"], change=AnnotationChange(notes="two"), user=None)
    assert pinned.version == version and store.sync()[1] == version + 1


def test_counts_and_table_handles_follow_another_servers_writes(store, record):
    from trajectories.store.repository import TRAJECTORIES_TABLE

    server = TrajectoryStore(uri=store.uri)
    assert server.count() == 0
    batch = _batch([record(trajectory_id=key) for key in ("a", "b", "c")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    assert server.sync(force=True)[0] == store.sync()[0]
    assert server.count() == 3
    assert server._table(TRAJECTORIES_TABLE).version == store.sync()[0]
