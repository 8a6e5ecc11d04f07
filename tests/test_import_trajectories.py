"""The import command end to end, against a real LanceDB in a temp dir."""

from __future__ import annotations

import gzip
import json

import pytest
from django.core.management.base import CommandError

from trajectories.models import ImportJob

from .conftest import all_rows

pytestmark = pytest.mark.django_db


def test_import_round_trips_every_field(store, record, write_jsonl, run_import):
    original = record(extra_field={"nested": [1, 2]}, run_note="kept")
    out, err, error = run_import(write_jsonl([original]))
    assert error is None, err
    stored = store.get(trajectory_id=original["trajectory_id"])
    for name in (
        "trajectory_id",
        "data_id",
        "training_id",
        "agent_name",
        "epoch_id",
        "iteration_id",
        "sample_id",
        "reward",
        "toolcall_reward",
        "res_reward",
        "exec_time",
    ):
        assert stored[name] == original[name], name
    assert json.loads(stored["steps"]) == original["steps"]
    assert stored["step_count"] == 5
    assert stored["tool_call_count"] == 1
    assert stored["tools"] == ["calculator"]
    assert stored["final_answer"] == "The answer is 42."
    assert json.loads(stored["metadata"]) == {"extra_field": {"nested": [1, 2]}, "run_note": "kept"}
    assert stored["is_success"] is True
    assert stored["category"] == "correct"
    assert stored["tags"] == ["arith"]
    assert stored["created_at"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert stored["source"].endswith("dump.jsonl:1")
    assert "1 imported" in out


def test_reimport_adds_nothing(store, record, write_jsonl, run_import):
    path = write_jsonl([record(trajectory_id=f"t{i}") for i in range(30)])
    run_import(path)
    out, _, error = run_import(path)
    assert error is None
    assert store.count() == 30
    assert "0 imported" in out and "30 duplicates skipped" in out


def test_duplicates_found_across_batches_and_in_one_batch(store, record, write_jsonl, run_import):
    records = [record(trajectory_id=f"t{i % 7}") for i in range(20)]
    out, _, error = run_import(write_jsonl(records), "--batch-size", "3")
    assert error is None
    assert store.count() == 7
    assert "7 imported" in out and "13 duplicates skipped" in out


def test_on_duplicate_update_replaces_rows(store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(reward=0.1)], "first.jsonl"))
    out, _, error = run_import(
        write_jsonl([record(reward=0.9), record(trajectory_id="new")], "second.jsonl"), "--on-duplicate", "update"
    )
    assert error is None
    assert store.count() == 2
    assert store.get(trajectory_id=record()["trajectory_id"])["reward"] == 0.9
    assert "1 imported, 1 updated" in out


def test_on_duplicate_error_rejects_stored_ids_and_keeps_the_rest(store, record, write_jsonl, run_import):
    run_import(write_jsonl([record()], "first.jsonl"))
    path = write_jsonl([record(trajectory_id="fresh"), record()], "second.jsonl")
    _, err, error = run_import(path, "--on-duplicate", "error")
    assert isinstance(error, CommandError)
    assert f"{path}:2: trajectory_id: 'run-a:e0:i3:q7:s1' is already stored" in err
    assert store.get(trajectory_id="fresh") is not None


def test_bad_records_are_reported_and_valid_ones_imported(store, record, write_jsonl, run_import, tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(record(trajectory_id="ok-1")),
        '{"data_id": "q1", "steps": [',  # invalid JSON
        json.dumps(record(trajectory_id="bad-reward", reward="high")),
        '{"trajectory_id": "nan", "data_id": "q", "steps": [], "reward": NaN}',
        json.dumps(record(trajectory_id="no-steps", steps=None)),
        json.dumps(record(trajectory_id="ok-2")),
    ]
    path.write_text("\n".join(lines) + "\n")
    report = tmp_path / "errors.txt"
    _, err, error = run_import(path, "--error-report", report)
    assert isinstance(error, CommandError) and "4 records rejected" in str(error)
    assert f"{path}:2: json: invalid JSON" in err
    assert f"{path}:3: reward: expected a finite number, got a string" in err
    assert f"{path}:4: reward: nan is not a finite number" in err
    assert f"{path}:5: steps: missing (required)" in err
    assert {row["trajectory_id"] for row in all_rows(store)} == {"ok-1", "ok-2"}
    assert len(report.read_text().splitlines()) == 4
    job = ImportJob.objects.get()
    assert (job.status, job.imported, job.rejected) == (ImportJob.Status.PARTIAL, 2, 4)


def test_max_errors_limits_printing_not_counting(store, write_jsonl, run_import):
    path = write_jsonl([{"data_id": "q", "steps": "nope"} for _ in range(30)])
    _, err, error = run_import(path, "--max-errors", "3")
    assert "30 records rejected" in str(error)
    assert err.count("steps: expected a list") == 3
    assert "27 more rejected records not shown" in err


def test_empty_file_is_an_error(store, tmp_path, run_import):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    _, err, error = run_import(path)
    assert isinstance(error, CommandError)
    assert f"{path}:0: file: empty file, no records" in err


def test_missing_file_is_an_error(store, tmp_path, run_import):
    _, err, error = run_import(tmp_path / "nope.jsonl")
    assert isinstance(error, CommandError)
    assert "nope.jsonl:0: file: no such file" in err


def test_dry_run_writes_nothing(store, record, write_jsonl, run_import):
    out, _, error = run_import(write_jsonl([record()]), "--dry-run")
    assert error is None
    assert "dry run: 1 valid" in out
    assert store.count() == 0


def test_defaults_fill_missing_training_and_agent(store, record, write_jsonl, run_import):
    bare = record()
    del bare["training_id"], bare["agent_name"]
    run_import(write_jsonl([bare]), "--training-id", "run-z", "--agent-name", "bot")
    stored = store.get(trajectory_id=bare["trajectory_id"])
    assert (stored["training_id"], stored["agent_name"]) == ("run-z", "bot")


def test_gzip_directory_and_wrapper_lines(store, record, tmp_path, run_import):
    folder = tmp_path / "dumps"
    (folder / "nested").mkdir(parents=True)
    wrapper = {"trajectories": [record(trajectory_id="w0"), record(trajectory_id="w1")]}
    with gzip.open(folder / "nested" / "a.jsonl.gz", "wb") as stream:
        stream.write(json.dumps(wrapper).encode() + b"\n" + json.dumps(record(trajectory_id="plain")).encode())
    (folder / "b.json").write_text(json.dumps([record(trajectory_id="arr0"), record(trajectory_id="arr1")]))
    (folder / "notes.txt").write_text("not a dump")
    _out, err, error = run_import(folder)
    assert error is None, err
    assert store.count() == 5
    assert store.get(trajectory_id="w1")["source"].endswith("a.jsonl.gz:1:trajectories[1]")
    assert store.get(trajectory_id="arr1")["source"].endswith("b.json:1[1]")


def test_import_job_records_the_run(store, record, write_jsonl, run_import):
    path = write_jsonl([record()])
    run_import(path)
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.sources == [str(path)]
    assert (job.records, job.imported, job.duplicates, job.rejected) == (1, 1, 0, 0)
    assert job.bytes_read == job.bytes_total == path.stat().st_size
    assert job.finished_at is not None
    assert store.get(trajectory_id=record()["trajectory_id"])["import_id"] == str(job.pk)


def test_step_count_disagreement_is_reported_not_trusted(store, record, write_jsonl, run_import):
    _, err, error = run_import(write_jsonl([record(step_count=99)]))
    assert error is None
    assert "step_count: 99 given but 5 steps found; stored 5 (warning)" in err
    assert store.get(trajectory_id=record()["trajectory_id"])["step_count"] == 5


def test_batches_write_few_fragments(store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id=f"t{i}") for i in range(250)]), "--batch-size", "100")
    trajectories = store.stats()[0]
    assert trajectories.rows == 250
    assert trajectories.fragments == 3
    assert "trajectory_id_idx" in trajectories.indexes


def test_mapping_file_imports_other_shapes(store, write_jsonl, run_import, tmp_path):
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "fields:\n  data_id: task.id\n  reward: scores[-1]\n  steps: turns\n"
        "  analysis.is_success: verdict.ok\nstep_fields:\n  role: who\n  content: said\n"
    )
    path = write_jsonl(
        [
            {
                "task": {"id": 5},
                "scores": [0.1, 0.8],
                "turns": [{"who": "user", "said": "hi"}],
                "verdict": {"ok": False},
                "other": 1,
            }
        ]
    )
    _out, err, error = run_import(path, "--mapping", mapping)
    assert error is None, err
    stored = all_rows(store)[0]
    full = store.get(trajectory_id=stored["trajectory_id"])
    assert (full["data_id"], full["reward"], full["is_success"]) == ("5", 0.8, False)
    assert json.loads(full["steps"]) == [{"role": "user", "content": "hi"}]
    assert json.loads(full["metadata"]) == {"other": 1}
    assert full["source_format"] == "mapping"


def test_bad_mapping_file_is_a_command_error(store, write_jsonl, run_import, tmp_path):
    mapping = tmp_path / "map.yaml"
    mapping.write_text("fields:\n  reward: score\n")
    _, _, error = run_import(write_jsonl([{}]), "--mapping", mapping)
    assert isinstance(error, CommandError) and "must name at least 'steps' and 'data_id'" in str(error)
