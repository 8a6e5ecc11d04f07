"""Exports: the lossless round trip, SFT chat, preference pairs, Parquet, CSV; list order and filters."""

from __future__ import annotations

import csv
import io
from io import StringIO

import orjson
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.test import Client

from trajectories import exporting
from trajectories.exporting import to_canonical
from trajectories.query import TrajectoryQuery
from trajectories.store import get_store, reset_store


def _group(record, *, iteration: int, data_id: str, rewards: list[float]) -> list[dict]:
    return [
        record(
            trajectory_id=f"r:{iteration}:{data_id}:{sample}",
            data_id=data_id,
            iteration_id=iteration,
            sample_id=sample,
            reward=reward,
        )
        for sample, reward in enumerate(rewards)
    ]


@pytest.fixture
def exported(db, store, record, write_jsonl, run_import):
    records = [
        *_group(record, iteration=1, data_id="q1", rewards=[0.0, 1.0, 0.5]),
        *_group(record, iteration=1, data_id="q2", rewards=[0.2, 0.3]),  # gap 0.1: no pair at min_gap 0.5
        *_group(record, iteration=2, data_id="q1", rewards=[1.0, 1.0]),  # no gap at all
        record(
            trajectory_id="odd",
            data_id="q9",
            agent_name='=HYPERLINK("x")',
            notes="a note, 中文",
            tags=["t1", "t2"],
            is_bookmarked=True,
            custom_field={"nested": [1, 2]},
            steps=[
                {"role": "user", "content": [{"type": "text", "text": "看图"}]},
                {"role": "assistant", "content": "ok", "usage": {"tokens": 3}},
            ],
        ),
    ]
    assert run_import(write_jsonl(records))[2] is None
    return store, records


def _export(tmp_path, fmt: str, where: str = "", **options) -> bytes:
    out = tmp_path / f"out.{fmt}"
    call_command("export_trajectories", str(out), "--as", fmt, "--where", where, "--no-progress", stderr=StringIO(),
                 **options)  # fmt: skip
    return out.read_bytes()


def _lines(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_jsonl_round_trip_is_identical(exported, tmp_path, settings, run_import):
    store, _ = exported
    store.annotate(trajectory_ids=["r:1:q1:0"], change=exporting_change(), user="me")
    before = {r["trajectory_id"]: to_canonical(r) for r in store.records(trajectory_ids=_every_id(store))}
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(_export(tmp_path, "jsonl"))
    settings.TRAJSITE_DATA_DIR = str(tmp_path / "second")
    reset_store()
    assert run_import(dump)[2] is None
    second = get_store()
    after = {r["trajectory_id"]: to_canonical(r) for r in second.records(trajectory_ids=_every_id(second))}
    assert after == before and len(after) == 8


def exporting_change():
    from trajectories.store import AnnotationChange

    return AnnotationChange(category="loop", root_cause="retried forever", is_success=False, notes="see step 3")


def _every_id(store) -> list[str]:
    return [row["trajectory_id"] for row in store.page(query=TrajectoryQuery(page_size=1000)).rows]


def test_exports_follow_list_order_and_filters(exported, tmp_path):
    lines = _lines(_export(tmp_path, "jsonl", "data_id=q1&ordering=-reward,trajectory_id"))
    assert [line["trajectory_id"] for line in lines] == ["r:1:q1:1", "r:2:q1:0", "r:2:q1:1", "r:1:q1:2", "r:1:q1:0"]


def test_sft_messages_use_openai_tool_calls(exported, tmp_path):
    lines = _lines(_export(tmp_path, "sft", "trajectory_id=r:1:q1:0"))
    messages = lines[0]["messages"]
    assert list(lines[0]) == ["messages"]
    call = messages[2]["tool_calls"][0]
    assert call == {
        "id": "c1",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression":"6*7"}'},
    }
    assert messages[3] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    odd = _lines(_export(tmp_path, "sft", "trajectory_id=odd"))[0]["messages"]
    assert odd[0]["content"] == "看图"


def test_pairs_come_from_one_group_each(exported, tmp_path):
    pairs = _lines(_export(tmp_path, "pairs"))
    assert len(pairs) == 1
    pair = pairs[0]
    assert (pair["chosen_id"], pair["rejected_id"]) == ("r:1:q1:1", "r:1:q1:0")
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (1.0, 0.0)
    assert [m["role"] for m in pair["prompt"]] == ["system", "user"]
    assert pair["chosen"][0]["role"] == "assistant"
    wide = _lines(_export(tmp_path, "pairs", min_gap=0.05))
    assert {(p["data_id"], p["iteration_id"]) for p in wide} == {("q1", 1), ("q2", 1)}
    for found in wide:
        chosen, rejected = found["chosen_id"].split(":"), found["rejected_id"].split(":")
        assert chosen[:3] == rejected[:3] and found["chosen_reward"] - found["rejected_reward"] >= 0.05


def test_parquet_holds_every_row_in_order(exported, tmp_path):
    table = pq.read_table(io.BytesIO(_export(tmp_path, "parquet", "ordering=trajectory_id")))
    ids = table.column("trajectory_id").to_pylist()
    assert ids == sorted(ids) and len(ids) == 8
    row = next(row for row in table.to_pylist() if row["trajectory_id"] == "odd")
    assert row["is_bookmarked"] and row["tags"] == ["t1", "t2"] and orjson.loads(row["steps"])[0]["role"] == "user"
    assert orjson.loads(row["metadata"])["notes"] == "a note, 中文"


def test_csv_quotes_formulas(exported, tmp_path):
    rows = list(csv.DictReader(io.StringIO(_export(tmp_path, "csv", "trajectory_id=odd").decode())))
    assert rows[0]["agent_name"].startswith("'=") and rows[0]["tags"] == "t1|t2"


def test_the_page_and_the_api_stream_exports(exported, staff_client):
    response = staff_client.get("/trajectories/export/", {"as": "jsonl", "data_id": "q2", "page": "1"})
    assert response.status_code == 200 and response.streaming
    assert "attachment" in response["Content-Disposition"]
    assert len(_lines(b"".join(response.streaming_content))) == 2
    api = staff_client.get("/api/trajectories/export/", {"as": "sft", "ordering": "trajectory_id"})
    assert api.status_code == 200 and len(_lines(b"".join(api.streaming_content))) == 8
    assert staff_client.get("/api/trajectories/export/", {"as": "zip"}).status_code == 400
    assert staff_client.get("/trajectories/export/", {"as": "pairs", "min_gap": "nan"}).status_code == 400
    assert Client().get("/trajectories/export/").status_code == 302  # behind login
    assert Client().get("/api/trajectories/export/").status_code in (401, 403)
    assert 'href="/trajectories/export/?as=parquet' in staff_client.get("/trajectories/").content.decode()


def test_a_failed_export_leaves_no_file(exported, tmp_path, monkeypatch):
    def broken(records):
        yield b"{}\n"
        raise OSError("disk full")

    monkeypatch.setitem(exporting.FORMATS, "jsonl", exporting.Format("jsonl", "x", "jsonl", "x", broken))
    with pytest.raises(OSError):
        _export(tmp_path, "jsonl")
    assert not list(tmp_path.glob("out.jsonl*"))


def test_an_export_answers_its_own_type_whatever_the_client_accepts(exported, staff_client):
    response = staff_client.get("/api/trajectories/export/", {"as": "csv"}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
