"""Real dumps in, as they are: the public formats of agent projects (fixtures in tests/data/formats,
see SOURCES.md there), records found inside documents, and steps in every common shape."""

from __future__ import annotations

import orjson
import pytest

from trajectories.importing.steps import normalise
from trajectories.models import ImportJob

from .conftest import all_rows

pytestmark = pytest.mark.django_db
FORMATS = __import__("pathlib").Path(__file__).parent / "data" / "formats"


def _rows(store) -> dict[str, dict]:
    return {row["trajectory_id"]: row for row in all_rows(store)}


def _steps(store, trajectory_id: str) -> list[dict]:
    return orjson.loads(store.get(trajectory_id=trajectory_id)["steps"])


def test_tau2_results_file_imports_every_simulation_with_outcome_and_model(store, run_import):
    out, _err, error = run_import(FORMATS / "tau2-bench" / "results.json")
    assert error is None
    rows = _rows(store)
    assert len(rows) == 3
    failed = rows["e41f2b07-93a8-4c5e-b1d2-6a0c9f7e5d34"]
    assert (failed["data_id"], failed["sample_id"], failed["reward"], failed["agent_name"]) == (
        "1",
        1,
        0.0,
        "gpt-4.1-2025-04-14",
    )
    assert failed["exec_time"] == pytest.approx(16.581185)
    assert sorted(row["reward"] for row in rows.values()) == [0.0, 1.0, 1.0]
    assert "simulations: 3 records" in out and "tasks: skipped, 2 objects without steps" in out
    steps = _steps(store, failed["trajectory_id"])
    calls = {call["id"] for step in steps for call in step.get("tool_calls") or []}
    results = [step for step in steps if step["role"] == "tool"]
    assert results and all(step["tool_call_id"] in calls for step in results), "results linked by their `id`"
    metadata = orjson.loads(store.get(trajectory_id=failed["trajectory_id"])["metadata"])
    assert metadata["document"]["info.agent_info.llm"] == "gpt-4.1-2025-04-14"
    job = ImportJob.objects.get()
    assert job.findings[str(FORMATS / "tau2-bench" / "results.json")]["simulations"] == "3 records"


def test_toolbench_answer_files_take_function_calls_and_the_finish_answer(store, run_import):
    _out, _err, error = run_import(FORMATS / "toolbench")
    assert error is None
    rows = {row["data_id"]: row for row in all_rows(store)}
    assert set(rows) == {"12845", "33021", "48817"}
    won = rows["12845"]
    assert won["is_success"] is True and won["tool_call_count"] == 3
    assert won["tools"] == ["exchange_for_currency_exchange", "listquotes_for_currency_exchange", "Finish"]
    assert store.get(trajectory_id=won["trajectory_id"])["final_answer"].startswith("At today's rate, 250 US dollars")
    steps = _steps(store, won["trajectory_id"])
    results = [step for step in steps if step["role"] == "tool"]
    assert [step["tool_call_id"] for step in results] == [
        call["id"] for step in steps for call in step.get("tool_calls") or [] if call["name"] != "Finish"
    ]
    assert rows["33021"]["is_success"] is False and rows["48817"]["is_success"] is False


def test_mini_swe_agent_runs_in_both_formats_and_text_actions(store, run_import):
    _out, _err, error = run_import(FORMATS / "mini-swe-agent")
    assert error is None
    rows = all_rows(store)
    assert len(rows) == 3
    assert {row["agent_name"] for row in rows} == {"anthropic/claude-sonnet-4-5-20250929"}
    assert {row["data_id"] for row in rows} == {"acme__calc-101", "acme__calc-102"}
    assert all(row["tool_call_count"] >= 2 and row["tools"] == ["bash"] for row in rows)
    for row in rows:
        steps = _steps(store, row["trajectory_id"])
        parsed = [call for step in steps for call in step.get("tool_calls") or [] if call.get("parsed_from_text")]
        native = [call for step in steps for call in step.get("tool_calls") or [] if not call.get("parsed_from_text")]
        assert parsed or native
        for call in parsed:
            assert call["arguments"]["command"]
            assert any(step.get("tool_call_id") == call["id"] for step in steps), "the next message is its result"


def test_inspect_eval_log_imports_samples_with_scores_epochs_and_tool_calls(store, run_import):
    out, _err, error = run_import(FORMATS / "inspect-ai" / "arithmetic-agent.json")
    assert error is None
    rows = {row["data_id"]: row for row in all_rows(store)}
    assert set(rows) == {"q1", "q2", "q3"}
    assert [rows[key]["reward"] for key in ("q1", "q2", "q3")] == [1.0, 0.0, 0.0]
    assert {row["agent_name"] for row in rows.values()} == {"openai/gpt-4.1-mini"}
    assert {row["sample_id"] for row in rows.values()} == {1}
    assert rows["q2"]["tools"] == ["divide", "add"] and rows["q1"]["tool_call_count"] == 2
    assert "samples: 3 records" in out and "plan" not in out


def test_rl_rollout_dumps_of_verl_nemo_rl_and_trl(store, run_import):
    _out, _err, error = run_import(FORMATS / "rl-rollouts")
    assert error is None
    rows = all_rows(store)
    by_source = {}
    for row in rows:
        source = store.get(trajectory_id=row["trajectory_id"])["source"]
        by_source.setdefault(source.rsplit("/", 1)[-1].split(".")[0], []).append(row)
    assert {name: len(value) for name, value in by_source.items()} == {
        "verl-generations": 6, "nemo-rl-train_data_step1": 4, "trl-completions": 6,
    }  # fmt: skip
    assert {row["iteration_id"] for row in by_source["verl-generations"]} == {41, 42}
    assert {row["iteration_id"] for row in by_source["nemo-rl-train_data_step1"]} == {1}, "the step in the file name"
    assert {row["reward"] for row in by_source["trl-completions"]} <= {0.0, 1.0, 2.0}, "rewards per function summed"
    groups = {}
    for row in by_source["trl-completions"]:
        groups.setdefault((row["iteration_id"], row["data_id"]), []).append(row)
    assert sorted(len(group) for group in groups.values()) == [3, 3], "GRPO groups: same prompt, same step"
    steps = _steps(store, by_source["verl-generations"][0]["trajectory_id"])
    assert [step["role"] for step in steps] == ["user", "assistant"]


def test_records_nested_at_any_depth_with_context_and_keyed_by_id(store, write_jsonl, run_import, tmp_path):
    step = {"role": "assistant", "content": "done"}
    document = {
        "experiment_name": "sweep-7",
        "info": {"agent": {"model": "policy-v3"}, "created_at": "2026-01-02T03:04:05+00:00"},
        "batches": [{"results": {"runs": [{"id": "r1", "task_id": "t1", "messages": [step]}]}}],
        "by_task": {
            "t2": {"output": {"messages": [step]}, "score": 0.5},
            "t3": {"output": {"messages": [step]}, "score": 1.0, "resolved": True},
        },
    }
    path = tmp_path / "nested.json"
    path.write_bytes(orjson.dumps(document))
    out, _err, error = run_import(path)
    assert error is None
    rows = {row["data_id"]: row for row in all_rows(store)}
    assert set(rows) == {"t1", "t2", "t3"}
    assert {row["agent_name"] for row in rows.values()} == {"policy-v3"}
    assert {row["training_id"] for row in rows.values()} == {"sweep-7"}
    assert (rows["t3"]["reward"], rows["t3"]["is_success"], rows["t2"]["is_success"]) == (1.0, True, None)
    assert rows["t1"]["trajectory_id"] == "r1"
    assert str(rows["t1"]["created_at"]).startswith("2026-01-02 03:04:05")
    assert "by_task: 2 records" in out and "batches[0].results.runs: 1 record" in out
    source = store.get(trajectory_id="r1")["source"]
    assert source.endswith("nested.json:1:batches[0].results.runs[0]")


def test_a_document_without_trajectories_is_rejected_saying_what_it_held(store, run_import, tmp_path):
    path = tmp_path / "preds.json"
    path.write_bytes(orjson.dumps({"a-1": {"instance_id": "a-1", "model_patch": "diff"}, "a-2": {"x": 1}}))
    _out, err, error = run_import(path)
    assert "1 records rejected" in str(error)
    assert "no trajectories found in it: it is an object with keys a-1 (an object), a-2 (an object)" in err


def test_a_mapping_names_the_records_and_the_context(store, run_import, tmp_path):
    path = tmp_path / "report.json"
    document = {
        "meta": {"policy": "p-9"},
        "tasks": [{"id": "x", "turns": [{"speaker": "user", "text": "hi"}]}],
        "runs": [{"task": "q1", "turns": [{"speaker": "user", "text": "hi"}], "passed": True}],
    }
    path.write_bytes(orjson.dumps(document))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "records: runs\n"
        "context:\n  agent_name: meta.policy\n"
        "fields:\n  data_id: task\n  steps: turns\n  analysis.is_success: passed\n"
        "step_fields:\n  role: speaker\n  content: text\n"
    )
    _out, _err, error = run_import(path, "--mapping", mapping)
    assert error is None
    [row] = all_rows(store)
    assert (row["data_id"], row["agent_name"], row["is_success"]) == ("q1", "p-9", True)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (  # OpenAI's older function calling
            [
                {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": '{"a": 1}'}},
                {"role": "function", "name": "f", "content": "2"},
            ],
            [("assistant", ["f"], None), ("tool", [], "call-0")],
        ),
        (  # Anthropic Messages blocks
            [
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
                                                  {"type": "text", "text": "look"},
                                                  {"type": "tool_use", "id": "tu1", "name": "g", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "no",
                                              "is_error": True}]},
            ],
            [("assistant", ["g"], None), ("tool", [], "tu1")],
        ),
        (  # results linked by `id`
            [{"role": "assistant", "tool_calls": [{"id": "c9", "name": "h"}]}, {"role": "tool", "id": "c9"}],
            [("assistant", ["h"], None), ("tool", [], "c9")],
        ),
        (  # an event history
            [{"source": "agent", "action": "run", "args": {"cmd": "ls"}, "id": 5},
             {"source": "environment", "observation": "a b", "cause": 5}],
            [("assistant", ["run"], None), ("tool", [], 5)],
        ),
        (  # OpenAI Agents SDK / Responses items in a message list, without roles
            [{"type": "function_call", "call_id": "fc1", "name": "lookup", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "fc1", "output": "found"}],
            [("assistant", ["lookup"], None), ("tool", [], "fc1")],
        ),
        (  # acting through text
            [{"role": "assistant", "content": "THOUGHT: list\n```bash\nls -la\n```"},
             {"role": "user", "content": "<returncode>0</returncode>\n<output>a</output>"}],
            [("assistant", ["bash"], None), ("user", [], "text-0-0")],
        ),
    ],
)  # fmt: skip
def test_steps_in_every_common_shape_become_calls_and_results(steps, expected):
    shaped = normalise(steps)
    assert [
        (step["role"], [call["name"] for call in step.get("tool_calls") or []], step.get("tool_call_id"))
        for step in shaped
    ] == expected


def test_canonical_steps_come_back_untouched():
    steps = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Here:\n```bash\nls\n```"}]
    assert normalise(steps) is steps, "code in an answer with no observation after it is not an action"


def test_a_tool_error_and_step_metadata_show_folded_on_the_detail_page(
    store, staff_client, record, write_jsonl, run_import
):
    steps = [
        {"role": "assistant", "content": "go", "tool_calls": [{"id": "c1", "name": "t", "arguments": {}}],
         "usage": {"tokens": 5}, "raw_data": {"x": 1}, "turn_idx": 0},
        {"role": "tool", "tool_call_id": "c1", "content": "boom", "error": True},
    ]  # fmt: skip
    run_import(write_jsonl([record(trajectory_id="e1", steps=steps)]))
    body = staff_client.get("/trajectories/e1/").content.decode()
    assert body.count('class="step-meta"') == 1 and "metadata: usage, raw_data, turn_idx" in body
    assert 'class="step role-tool step-error"' in body and 'class="error-badge">error' in body


def test_parquet_rollouts_import_by_row_with_the_same_detection(store, run_import, tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"step": step, "prompt": f"Q{question}", "completion": f"A{sample}", "accuracy_reward": float(sample % 2),
         "format_reward": 0.5, "logged_at": datetime.datetime(2026, 1, 1, 0, step, sample), "meta": {"k": [1, 2]}}
        for step in (1, 2) for question in range(3) for sample in range(4)
    ]  # fmt: skip
    path = tmp_path / "completions_00002.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    _out, err, error = run_import(tmp_path)
    assert "broken.parquet:0: file: not a Parquet file" in err and "1 records rejected" in str(error)
    stored = all_rows(store)
    assert len(stored) == 24
    assert {row["iteration_id"] for row in stored} == {1, 2}
    assert sorted({row["reward"] for row in stored}) == [0.5, 1.5]
    groups = {}
    for row in stored:
        groups.setdefault((row["iteration_id"], row["data_id"]), []).append(row)
    assert sorted(len(group) for group in groups.values()) == [4] * 6
    some = store.get(trajectory_id=stored[0]["trajectory_id"])
    assert some["source"].split(":")[-1].isdigit(), "a row is located by its number"
    assert orjson.loads(some["metadata"])["logged_at"].startswith("2026-01-01T00:0")


def test_a_document_too_large_to_read_whole_is_streamed_a_record_at_a_time(store, run_import, tmp_path):
    step = {"role": "assistant", "content": "x" * 2000}
    runs = [{"id": f"s{index}", "task_id": f"t{index % 7}", "messages": [step] * 5} for index in range(200)]
    runs[3]["messages"] = [step] * 400  # more JSON values than the limit below: refused alone
    document = {"info": {"agent": {"model": "m-big"}, "run_name": "r-big"}, "tasks": [{"id": 1}], "runs": runs}
    path = tmp_path / "big.json"
    path.write_bytes(orjson.dumps(document))
    assert path.stat().st_size > 2_000_000
    out, err, error = run_import(path, "--max-document-bytes", "1000000", "--max-json-values", "2000")
    assert "1 records rejected" in str(error)
    assert f"{path}:1:runs[3]: record: more than the 2,000-value limit" in err
    assert "199 records read; runs: 200 records" in out, out
    rows = all_rows(store)
    assert len(rows) == 199
    assert {(row["agent_name"], row["training_id"]) for row in rows} == {("m-big", "r-big")}
    assert store.get(trajectory_id="s150")["source"].endswith("big.json:1:runs[150]")


def test_a_streamed_top_level_array_and_broken_json(store, run_import, tmp_path):
    records = [{"trajectory_id": f"a{index}", "data_id": "q", "steps": [{"role": "user", "content": "y" * 3000}]}
               for index in range(600)]  # fmt: skip
    array = tmp_path / "array.json"
    array.write_bytes(orjson.dumps(records))
    broken = tmp_path / "broken.json"
    broken.write_bytes(orjson.dumps(records)[:-5000])
    _out, err, _error = run_import(array, broken, "--max-document-bytes", "500000")
    assert f"{array}:1[599]" in store.get(trajectory_id="a599")["source"]
    assert f"{broken}:1: json: invalid JSON after (document)[" in err
    assert "the rest of the document was not read" in err
    assert len(all_rows(store)) == 600, "the broken copy's complete records are duplicates of the good ones"
    # A value the stream cannot parse mid-document: the records before it are kept, the stop is named.
    nan = tmp_path / "nan.json"
    nan.write_bytes(orjson.dumps(records[:300])[:-1] + b',{"trajectory_id": "x", "reward": NaN}]')
    _out, err, _error = run_import(nan, "--max-document-bytes", "500000")
    assert f"{nan}:1: json: invalid JSON after (document)[299]; the rest of the document was not read" in err


def test_what_an_adversarial_read_found_stays_fixed(store, run_import, tmp_path):
    """Silent drops, crashes and wrong fills a second read of this work found (one input each)."""
    import gzip

    step = {"role": "user", "content": "q"}
    cases = {
        # Beside records, an element that is not one is rejected, not passed over.
        "mixed.json": {"results": [{"task_id": 1, "traj": [step]}, {"task_id": 2, "traj": []}]},
        # A shared `run_id` is not a trajectory id; milliseconds are a time; a date in another notation stays.
        "runs.jsonl": None,
        # A one-message prompt (unwrapped by the NeMo-RL rule) and a thinking block that is not text.
        "odd.jsonl": None,
    }
    (tmp_path / "mixed.json").write_bytes(orjson.dumps(cases["mixed.json"]))
    runs = [{"task_id": f"t{i}", "run_id": "wandb-1", "timestamp": 1717000000000, "date": "2024/06/01",
             "messages": [step]} for i in range(3)]  # fmt: skip
    (tmp_path / "runs.jsonl").write_bytes(b"".join(orjson.dumps(run) + b"\n" for run in runs))
    odd = [
        {"prompt": [{"role": "user", "content": "2+2"}], "response": "4", "reward": 1.0},
        {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": 5}]}]},
    ]
    (tmp_path / "odd.jsonl").write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in odd))
    (tmp_path / "corrupt.json.gz").write_bytes(gzip.compress(b'[{"steps": []}]')[:-6] + b"xxxxxx")
    _out, err, error = run_import(tmp_path)
    assert "2 records rejected" in str(error), err
    assert "mixed.json:1:results[1]: record: unrecognised shape" in err
    assert "corrupt.json.gz:0: file: corrupt compressed data" in err
    rows = all_rows(store)
    from_runs = [row for row in rows if row["data_id"].startswith("t")]
    assert len(from_runs) == 3 and all(str(row["created_at"]).startswith("2024-05-29") for row in from_runs)
    assert len(rows) == 1 + 3 + 2


def test_a_forced_format_on_the_wrong_shape_rejects_the_record_not_the_file(store, run_import, write_jsonl):
    path = write_jsonl([{"messages": [{"role": "user", "content": "q"}]}] * 2)
    for format_name in ("rollout", "toolbench", "responses"):
        _out, err, error = run_import(path, "--format", format_name)
        assert "2 records rejected" in str(error), (format_name, err)


def test_a_single_record_too_large_to_read_is_refused_and_a_compressed_document_streams(store, run_import, tmp_path):
    import gzip

    one = tmp_path / "one.traj"
    one.write_bytes(orjson.dumps({"trajectory": [{"thought": "t" * 5000, "action": "ls"}] * 5}))
    records = [{"trajectory_id": f"z{i}", "data_id": "q", "steps": [{"role": "user", "content": "x" * 500}]}
               for i in range(300)]  # fmt: skip
    packed = tmp_path / "many.json.gz"
    packed.write_bytes(gzip.compress(orjson.dumps({"results": records})))
    assert packed.stat().st_size < 20_000
    _out, err, _error = run_import(one, packed, "--max-document-bytes", "20000")
    assert "one.traj:0: file: one record larger than the 20,000-byte document limit" in err
    assert len(all_rows(store)) == 300, "the compressed document proved too large to read whole: streamed"
