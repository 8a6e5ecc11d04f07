"""Derived columns: computed once at import, and filled in for a store made before they existed."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from trajectories.query import parse_query
from trajectories.store import get_store, reset_store


def test_an_old_store_gets_its_derived_columns_back(db, store, record, write_jsonl, run_import):
    made = [record(trajectory_id=f"t{i}", steps=[{"role": "tool", "content": f"权限不足 case {i}"}]) for i in range(5)]
    assert run_import(write_jsonl(made))[2] is None
    table = store._table("trajectories")
    fresh = table.to_lance().to_table(columns=["trajectory_id", "answered", "search_text", "embedding"]).to_pylist()
    # What a store made before these columns looks like: the columns there, every value null.
    dataset = table.to_lance()
    dataset.drop_columns(["answered", "search_text", "embedding"])
    reset_store()
    old = get_store()
    assert old.page(query=parse_query({"q": "权限不足"})).count == 0
    out = StringIO()
    call_command("backfill_derived", stdout=out)
    assert "filled 5 rows" in out.getvalue()
    reset_store()
    again = get_store()
    table = again._table("trajectories")
    after = table.to_lance().to_table(columns=["trajectory_id", "answered", "search_text", "embedding"]).to_pylist()
    key = lambda row: row["trajectory_id"]  # noqa: E731
    assert sorted(after, key=key) == sorted(fresh, key=key)
    assert again.page(query=parse_query({"q": "权限不足"})).count == 5
    call_command("backfill_derived", stdout=StringIO())  # nothing left to fill: a no-op


def test_a_missing_embedding_is_computed_from_the_stored_text(db, store, record, write_jsonl, run_import):
    made = [record(trajectory_id=f"t{i}", steps=[{"role": "tool", "content": f"KeyError case {i}"}]) for i in range(4)]
    assert run_import(write_jsonl(made))[2] is None
    columns = ["trajectory_id", "answered", "search_text", "embedding"]
    fresh = store._table("trajectories").to_lance().to_table(columns=columns).to_pylist()
    store._table("trajectories").to_lance().drop_columns(["embedding"])
    reset_store()
    assert get_store().backfill_derived() == 4
    reset_store()
    after = get_store()._table("trajectories").to_lance().to_table(columns=columns).to_pylist()
    key = lambda row: row["trajectory_id"]  # noqa: E731
    assert sorted(after, key=key) == sorted(fresh, key=key)
