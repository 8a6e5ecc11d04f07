"""Pipeline behaviour that needs a real process: an import killed half-way, re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from trajectories.demo import DemoShape, write_jsonl
from trajectories.store import TrajectoryStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db(transaction=True)
def test_import_killed_half_way_then_rerun_has_every_record_once(tmp_path, settings):
    data = tmp_path / "demo.jsonl"
    with open(data, "wb") as stream:
        write_jsonl(stream, DemoShape(count=4000))
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(tmp_path / "lancedb"),
        "TRAJSITE_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TRAJSITE_IMPORT_PARALLEL_BYTES": "1",  # parse in worker processes, as a large import does
        "TRAJSITE_IMPORT_WORKERS": "2",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    command = [*manage, "import_trajectories", str(data), "--batch-size", "50", "--no-progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = TrajectoryStore(uri=env["TRAJSITE_DATA_DIR"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(env["TRAJSITE_DATA_DIR"]) and store.count() >= 500:
            break
        time.sleep(0.02)
    helpers = psutil.Process(process.pid).children(recursive=True)
    assert len(helpers) >= 2, "the workers run while the import does"
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = store.count()
    assert 0 < partial < 4000, "the import must be interrupted mid-way for this test to mean anything"
    # Orphaned, the workers leave too (their queue would keep them waiting forever).
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert not alive, f"left running: {[helper.cmdline() for helper in alive]}"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert store.count() == 4000
    ids = store._table("trajectories").to_lance().to_table(columns=["trajectory_id"]).column(0).to_pylist()
    assert len(set(ids)) == 4000
    assert f"{4000 - partial:,} imported" in rerun.stdout


def test_any_caller_of_the_pipeline_invalidates_the_caches(store, record, write_jsonl):
    """The run sends `trajectories_changed` itself: a script calling it directly (no command, no
    job) still makes every cached page and count move on."""
    from trajectories import cache, reads
    from trajectories.importing.errors import ErrorSink
    from trajectories.importing.pipeline import COUNTERS, ImportOptions, ImportRun
    from trajectories.signals import trajectories_changed

    assert reads.total() == 0
    before = cache.generation()
    run = ImportRun(
        paths=[str(write_jsonl([record(trajectory_id=f"p{i}") for i in range(3)]))],
        options=ImportOptions(),
        store=store,
        errors=ErrorSink(),
    )
    seen = []

    def look(**_):
        # What another process would find when told: the versions after the run's index refresh.
        seen.append(TrajectoryStore(uri=store.uri).sync(force=True))

    trajectories_changed.connect(look)
    try:
        progress = run.run()
    finally:
        trajectories_changed.disconnect(look)
    assert seen == [TrajectoryStore(uri=store.uri).sync(force=True)], "one signal, after the last write"
    assert cache.generation() > before
    assert reads.total() == 3
    assert progress.counts() == dict.fromkeys(COUNTERS, 0) | {
        "records": 3, "imported": 3, "bytes_read": progress.bytes_total, "bytes_total": progress.bytes_total,
    }  # fmt: skip


def test_the_import_counters_are_the_job_columns_and_the_status_keys():
    from trajectories.importing.pipeline import COUNTERS
    from trajectories.models import ImportJob

    columns = {field.name for field in ImportJob._meta.get_fields()}
    assert set(COUNTERS) <= columns


def test_a_worker_killed_mid_import_fails_the_run_clearly_and_keeps_what_was_written(store, tmp_path):
    from trajectories.importing.chunks import WorkerDied
    from trajectories.importing.errors import ErrorSink
    from trajectories.importing.pipeline import ImportOptions, run_import

    data = tmp_path / "demo.jsonl"
    with open(data, "wb") as stream:
        write_jsonl(stream, DemoShape(count=6000))
    outcome: dict = {}

    def run():
        try:
            options = ImportOptions(workers=2, batch_size=20)
            run_import(paths=[str(data)], options=options, store=store, errors=ErrorSink())
        except BaseException as error:
            outcome["error"] = error

    importing = threading.Thread(target=run)
    importing.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (os.path.exists(store.uri) and store.count() >= 100):
        time.sleep(0.02)
    workers = [child for child in psutil.Process().children() if "spawn_main" in " ".join(child.cmdline())]
    assert workers, "the import runs in worker processes"
    workers[0].kill()
    importing.join(60)
    assert isinstance(outcome.get("error"), WorkerDied), outcome
    assert "import the same files again to add the rest" in str(outcome["error"])
    assert 100 <= store.count() < 6000


def test_a_long_import_folds_its_rows_into_the_indexes_as_it_goes(store, tmp_path, monkeypatch):
    """Content search scans rows not yet indexed: a long import folds them in every so many rows,
    not only at its end."""
    from trajectories.importing import pipeline
    from trajectories.importing.errors import ErrorSink

    data = tmp_path / "demo.jsonl"
    with open(data, "wb") as stream:
        write_jsonl(stream, DemoShape(count=200))
    monkeypatch.setattr(pipeline, "INDEX_EVERY_ROWS", 50)
    folds = []
    refresh = TrajectoryStore.refresh_indexes

    def noted(self):
        refresh(self)
        folds.append((self.count(), self.text_index_state()["unindexed"]))

    monkeypatch.setattr(TrajectoryStore, "refresh_indexes", noted)
    options = pipeline.ImportOptions(workers=1, batch_size=25)
    pipeline.run_import(paths=[str(data)], options=options, store=store, errors=ErrorSink())
    assert store.count() == 200
    stored_at_folds = [count for count, _ in folds]
    assert [count for count in stored_at_folds if 0 < count < 200] == [50, 100, 150]
    assert stored_at_folds[-1] == 200
    assert {left for _, left in folds} == {0}
