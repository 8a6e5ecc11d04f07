"""Import input built to break things: split-token text, gzip bombs, huge documents, FIFOs and
devices in directories, YAML bombs. Valid records beside them are always kept; memory stays bounded."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time

import orjson
import pytest

from tests.conftest import BASE_RECORD
from trajectories.importing import chunks, pipeline
from trajectories.importing.batches import BatchBuilder
from trajectories.importing.errors import ErrorSink, Location
from trajectories.importing.validation import Defaults, validate

from .conftest import ROOT, site_env

pytestmark = [pytest.mark.adversarial, pytest.mark.django_db]


def _line(**fields) -> bytes:
    return orjson.dumps({**BASE_RECORD, **fields}) + b"\n"


def test_a_lone_surrogate_is_repaired_and_its_neighbours_kept(store, tmp_path, run_import):
    broken = json.dumps({**BASE_RECORD, "trajectory_id": "split", "steps": [{"role": "user", "content": "a\ud800b"}]})
    assert "\\ud800" in broken
    path = tmp_path / "split.jsonl"
    path.write_bytes(_line(trajectory_id="before") + broken.encode() + b"\n" + _line(trajectory_id="after"))
    out, err, error = run_import(path)
    assert error is None, err
    assert "3 imported" in out
    assert "split.jsonl:2: steps[0].content: invalid unicode (lone surrogate) replaced with U+FFFD" in err
    assert json.loads(store.get(trajectory_id="split")["steps"])[0]["content"] == "a\ufffdb"


def test_surrogates_in_ids_and_keys_beside_a_nan_are_each_handled(store, tmp_path, run_import):
    record = {**BASE_RECORD, "trajectory_id": "id\udfff", "data_id": "q\ud800", "custom\ud801": 1, "big": 2**70}
    nan = {**BASE_RECORD, "trajectory_id": "nan\ud800", "reward": float("nan")}
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(nan) + "\n" + _line(trajectory_id="fine").decode())
    _, err, error = run_import(path)
    assert error is not None and "1 records rejected" in str(error)
    assert "mixed.jsonl:2: reward: nan is not a finite number" in err
    stored = store.get(trajectory_id="id\ufffd")
    assert stored["data_id"] == "q\ufffd"
    assert json.loads(stored["metadata"]) == {"custom\ufffd": 1, "big": float(2**70)}
    assert store.get(trajectory_id="fine") is not None


def test_a_row_the_store_refuses_is_one_rejection_and_the_batch_is_written(store, tmp_path):
    builder = BatchBuilder(on_duplicate="skip")
    for index in range(5):
        record = {**BASE_RECORD, "trajectory_id": f"row{index}"}
        validated = validate(record, source=f"b.jsonl:{index + 1}", source_format="canonical", defaults=Defaults())
        builder.add(validated, location=Location("b.jsonl", index + 1))
    # Past validation, as a future adapter bug could: text Arrow cannot encode.
    builder.rows["row2"]["agent_name"] = "x\ud800"
    errors = ErrorSink()
    writer = pipeline._Writer(store=store, options=pipeline.ImportOptions(), errors=errors, imported_at_us=1)
    writer.submit(chunks._built(builder, errors.reject))
    writer.close()
    assert (writer.inserted, errors.rejected) == (4, 1)
    assert errors.first[0].startswith("b.jsonl:3: agent_name: the store cannot hold this value (UnicodeEncodeError")
    assert store.existing_ids(ids=[f"row{i}" for i in range(5)]) == {"row0", "row1", "row3", "row4"}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """An ORM database for the commands of this module, migrated once."""
    env = site_env(tmp_path_factory.mktemp("commands"))
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, check=True)
    return env


@pytest.fixture(scope="module")
def floor_mb(migrated, tmp_path_factory) -> float:
    """Peak RSS of the same command importing one small record, measured here: the floor that the
    memory bounds below are added to (a fresh checkout compiles its bytecode, and peaks higher)."""
    folder = tmp_path_factory.mktemp("floor")
    (folder / "one.jsonl").write_bytes(_line(trajectory_id="floor"))
    _, peak_mb, _ = _run_command(migrated, folder, folder / "one.jsonl")
    print(f"floor: {peak_mb:.0f} MB peak RSS importing one record")
    return peak_mb


def _run_command(env, tmp_path, *args, timeout=120):
    """The import command in its own process, into a store of its own: its result, its own peak RSS in
    MB, and its seconds."""
    env = {**env, "TRAJSITE_DATA_DIR": str(tmp_path / "lancedb")}
    manage = [sys.executable, str(ROOT / "manage.py")]
    started = time.monotonic()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [*manage, "import_trajectories", *map(str, args), "--no-progress"], env=env, stdout=stdout, stderr=stderr
        )
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        # wait4 reports this child's own peak, not the largest of every child this test run has had.
        _, status, usage = os.wait4(process.pid, 0)
        killer.cancel()
    result = subprocess.CompletedProcess(
        process.args, os.waitstatus_to_exitcode(status), out.read_text(), err.read_text()
    )
    return result, usage.ru_maxrss / 1024, time.monotonic() - started


def test_a_gzip_bomb_line_is_skipped_in_bounded_memory(migrated, floor_mb, tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as stream:
        stream.write(_line(trajectory_id="bomb-before"))
        zeros = b"\0" * (1024 * 1024)
        for _ in range(600):
            stream.write(zeros)
        stream.write(b"\n" + _line(trajectory_id="bomb-after"))
    assert path.stat().st_size < 5 * 1024 * 1024
    result, peak_mb, _ = _run_command(migrated, tmp_path, path, "--max-line-bytes", 32 * 1024 * 1024)
    assert "2 imported" in result.stdout, result.stderr
    assert "bomb.jsonl.gz:2: line: line of 629,145,601 bytes is longer than the 33,554,432-byte limit" in result.stderr
    assert peak_mb < floor_mb + 200, f"peak RSS {peak_mb:.0f} MB (floor {floor_mb:.0f}) for a 600 MB line"


def test_a_document_over_its_limit_is_streamed_and_the_next_file_read(migrated, tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "a-huge.json").write_bytes(b"[" + b" " * 3_000_000 + orjson.dumps(BASE_RECORD) + b"]")
    (folder / "b-fine.jsonl").write_bytes(_line(trajectory_id="fine"))
    result, _, _ = _run_command(migrated, tmp_path, folder, "--max-document-bytes", 1_000_000)
    assert "2 imported" in result.stdout, result.stderr
    assert "a-huge.json: 1 record read; (document): 1 records" in result.stdout


def test_a_document_over_its_limit_on_stdin_is_refused(migrated, tmp_path):
    """Standard input cannot be read twice: a (pretty-printed) document too large for memory is refused."""
    data = b"[\n" + b" " * 3_000_000 + orjson.dumps(BASE_RECORD) + b"\n]"
    env = {**migrated, "TRAJSITE_DATA_DIR": str(tmp_path / "lancedb")}
    command = [sys.executable, str(ROOT / "manage.py"), "import_trajectories", "-", "--no-progress",
               "--max-document-bytes", "1000000"]  # fmt: skip
    result = subprocess.run(command, input=data, env=env, capture_output=True, timeout=120)
    assert b"<stdin>:0: file: document larger than 1,000,000 bytes; not read" in result.stderr


def test_fifos_and_devices_in_a_directory_are_skipped_not_read(migrated, floor_mb, tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    os.mkfifo(folder / "a-pipe.jsonl")
    os.symlink("/dev/zero", folder / "b-zero.jsonl")
    (folder / "c-fine.jsonl").write_bytes(_line(trajectory_id="fine"))
    result, peak_mb, seconds = _run_command(migrated, tmp_path, folder, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1 imported" in result.stdout
    assert "a-pipe.jsonl:0: file: not a regular file" in result.stderr
    assert "b-zero.jsonl:0: file: not a regular file" in result.stderr
    assert seconds < 30 and peak_mb < floor_mb + 100


def test_a_device_named_on_the_command_line_is_refused(migrated, tmp_path):
    (tmp_path / "fine.jsonl").write_bytes(_line(trajectory_id="fine"))
    result, _, _ = _run_command(migrated, tmp_path, "/dev/zero", tmp_path / "fine.jsonl", timeout=60)
    assert "/dev/zero:0: file: not a regular file (a device or socket); not read" in result.stderr
    assert "1 imported" in result.stdout


def test_a_yaml_bomb_mapping_is_refused_at_once(tmp_path, run_import):
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        laughs.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    mapping = tmp_path / "bomb.yaml"
    mapping.write_text("\n".join([*laughs, "fields: {data_id: x, steps: y}"]) + "\n")
    data = tmp_path / "d.jsonl"
    data.write_bytes(_line())
    started = time.monotonic()
    _, _, error = run_import(data, "--mapping", mapping)
    assert time.monotonic() - started < 5
    assert "aliases (*name) are not allowed" in str(error)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("fields: {data_id: x, steps: y}\nstep_fields: [role]\n")
    _, _, error = run_import(data, "--mapping", wrong)
    assert "'step_fields' must be a mapping of name: path, got list" in str(error)


def test_a_line_of_millions_of_tiny_values_is_refused_before_parsing(migrated, floor_mb, tmp_path):
    path = tmp_path / "values.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=6) as stream:
        stream.write(_line(trajectory_id="values-before"))
        stream.write(b'{"data_id": "bomb", "steps": [' + b"{}," * 13_000_000 + b"{}]}\n")
        stream.write(_line(trajectory_id="values-after"))
    assert path.stat().st_size < 1024 * 1024
    result, peak_mb, _ = _run_command(migrated, tmp_path, path)
    assert "2 imported" in result.stdout, result.stderr
    assert "values.jsonl.gz:2: line: about 26,000,005 JSON values, more than the 2,000,000-value limit" in result.stderr
    # Parsed, these 13 million objects would take gigabytes; read and counted, the 39 MB line is all.
    assert peak_mb < floor_mb + 250, f"peak RSS {peak_mb:.0f} MB (floor {floor_mb:.0f})"


def test_a_record_with_a_million_bad_steps_is_one_short_rejection(store, tmp_path, run_import):
    path = tmp_path / "bad-steps.jsonl"
    path.write_bytes(orjson.dumps({**BASE_RECORD, "trajectory_id": "bad", "steps": [{}] * 300_000}) + b"\n")
    report = tmp_path / "report.txt"
    _, _, error = run_import(path, "--error-report", report)
    assert "1 records rejected" in str(error)
    lines = report.read_text().splitlines()
    assert len(lines) == 21 and lines[-1].endswith("steps: more problems after steps[19] not listed")


def test_a_later_duplicate_replaces_the_earlier_record_whole(store, tmp_path, run_import):
    first = {**BASE_RECORD, "trajectory_id": "twice", "analysis": {"category": "from-first"}, "tags": ["first"]}
    second = {**BASE_RECORD, "trajectory_id": "twice", "analysis": None, "tags": None, "reward": 0.5}
    path = tmp_path / "twice.jsonl"
    path.write_bytes(orjson.dumps(first) + b"\n" + orjson.dumps(second) + b"\n")
    run_import(path, "--on-duplicate", "update")
    stored = store.get(trajectory_id="twice")
    assert (stored["reward"], stored["category"], stored["tags"]) == (0.5, None, [])
