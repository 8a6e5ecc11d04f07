"""A store past its memory budget: projections per training run (the same answers as the whole store's,
the runs held kept under the budget) and questions across runs answered by LanceDB or refused."""

from __future__ import annotations

import threading
import time

import pytest

from trajectories.analysis import GroupQuery
from trajectories.importing.errors import ErrorSink
from trajectories.importing.pipeline import ImportOptions, run_import
from trajectories.query import EmptyMatch, NumberMatch, TextMatch, TrajectoryQuery
from trajectories.store import AnnotationChange
from trajectories.store.projection import AnnotationColumns
from trajectories.store.repository import TrajectoryStore
from trajectories.store.runs import RunRows, ScopeTooLarge
from trajectories.textquery import parse_text

pytestmark = pytest.mark.django_db

RUNS = {"run-a": 40, "run-b": 30, "run-c": 20}
BUDGET = 60  # the store (90 rows) does not fit; any one run does, two of the smaller ones together too


def _records(record, run: str, rows: int, *, start: int = 0) -> list[dict]:
    made = []
    for i in range(start, start + rows):
        made.append(
            record(
                trajectory_id=f"{run}:i{i % 5}:q{i % 7}:s{i}",
                training_id=run,
                iteration_id=i % 5,
                data_id=f"q{i % 7}",
                sample_id=i,
                reward=(i * 37 % 11) / 10,
                exec_time=float(i),
                agent_name="agent-y" if i % 3 else "agent-x",
                created_at=f"2026-01-{1 + i % 28:02d}T00:00:{i % 60:02d}Z",
                steps=[
                    {"role": "user", "content": f"question {i} about {'apples' if i % 2 else 'pears'}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ],
            )
        )
    return made


def _import(uri: str, path) -> None:
    run_import(paths=[str(path)], options=ImportOptions(), store=TrajectoryStore(uri=uri), errors=ErrorSink())


@pytest.fixture
def stores(tmp_path, record, write_jsonl):
    """(budgeted, whole): two stores of the same data, one under the budget of rows, one without."""
    uri = str(tmp_path / "lancedb")
    for run, rows in RUNS.items():
        _import(uri, write_jsonl(_records(record, run, rows), f"{run}.jsonl"))
    budgeted = TrajectoryStore(uri=uri, budget_rows=BUDGET)
    budgeted.ensure_indexes()  # the BITMAP on training_id a budgeted store builds
    return budgeted, TrajectoryStore(uri=uri)


def _calls_of(monkeypatch, name: str) -> list:
    """Calls of the annotation columns' class method `name` from now on (one entry each)."""
    calls = []
    method = getattr(AnnotationColumns, name).__func__

    def counted(cls, *args, **kwargs):
        calls.append(1)
        return method(cls, *args, **kwargs)

    monkeypatch.setattr(AnnotationColumns, name, classmethod(counted))
    return calls


def _run(run: str, **changes) -> TrajectoryQuery:
    return TrajectoryQuery.where(training_id=run).replace(**changes)


QUESTIONS = [
    {},
    {"ordering": (("reward", True), ("trajectory_id", False))},
    {"ordering": (("exec_time", False),), "page": 2, "page_size": 7},
    {"filters": (("iteration_id", NumberMatch(minimum=1, maximum=3)),)},
    {"text": parse_text("apples", None)},
]


@pytest.mark.parametrize("changes", QUESTIONS, ids=range(len(QUESTIONS)))
def test_a_run_is_answered_as_the_whole_store_answers_it(stores, changes):
    budgeted, whole = stores
    filters = changes.pop("filters", ())
    query = _run("run-b", **changes)
    query = query.replace(filters=tuple(sorted((*query.filters, *filters), key=lambda pair: pair[0])))
    mine, theirs = budgeted.page(query=query), whole.page(query=query)
    assert mine.count == theirs.count > 0
    assert [row["trajectory_id"] for row in mine.rows] == [row["trajectory_id"] for row in theirs.rows]
    assert mine.rows == theirs.rows
    assert budgeted.engine.whole.rows_held() == 0  # nothing of the whole store was projected


def test_charts_groups_facets_and_a_detail_page_of_one_run_match_the_whole_store(stores):
    budgeted, whole = stores
    query = _run("run-a")
    assert budgeted.stats_by(query=query, by="iteration_id") == whole.stats_by(query=query, by="iteration_id")
    assert budgeted.facets(query=query) == whole.facets(query=query)
    groups = GroupQuery(rows=query)
    assert budgeted.groups(query=groups) == whole.groups(query=groups)
    some = whole.page(query=query).rows[3]["trajectory_id"]
    assert budgeted.neighbours(query=query, trajectory_id=some) == whole.neighbours(query=query, trajectory_id=some)
    assert budgeted.get(trajectory_id=some) == whole.get(trajectory_id=some)
    mine = list(budgeted.ordered_records(query=query))
    assert mine == list(whole.ordered_records(query=query)) and len(mine) == RUNS["run-a"]


def test_runs_held_stay_within_the_budget_the_least_recently_asked_dropped(stores):
    budgeted, _ = stores
    engines = budgeted.engine
    for run in ("run-c", "run-b"):  # 20 + 30 rows: both fit
        budgeted.page(query=_run(run))
    assert engines.held_runs() == {"run-c": 20, "run-b": 30}
    budgeted.page(query=_run("run-a"))  # 40 more: run-c, asked least recently, goes first, then run-b
    assert engines.held_runs() == {"run-a": 40}
    assert sum(engines.held_runs().values()) <= BUDGET
    budgeted.page(query=_run("run-c"))
    assert engines.held_runs() == {"run-a": 40, "run-c": 20}
    assert engines.dropped == 2 and engines.loads == 4


def test_a_run_larger_than_the_budget_lists_from_lancedb_and_refuses_the_rest(stores):
    budgeted, whole = stores
    budgeted.engine.budget_rows = 35  # run-a's 40 rows do not fit
    listed = budgeted.page(query=_run("run-a", page_size=100))
    assert listed.count == 40 and "newest import first" in listed.note
    assert {row["trajectory_id"] for row in listed.rows} == {
        row["trajectory_id"] for row in whole.page(query=_run("run-a", page_size=100)).rows
    }
    with pytest.raises(ScopeTooLarge, match=r"run-a.*40 trajectories.*lists and counts open"):
        budgeted.stats_by(query=_run("run-a"), by="iteration_id")
    with pytest.raises(ScopeTooLarge, match="cannot be sorted"):
        budgeted.page(query=_run("run-a", ordering=(("reward", True),)))
    assert budgeted.engine.held_runs() == {}


def test_an_edit_shows_in_its_runs_answers_and_an_import_into_one_run_leaves_the_others_pinned(
    stores, record, write_jsonl
):
    budgeted, whole = stores
    target = whole.page(query=_run("run-a")).rows[0]["trajectory_id"]
    budgeted.page(query=_run("run-a"))
    budgeted.page(query=_run("run-c"))
    budgeted.annotate(trajectory_ids=[target], change=AnnotationChange(is_bookmarked=True, category="loop"), user="u")
    marked = budgeted.page(query=_run("run-a").replace(filters=(*_run("run-a").filters,))).rows
    assert [row["category"] for row in marked if row["trajectory_id"] == target] == ["loop"]
    engine_c = budgeted.engine.run_engine("run-c")
    builds_c = engine_c.builds
    _import(budgeted.uri, write_jsonl(_records(record, "run-a", 5, start=100), "more-a.jsonl"))
    assert budgeted.count_matching(query=_run("run-a")) == RUNS["run-a"] + 5
    assert budgeted.count_matching(query=_run("run-c")) == RUNS["run-c"]
    assert engine_c.builds == builds_c  # run-c's fragments are as they were: its projection is re-pinned


def test_lists_across_runs_come_from_lancedb_newest_import_first(stores):
    budgeted, whole = stores
    query = TrajectoryQuery.where(data_id="q3")
    mine, theirs = budgeted.page(query=query), whole.page(query=query)
    assert mine.count == theirs.count == 13
    assert {row["trajectory_id"] for row in mine.rows} == {row["trajectory_id"] for row in theirs.rows}
    assert mine.rows[0]["training_id"] == "run-c"  # imported last
    paged = [budgeted.page(query=query.replace(page=page, page_size=5)).rows for page in (1, 2, 3)]
    assert [row["trajectory_id"] for rows in paged for row in rows] == [row["trajectory_id"] for row in mine.rows]
    everything = budgeted.page(query=TrajectoryQuery(page_size=1000))
    assert everything.count == sum(RUNS.values()) and len(everything.rows) == everything.count
    assert budgeted.engine.held_runs() == {}


def test_bookmarks_and_unfiltered_facets_across_runs(stores):
    budgeted, whole = stores
    marked = [whole.page(query=_run(run)).rows[2]["trajectory_id"] for run in RUNS]
    budgeted.annotate(trajectory_ids=marked, change=AnnotationChange(is_bookmarked=True), user="u")
    found = budgeted.page(query=TrajectoryQuery.where(is_bookmarked=True))
    assert found.count == 3 and {row["trajectory_id"] for row in found.rows} == set(marked)
    assert all(row["is_bookmarked"] for row in found.rows)
    assert budgeted.facets() == whole.facets()


@pytest.mark.parametrize(
    "query, said",
    [
        (TrajectoryQuery(ordering=(("reward", True),)), "cannot be sorted"),
        (TrajectoryQuery(text=parse_text("apples", None)), "cannot be searched"),
        (TrajectoryQuery(text=parse_text("apples", None), ordering=(("relevance", True),)), "cannot be searched"),
        (TrajectoryQuery.where(is_bookmarked=False), "is_bookmarked is false"),
        (TrajectoryQuery.where(is_bookmarked=True, data_id="q1"), "cannot mix"),
    ],
)
def test_lists_across_runs_that_would_read_every_row_are_refused_saying_why(stores, query, said):
    budgeted, _ = stores
    with pytest.raises(ScopeTooLarge, match=said):
        budgeted.page(query=query)


def test_charts_across_runs_are_refused_asking_for_a_run(stores):
    budgeted, _ = stores
    with pytest.raises(ScopeTooLarge, match="choose one training run"):
        budgeted.stats_by(query=TrajectoryQuery(), by="iteration_id")
    # A detail page opened from a list across runs has no previous / next, and still opens.
    some = budgeted.page(query=TrajectoryQuery()).rows[0]["trajectory_id"]
    assert budgeted.neighbours(query=TrajectoryQuery(), trajectory_id=some) == (None, None, None, 0)
    assert budgeted.get(trajectory_id=some)["trajectory_id"] == some


def test_below_the_budget_the_whole_store_engine_answers(stores):
    budgeted, whole = stores
    budgeted.engine.budget_rows = 1_000
    query = TrajectoryQuery(ordering=(("reward", True), ("trajectory_id", False)))
    assert budgeted.page(query=query).rows == whole.page(query=query).rows
    assert budgeted.engine.whole.rows_held() == sum(RUNS.values())
    budgeted.engine.budget_rows = BUDGET  # the store grew past it: the whole projection goes
    budgeted.page(query=_run("run-c"))
    assert budgeted.engine.whole.rows_held() == 0


def test_a_runs_rows_are_taken_by_address(stores):
    budgeted, _ = stores
    dataset = budgeted._dataset("trajectories")
    view = RunRows(dataset, "run-b")
    table = view.to_table(columns=["trajectory_id", "training_id"])
    assert set(table.column("training_id").to_pylist()) == {"run-b"} and table.num_rows == RUNS["run-b"]
    taken = view.take([5, 0, 29], columns=["trajectory_id"]).column("trajectory_id").to_pylist()
    ids = table.column("trajectory_id").to_pylist()
    assert taken == [ids[5], ids[0], ids[29]]
    assert view.count_rows() == RUNS["run-b"]


@pytest.fixture
def budgeted_site(settings, stores):
    """The site on the budgeted store."""
    from trajectories.store import reset_store

    settings.TRAJSITE_DATA_DIR = stores[0].uri
    settings.TRAJSITE_PROJECTION_BUDGET_ROWS = BUDGET
    reset_store()
    yield
    reset_store()


PAGES_ACROSS_RUNS = [
    ("/", 200, "run-a"),
    ("/trajectories/", 200, "run-c:"),
    ("/trajectories/?page=2", 200, "newest import first"),
    ("/trajectories/?training_id=run-a&search=zzz", 200, "<code>search=zzz</code>"),  # relaxing run-a: skipped
    ("/trajectories/?data_id=q3", 200, "13"),
    ("/trajectories/?training_id=run-b&ordering=-reward", 200, "run-b:"),
    ("/trajectories/stats/?training_id=run-a&by=iteration_id", 200, "run-a"),
    ("/trajectories/groups/?training_id=run-a", 200, "q3"),
    ("/trajectories/stats/?by=iteration_id", 400, "/trajectories/stats/?by=iteration_id&amp;training_id=run-a"),
    ("/trajectories/run-a:i3:q3:s3/", 200, "run-a:i3:q3:s3"),  # its GRPO group: from run-a's projection
    ("/trajectories/compare/?ids=run-a:i3:q3:s3&ids=run-c:i3:q3:s3", 200, "run-c:i3:q3:s3"),
    ("/trajectories/?ordering=-reward", 400, "cannot be sorted"),
    ("/api/trajectories/?ordering=-reward", 400, "cannot be sorted"),
    ("/api/trajectories/?training_id=run-c&ordering=-reward", 200, "run-c:"),
]


@pytest.mark.parametrize("url, status, shown", PAGES_ACROSS_RUNS)
def test_pages_past_the_budget_answer_or_say_what_to_narrow(budgeted_site, staff_client, url, status, shown):
    response = staff_client.get(url)
    assert response.status_code == status, response.content[:500]
    assert shown in response.content.decode()


def test_a_list_across_runs_says_how_it_is_ordered_and_the_indexes_it_reads_exist(stores):
    budgeted, whole = stores
    assert "newest import first" in budgeted.page(query=TrajectoryQuery()).note
    assert budgeted.page(query=_run("run-a")).note is None
    assert whole.page(query=TrajectoryQuery()).note is None
    indexed = {tuple(index.columns) for index in budgeted._table("trajectories").list_indices()}
    assert {("training_id",), ("data_id",), ("trajectory_id",)} <= indexed


def test_a_later_versions_run_rows_are_found_in_the_changed_fragments_only(stores, record, write_jsonl):
    budgeted, whole = stores
    engines = budgeted.engine
    for run in RUNS:
        assert len(engines._view((run,)).addresses) == RUNS[run]
    _import(budgeted.uri, write_jsonl(_records(record, "run-a", 5, start=200), "more-a.jsonl"))
    gone = whole.page(query=_run("run-c")).rows[4]["trajectory_id"]
    assert budgeted.delete(trajectory_ids=[gone]) == 1
    newest = budgeted._dataset("trajectories")
    for run, rows in {"run-a": RUNS["run-a"] + 5, "run-b": RUNS["run-b"], "run-c": RUNS["run-c"] - 1}.items():
        followed = engines._view((run,))
        assert followed.version == newest.version
        assert followed.addresses.tolist() == RunRows(newest, run).addresses.tolist()
        assert len(followed.addresses) == rows
    assert gone not in {row["trajectory_id"] for row in budgeted.page(query=_run("run-c", page_size=100)).rows}


def test_a_runs_annotations_are_read_a_piece_at_a_time_among_many(stores, monkeypatch):
    from trajectories.store import projection as projection_module

    budgeted, whole = stores
    marked = whole.page(query=_run("run-b")).rows[1]["trajectory_id"]
    budgeted.annotate(trajectory_ids=[marked], change=AnnotationChange(category="loop", add_tags=("x",)), user="u")
    monkeypatch.setattr(projection_module, "_PIECEWISE_TIMES", 2)  # 90 annotated rows > 2 x 30 of run-b
    monkeypatch.setattr(projection_module, "_PIECEWISE_ROWS", 7)  # read 7 keys at a time
    pieces = _calls_of(monkeypatch, "_read_piecewise")
    query = _run("run-b", ordering=(("category", True), ("trajectory_id", False)))
    assert budgeted.page(query=query).rows == whole.page(query=query).rows
    assert pieces and budgeted.page(query=query).rows[0]["category"] == "loop"


def test_a_trajectory_of_no_run_opens_past_the_budget(budgeted_site, stores, staff_client, record, write_jsonl):
    _import(stores[0].uri, write_jsonl([record(trajectory_id="loose-1", training_id=None)], "loose.jsonl"))
    response = staff_client.get("/trajectories/loose-1/")
    assert response.status_code == 200 and "loose-1" in response.content.decode()
    home = staff_client.get("/")
    assert home.status_code == 200 and "(no run)" in home.content.decode()
    assert "runs-budget" in home.content.decode() and "compare runs" not in home.content.decode()


def test_filtered_facets_tags_and_empty_runs_across_runs_match_the_whole_store(stores):
    budgeted, whole = stores
    question = TrajectoryQuery.where(data_id="q3")
    assert budgeted.facets(query=question) == whole.facets(query=question)
    some = whole.page(query=_run("run-c")).rows[0]["trajectory_id"]
    budgeted.annotate(trajectory_ids=[some], change=AnnotationChange(add_tags=("o'k",)), user="u")
    for query in (TrajectoryQuery.where(tags="o'k"), TrajectoryQuery.where(tags="arith"),
                  TrajectoryQuery(filters=(("training_id", EmptyMatch(False)),)),
                  TrajectoryQuery(filters=(("training_id", EmptyMatch(True)),))):  # fmt: skip
        mine, theirs = budgeted.page(query=query.replace(page_size=200)), whole.page(query=query.replace(page_size=200))
        assert mine.count == theirs.count
        assert {row["trajectory_id"] for row in mine.rows} == {row["trajectory_id"] for row in theirs.rows}
    assert budgeted.count_matching(query=TrajectoryQuery.where(tags="o'k")) == 1


def test_an_answer_from_a_runs_lagging_annotations_is_not_cached(budgeted_site, monkeypatch):
    from trajectories import reads
    from trajectories.store import get_store
    from trajectories.store import projection as projection_module
    from trajectories.store.engine import QueryEngine

    store = get_store()
    query = TrajectoryQuery.where(training_id="run-b", is_bookmarked=True)
    assert reads.count(query=query) == 0
    engine = store.engine.run_engine("run-b")
    engine.background_rows = 0  # annotations read whole are read in the background, the old ones answering
    monkeypatch.setattr(QueryEngine, "annotations_written", lambda self, rows, **versions: None)
    monkeypatch.setattr(projection_module.AnnotationColumns, "followed", lambda self, dataset, **kw: None)
    release, read = threading.Event(), projection_module.AnnotationColumns.read.__func__

    def held(cls, *args, **kwargs):
        if threading.current_thread().name == "trajsite-projection":
            assert release.wait(30)
        return read(cls, *args, **kwargs)

    monkeypatch.setattr(projection_module.AnnotationColumns, "read", classmethod(held))
    target = store.page(query=_run("run-b")).rows[0]["trajectory_id"]
    store.annotate(trajectory_ids=[target], change=AnnotationChange(is_bookmarked=True), user="u")
    assert reads.count(query=query) == 0  # from the run's previous annotations, while the new are read
    release.set()
    deadline = time.monotonic() + 30
    while engine.peek() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reads.count(query=query) == 1  # not the answer of the lagging annotations, cached


def test_the_monitors_page_past_the_budget(budgeted_site, staff_client):
    response = staff_client.get("/trajectories/monitors/")
    assert response.status_code == 200


def test_a_store_back_under_the_budget_drops_its_runs(stores):
    budgeted, whole = stores
    budgeted.page(query=_run("run-c"))
    assert budgeted.engine.held_runs() == {"run-c": 20}
    budgeted.engine.budget_rows = 1_000
    assert budgeted.page(query=_run("run-c")).rows == whole.page(query=_run("run-c")).rows
    assert budgeted.engine.held_runs() == {}
    budgeted.engine.budget_rows = BUDGET
    assert budgeted.page(query=_run("no-such-run")).count == 0  # a run of no rows: an empty list


def test_a_repinned_run_does_not_read_every_annotation_again_at_the_next_edit(stores, record, write_jsonl, monkeypatch):
    from trajectories.store import projection as projection_module

    budgeted, whole = stores
    edited = whole.page(query=_run("run-a")).rows[0]["trajectory_id"]
    budgeted.page(query=_run("run-c"))
    monkeypatch.setattr(projection_module, "_FOLLOW_ROWS", 10)  # fewer than the other runs' annotations
    full_reads = _calls_of(monkeypatch, "read")
    _import(budgeted.uri, write_jsonl(_records(record, "run-a", 5, start=300), "more-a.jsonl"))
    assert budgeted.page(query=_run("run-c")).count == RUNS["run-c"]  # re-pinned: its rows are where they were
    budgeted.annotate(trajectory_ids=[edited], change=AnnotationChange(category="x"), user="u")
    assert budgeted.page(query=_run("run-c")).count == RUNS["run-c"]
    assert full_reads == []


def test_records_by_id_across_runs_are_the_whole_stores(stores):
    budgeted, whole = stores
    ids = [whole.page(query=_run(run)).rows[1]["trajectory_id"] for run in ("run-c", "run-a")]
    budgeted.annotate(trajectory_ids=ids[:1], change=AnnotationChange(is_bookmarked=True, notes="见过"), user="u")
    asked = [*ids, "not-stored"]
    mine = list(budgeted.records(trajectory_ids=asked))
    assert [record["trajectory_id"] for record in mine] == ids
    assert mine == list(whole.records(trajectory_ids=asked))


def test_two_runs_compared_and_lists_of_a_few_runs_are_answered_by_one_projection_of_them(stores):
    from trajectories.analysis import ChangeQuery

    budgeted, whole = stores
    changes = ChangeQuery(rows=TrajectoryQuery(), a=_run("run-b"), b=_run("run-c"))
    assert budgeted.question_changes(query=changes) == whole.question_changes(query=changes)
    assert budgeted.engine.held_runs() == {"run-b, run-c": 50}
    both = TrajectoryQuery.where(training_id=TextMatch(exact=("run-c", "run-b"))).replace(
        ordering=(("reward", True), ("trajectory_id", False)), page_size=100
    )
    assert budgeted.page(query=both).rows == whole.page(query=both).rows
    assert budgeted.engine.held_runs() == {"run-b, run-c": 50}  # the same projection: the same runs
    two = TrajectoryQuery.where(training_id=TextMatch(exact=("run-a", "run-b")))
    with pytest.raises(ScopeTooLarge, match="runs 'run-a', 'run-b' hold 70 trajectories"):  # past the budget
        budgeted.stats_by(query=two, by="iteration_id")
