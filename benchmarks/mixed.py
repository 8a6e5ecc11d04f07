"""A dump shaped like the ones teams really have, and the floor an importer is measured against.

`write_mixed(path, count)` re-shapes the demo generator's records the way other tools write them:
OpenAI-style calls with JSON-string arguments, Responses API items, content as a list of parts,
`{"trajectories": [...]}` wrapper lines (every tenth line holds five records), unknown fields, and 5%
invalid records. `floor(path, store)` is what one process does with that file when it does nothing but
the unavoidable: read lines, parse them with orjson, keep the canonical fields, re-serialise the steps,
append 5,000-row Arrow batches to a LanceDB table (no validation, no dedupe, no derived columns).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pyarrow as pa

from trajectories.demo import DemoShape, generate

_FLOOR_FIELDS = (
    "trajectory_id", "data_id", "training_id", "agent_name", "epoch_id", "iteration_id", "sample_id",
    "reward", "exec_time",
)  # fmt: skip


def write_mixed(path: Path, count: int, *, seed: int = 11) -> int:
    """Write about `count` records in mixed shapes; returns how many records the file holds."""
    rng = random.Random(seed)
    records = generate(DemoShape(count=count, seed=seed))
    written = 0
    with open(path, "wb") as stream:
        pending: list[dict] = []
        for index, record in enumerate(records):
            record = _reshaped(record, rng, index)
            if rng.random() < 0.1 * 5 / 6:  # a tenth of the lines are wrappers of five records
                pending.append(record)
                if len(pending) == 5:
                    stream.write(orjson.dumps({"trajectories": pending, "exported_by": "other-tool"}) + b"\n")
                    pending = []
            else:
                stream.write(orjson.dumps(record) + b"\n")
            written += 1
        for record in pending:
            stream.write(orjson.dumps(record) + b"\n")
    return written


def _reshaped(record: dict, rng: random.Random, index: int) -> dict:
    record["run_meta"] = {"host": f"node-{index % 64}", "seed": index, "tags": ["a", "b"]}  # unknown fields
    if rng.random() < 0.05:  # invalid: no question id, or a reward that is not a number
        if rng.random() < 0.5:
            del record["data_id"]
        else:
            record["reward"] = "high"
        return record
    shape = rng.random()
    if shape < 0.45:
        return _openai(record)
    if shape < 0.65:
        return _responses(record)
    if shape < 0.85:
        return _parts(record)
    return record


def _openai(record: dict) -> dict:
    """Calls as the OpenAI chat API returns them: `function` objects with JSON-string arguments."""
    for step in record["steps"]:
        if step.get("tool_calls"):
            step["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": orjson.dumps(call["arguments"]).decode()},
                }
                for call in step["tool_calls"]
            ]
    record["messages"] = record.pop("steps")
    return record


def _responses(record: dict) -> dict:
    """A NeMo Gym-style Responses record: the prompt in the create params, the run as output items."""
    steps = record.pop("steps")
    output = []
    for step in steps[2:]:
        if step["role"] == "assistant":
            output.append(
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": step["content"]}]}
            )
            for call in step.get("tool_calls") or []:
                arguments = orjson.dumps(call["arguments"]).decode()
                output.append(
                    {"type": "function_call", "call_id": call["id"], "name": call["name"], "arguments": arguments}
                )
        elif step["role"] == "tool":
            output.append({"type": "function_call_output", "call_id": step["tool_call_id"], "output": step["content"]})
    record["responses_create_params"] = {"input": steps[:2]}
    record["response"] = {"id": f"resp_{record['trajectory_id']}", "output": output, "model": record["agent_name"]}
    return record


def _parts(record: dict) -> dict:
    """Content as a list of typed parts."""
    for step in record["steps"]:
        if isinstance(step.get("content"), str):
            step["content"] = [{"type": "text", "text": step["content"]}]
    return record


def floor(path: Path, store) -> tuple[int, float]:
    """(records written, seconds): the least any importer must do with the file, in one process."""
    table_name = "floor"
    text = {name for name in _FLOOR_FIELDS if name.endswith("_id") or name == "agent_name"}
    columns = [pa.field(name, pa.string() if name in text else pa.float64()) for name in _FLOOR_FIELDS]
    schema = pa.schema([*columns, pa.field("steps", pa.large_string())])
    table = store.floor_table(table_name, schema)
    started = time.perf_counter()
    batch: list[dict] = []
    written = 0
    with open(path, "rb") as stream:
        for line in stream:
            value = orjson.loads(line)
            for record in value.get("trajectories", [value]):
                steps = record.get("steps") or record.get("messages") or (record.get("response") or {}).get("output")
                row = {name: _floor_value(name, record.get(name)) for name in _FLOOR_FIELDS}
                row["steps"] = orjson.dumps(steps).decode()
                batch.append(row)
                if len(batch) == 5000:
                    table.add(pa.Table.from_pylist(batch, schema=schema))
                    written += len(batch)
                    batch = []
    if batch:
        table.add(pa.Table.from_pylist(batch, schema=schema))
        written += len(batch)
    return written, time.perf_counter() - started


def _floor_value(name: str, value):
    if name.endswith("_id") or name == "agent_name":
        return None if value is None else str(value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
