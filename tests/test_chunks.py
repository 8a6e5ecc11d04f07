"""Processing in chunks and in worker processes: the same rows, reports and duplicate rule as one
process reading record by record."""

from __future__ import annotations

import gzip
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trajectories.importing import readers
from trajectories.importing.batches import Batch, PendingWrite
from trajectories.importing.errors import ErrorSink, Location
from trajectories.importing.pipeline import ImportOptions, run_import
from trajectories.store import TRAJECTORY_SCHEMA, AnnotationChange
from trajectories.store.repository import TrajectoryStore


def _dump(tmp_path, record) -> list:
    """A folder of every source shape, with what goes wrong in real dumps, spread over many blocks."""
    folder = tmp_path / "dump"
    folder.mkdir()
    lines = []
    for index in range(120):
        if index % 17 == 3:
            lines.append(b'{"trajectory_id": "broken", ')  # invalid JSON
        elif index % 13 == 5:
            lines.append(orjson.dumps(record(trajectory_id=f"t{index}", reward="high")))  # invalid field
        elif index % 10 == 9:
            wrapped = [record(trajectory_id=f"w{index}-{k}", data_id=f"q{k}") for k in range(3)]
            lines.append(orjson.dumps({"trajectories": wrapped, "exported_by": "x"}))
        else:
            # Ids repeat every 50 lines: duplicates within a block, across blocks and across chunks.
            lines.append(orjson.dumps(record(trajectory_id=f"t{index % 50}", reward=index / 100)))
        if index % 11 == 0:
            lines.append(b"   ")
    (folder / "a.jsonl").write_bytes(b"\r\n".join(lines[:60]) + b"\r\n")
    with gzip.open(folder / "b.jsonl.gz", "wb") as stream:
        stream.write(b"\n".join(lines[60:]) + b"\n" + b'{"trajectory_id": "cut off')  # no newline at the end
    runs = [record(trajectory_id=f"d{i}", agent_name=None) for i in range(4)]
    document = {"info": {"agent": {"llm": "gpt-x"}}, "runs": runs}
    (folder / "c.json").write_bytes(json.dumps(document, indent=1).encode())
    # Steps as JSON text, as many Parquet dumps hold them.
    rows = [{**record(trajectory_id=f"p{i}"), "steps": json.dumps(record()["steps"])} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "d.parquet", row_group_size=2)
    return [str(folder)]


def _imported(paths, tmp_path, name, *, workers: int, on_duplicate: str = "skip"):
    store = TrajectoryStore(uri=str(tmp_path / name))
    errors = ErrorSink(keep=1000)
    options = ImportOptions(workers=workers, on_duplicate=on_duplicate, batch_size=7)
    progress = run_import(paths=paths, options=options, store=store, errors=errors)
    columns = ["trajectory_id", "reward", "source", "agent_name"]
    table = store._table("trajectories").to_lance().to_table(columns=columns)
    rows = sorted(zip(*(table.column(name).to_pylist() for name in table.column_names), strict=True))
    annotations = {
        key: {name: value for name, value in row.items() if name not in ("updated_at", "updated_by")}
        for key, row in store.annotations(trajectory_ids=["t1", "d0", "w9-0"]).items()
    }
    counts = (progress.records, progress.imported, progress.updated, progress.duplicates, progress.rejected)
    return counts, errors.first, errors.first_warnings, rows, annotations, progress.found


@pytest.mark.parametrize("on_duplicate", ["skip", "update", "error"])
def test_worker_processes_import_exactly_what_one_process_does(tmp_path, record, monkeypatch, on_duplicate):
    monkeypatch.setattr(readers, "LINES_BLOCK_BYTES", 2048)  # a block of a few lines: many chunks
    paths = _dump(tmp_path, record)
    alone = _imported(paths, tmp_path, "alone", workers=0, on_duplicate=on_duplicate)
    shared = _imported(paths, tmp_path, "shared", workers=2, on_duplicate=on_duplicate)
    assert shared == alone
    counts, rejections, _, rows, _, found = alone
    # 131 lines: 11 blank, 11 wrappers of 3, 7 broken, 9 invalid, one cut off; 4 in c.json, 5 in d.parquet.
    assert (counts[0], counts[4]) == (152, 17 + (49 if on_duplicate == "error" else 0))
    # Numbered past blank lines, CRLF ends and block edges.
    for expected in (
        "a.jsonl:5: json: invalid JSON",
        "b.jsonl.gz:60: reward: expected a finite number",
        "b.jsonl.gz:72: json: truncated last line (file ends mid-record)",
    ):
        assert any(line.startswith(f"{paths[0]}/{expected}") for line in rejections), expected
    assert ("d0", 0.75, f"{paths[0]}/c.json:1:runs[0]", "gpt-x") in rows
    assert found[f"{paths[0]}/c.json"]["runs"] == "4 records"


def test_a_later_record_of_an_id_replaces_or_is_refused_across_chunks():
    def batch(*rows: tuple[str, float, AnnotationChange | None]) -> Batch:
        base = {name: None for name in TRAJECTORY_SCHEMA.names}
        table = pa.Table.from_pylist(
            [{**base, "trajectory_id": key, "data_id": "q", "steps": "[]", "reward": score} for key, score, _ in rows],
            schema=TRAJECTORY_SCHEMA,
        )
        return Batch(
            trajectories=table,
            annotations={key: change for key, _, change in rows if change is not None},
            ids=[key for key, _, _ in rows],
            locations=[Location("f", int(reward)) for _, reward, _ in rows],
        )

    flagged = AnnotationChange(is_success=True)
    for rule, expected, refused, annotated in [
        ("skip", [("a", 1.0), ("b", 2.0), ("c", 4.0)], [3, 5], {"a": flagged}),
        ("update", [("b", 2.0), ("a", 3.0), ("c", 4.0)], [], {}),
    ]:
        pending = PendingWrite(on_duplicate=rule)
        assert pending.add(batch(("a", 1.0, flagged), ("b", 2.0, None))) == []
        refusals = pending.add(batch(("a", 3.0, None), ("c", 4.0, None)))
        refusals += pending.add(batch(("b", 5.0, flagged)))
        built = pending.build()
        # "update": the later `b` replaced the earlier whole, so its annotation came with it.
        annotated = {"b": flagged} if rule == "update" else annotated
        assert list(zip(built.ids, built.trajectories.column("reward").to_pylist(), strict=True)) == (
            expected if rule == "skip" else [("a", 3.0), ("c", 4.0), ("b", 5.0)]
        )
        assert [location.line for location in refusals] == refused
        assert built.annotations == annotated
        rewards = built.trajectories.column("reward").to_pylist()
        assert [location.line for location in built.locations] == [int(reward) for reward in rewards]


def test_writes_keep_their_size_whatever_the_chunk(tmp_path, record, write_jsonl, monkeypatch):
    path = write_jsonl([record(trajectory_id=f"r{i}") for i in range(23)])
    store = TrajectoryStore(uri=str(tmp_path / "sized"))
    sizes = []
    insert = store.insert_new

    def counted(*, trajectories, annotations=None):
        sizes.append(trajectories.num_rows)
        return insert(trajectories=trajectories, annotations=annotations)

    monkeypatch.setattr(store, "insert_new", counted)
    run_import(paths=[str(path)], options=ImportOptions(batch_size=5, workers=0), store=store, errors=ErrorSink())
    assert sizes == [5, 5, 5, 5, 3]


def test_lines_across_blocks_keep_their_numbers_and_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "LINES_BLOCK_BYTES", 16)
    path = tmp_path / "l.jsonl"
    long_line = b'{"n": "' + b"x" * 300 + b'"}'
    path.write_bytes(b'{"n": 1}\r\n\n' + long_line + b'\n{"n": 2}\n{"n": 3}')
    limits = readers.Limits(max_line_bytes=100)
    items = [item for item in readers.read_sources([str(path)], readers.ByteCounter(), limits=limits)]
    summary = [(item.location.line, getattr(item, "value", None) or item.error.reason[:24]) for item in items]
    assert summary == [
        (1, {"n": 1}),
        (3, "line of 310 bytes is lon"),
        (4, {"n": 2}),
        (5, {"n": 3}),
    ]
