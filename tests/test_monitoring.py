"""Monitors: every import's new rows meet the switched-on monitors; matches are tagged, exactly."""

from __future__ import annotations

import pytest

from tests.conftest import all_rows
from trajectories import monitoring
from trajectories.models import Monitor


def _tags(store) -> dict[str, set[str]]:
    return {row["trajectory_id"]: {t for t in row["tags"] or [] if t.startswith("monitor:")} for row in all_rows(store)}


def _steps(text: str, *, tools: bool = True, answer: str = "done") -> list[dict]:
    steps = [{"role": "user", "content": "go"}]
    if tools:
        steps += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "name": "bash", "arguments": {"c": "x"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": text},
        ]
    return [*steps, {"role": "assistant", "content": answer}]


@pytest.fixture
def records(record):
    return [
        record(trajectory_id="err", steps=_steps("bash: ./run.sh: Permission denied"), reward=0.0),
        record(trajectory_id="zh", steps=_steps("错误：权限不足"), reward=0.2),
        record(trajectory_id="notool", steps=_steps("", tools=False), reward=0.5),
        record(trajectory_id="hack", steps=_steps("ok", answer="   "), reward=1.0),
        record(trajectory_id="long", steps=_steps("ok") + [{"role": "user", "content": "more"}] * 4, reward=0.3),
        record(trajectory_id="fine", steps=_steps("all good"), reward=1.0),
    ]


def test_the_shipped_monitors_are_off_until_switched_on(db, store, records, write_jsonl, run_import):
    assert set(Monitor.objects.values_list("name", flat=True)) == {
        "tool-error", "no-tool-answer", "rewarded-empty-answer", "truncated",
    }  # fmt: skip
    assert not Monitor.objects.filter(enabled=True).exists()
    assert run_import(write_jsonl(records))[2] is None
    assert all(not tags for tags in _tags(store).values())


def test_every_import_tags_what_the_monitors_find(db, store, records, write_jsonl, run_import):
    Monitor.objects.update(enabled=True)
    Monitor.objects.create(name="permission", query='q="permission denied"')
    assert run_import(write_jsonl(records))[2] is None
    assert _tags(store) == {
        "err": {"monitor:tool-error", "monitor:permission"},
        "zh": {"monitor:tool-error"},
        "notool": {"monitor:no-tool-answer"},
        "hack": {"monitor:rewarded-empty-answer"},
        "long": {"monitor:truncated"},
        "fine": set(),
    }
    assert Monitor.objects.get(name="permission").last_matched == 1


def test_only_the_new_rows_are_asked_and_a_later_run_covers_the_rest(db, store, records, write_jsonl, run_import):
    assert run_import(write_jsonl(records[:3], "old.jsonl"))[2] is None
    Monitor.objects.filter(name="tool-error").update(enabled=True)
    assert run_import(write_jsonl(records[3:], "new.jsonl"))[2] is None
    assert not _tags(store)["err"]
    assert monitoring.run(import_id=None) == {"tool-error": 2}
    assert _tags(store)["err"] == {"monitor:tool-error"} and _tags(store)["zh"] == {"monitor:tool-error"}


def test_a_failing_monitor_never_loses_an_import(db, store, records, write_jsonl, run_import, monkeypatch):
    Monitor.objects.update(enabled=True)

    def broken(**_):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(store), "imported_matching", lambda self, **kwargs: broken())
    assert run_import(write_jsonl(records))[2] is None
    assert len(all_rows(store)) == len(records)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "at least one condition"),
        ("agent_name=", "empty value"),
        ("page=2", "does not choose"),
        ("bogus=1", "unknown"),
    ],
)
def test_a_monitor_states_its_rows(query, message):
    with pytest.raises(monitoring.MonitorError, match=message):
        monitoring.parsed(query)


def test_the_pages_create_switch_and_show_monitors(db, store, records, write_jsonl, run_import, staff_client):
    listing = staff_client.get("/trajectories/", {"q": "denied"}).content.decode()
    assert "/trajectories/monitors/?from=q%3Ddenied" in listing
    form = staff_client.get("/trajectories/monitors/", {"from": "q=denied"}).content.decode()
    assert 'value="q=denied"' in form
    bad = staff_client.post("/trajectories/monitors/", {"name": "Bad Name", "query": "q=x", "rule": ""})
    assert bad.status_code == 400
    made = staff_client.post("/trajectories/monitors/", {"name": "denied", "query": "q=denied", "rule": ""})
    assert made.status_code == 302
    assert run_import(write_jsonl(records))[2] is None
    home = staff_client.get("/").content.decode()
    assert 'href="/trajectories/?tag=monitor%3Adenied">1</a>' in home
    off = Monitor.objects.get(name="tool-error")
    staff_client.post(f"/trajectories/monitors/{off.pk}/toggle/")
    assert Monitor.objects.get(name="tool-error").enabled
    staff_client.post("/trajectories/monitors/run/")
    assert _tags(store)["zh"] == {"monitor:tool-error"}
    page = staff_client.get("/trajectories/monitors/").content.decode()
    assert 'id="monitor-tool-error"' in page


def test_a_rerun_leaves_rows_tagged_already_alone(db, store, records, write_jsonl, run_import):
    Monitor.objects.filter(name="tool-error").update(enabled=True)
    assert run_import(write_jsonl(records))[2] is None
    from trajectories.store import AnnotationChange

    store.annotate(trajectory_ids=["err"], change=AnnotationChange(category="env"), user="alice")
    assert monitoring.run(import_id=None) == {"tool-error": 0}
    row = next(row for row in all_rows(store) if row["trajectory_id"] == "err")
    assert row["category"] == "env" and "monitor:tool-error" in row["tags"]
    assert store.get(trajectory_id="err")["updated_by"] == "alice"
