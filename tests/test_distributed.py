"""Distributed import on a local Ray cluster of two workers: the importer's own translation, staged
fragments committed once, one merge with the same duplicate rule, errors named by file and line."""

from __future__ import annotations

from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import REALDATA
from trajectories.models import ImportJob
from trajectories.query import TrajectoryQuery
from trajectories.store import AnnotationChange, reset_store

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.django_db(transaction=True)
AIRLINE = REALDATA / "tau-bench" / "historical_trajectories" / "gpt-4o-airline.json"
NEMO = REALDATA / "nemo-gym" / "resources_servers" / "example_multi_step" / "data" / "example_rollouts.jsonl"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _distributed(*paths, **options) -> tuple[str, str, Exception | None]:
    out, err = StringIO(), StringIO()
    try:
        call_command("import_distributed", *map(str, paths), stdout=out, stderr=err, **options)
    except CommandError as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


def _lines(path, records) -> None:
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in records))


def test_the_duplicate_rule_holds_across_files_and_the_store(cluster, store, record, tmp_path, run_import, write_jsonl):
    run_import(write_jsonl([record(trajectory_id="kept", notes="mine")], name="before.jsonl"))
    store.annotate(trajectory_ids=["kept"], change=AnnotationChange(category="by-hand"), user="u")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    _lines(first, [record(trajectory_id=f"d{i}", final_answer="first") for i in range(40)]
           + [record(trajectory_id="kept", final_answer="again")])  # fmt: skip
    _lines(second, [record(trajectory_id=f"d{i}", final_answer="second") for i in range(20, 60)])
    with second.open("ab") as stream:
        stream.write(b'{"trajectory_id": "bad", "steps": 7}\n')
    _, err, error = _distributed(first, second, training_id="ray-run")
    assert "1 records rejected" in str(error)
    assert f"{second}:41: steps: expected a list" in err, err
    ids = store.matching_ids(query=TrajectoryQuery())
    assert len(ids) == len(set(ids)) == 61
    assert {store.get(trajectory_id=f"d{i}")["final_answer"] for i in range(20, 40)} == {"first"}, "first record wins"
    assert store.get(trajectory_id="d50")["final_answer"] == "second"
    kept = store.get(trajectory_id="kept")
    assert (kept["final_answer"], kept["category"]) == ("The answer is 42.", "by-hand"), "a stored id is left alone"
    job = ImportJob.objects.latest("pk")
    assert (job.status, job.records, job.imported, job.duplicates, job.rejected) == ("partial", 82, 60, 21, 1)
    assert store.count_imported(import_id=str(job.pk)) == 60
    assert not [name for name in store._db.list_tables().tables if name.startswith("_staging")], "staging is dropped"


def test_distributed_and_single_process_imports_store_the_same_rows(cluster, store, settings, tmp_path, run_import):
    _, err, error = _distributed(AIRLINE, NEMO)
    assert error is None, err
    distributed = _rows(store)
    settings.TRAJSITE_DATA_DIR = str(tmp_path / "single")
    reset_store()
    _, err, error = run_import(AIRLINE, NEMO)
    assert error is None, err
    from trajectories.store import get_store

    single = _rows(get_store())
    assert len(distributed) == 205 and distributed == single, _diff(distributed, single)


def _rows(store) -> dict[str, dict]:
    rows = {}
    for row in store.records(trajectory_ids=store.matching_ids(query=TrajectoryQuery())):
        # What only the moment of import decides (a record without `created_at` gets the import's time).
        moment = ("import_id", "imported_at", "updated_at", "created_at")
        rows[row["trajectory_id"]] = {k: v for k, v in row.items() if k not in moment}
    return rows


def _diff(a, b):
    for key in a:
        for field in a[key]:
            if a[key][field] != b[key][field]:
                return key, field, str(a[key][field])[:200], str(b[key][field])[:200]


def test_a_distributed_import_onto_s3(cluster, s3_store, record, tmp_path):
    path = tmp_path / "onto-s3.jsonl"
    _lines(path, [record(trajectory_id=f"o{i}") for i in range(30)])
    _, err, error = _distributed(path)
    assert error is None, err
    assert sorted(s3_store.matching_ids(query=TrajectoryQuery())) == sorted(f"o{i}" for i in range(30))
    assert not [name for name in s3_store._db.list_tables().tables if name.startswith("_staging")]
