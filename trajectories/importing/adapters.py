"""Recognising a record's shape and mapping it onto the canonical trajectory object (FORMAT.md).

Each adapter returns a dict with canonical field names; every key it does not map is left in the
dict under its own name, so validation keeps it in `metadata`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from . import outcomes
from .errors import Location, RecordError, type_name

CANONICAL = "canonical"
CHAT = "chat"
RESPONSES = "responses"
SWE_AGENT = "swe-agent"
MESSAGES_DISPLAY = "messages-display"
MAPPING = "mapping"
AUTO = "auto"

Adapter = Callable[[Any, Location], dict[str, Any]]

# Names other projects use for the question id, most specific first.
DATA_ID_KEYS = ("data_id", "question_id", "instance_id", "task_id", "_ng_task_index", "id")


def recognise(value: Any) -> str | None:
    """The format of a value that is one record as it is, or None."""
    if isinstance(value, list):
        return CHAT if is_message_list(value) else None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("steps"), list):
        return CANONICAL
    if "responses_create_params" in value or isinstance(value.get("response"), dict):
        return RESPONSES
    if isinstance(value.get("messages"), list) or isinstance(value.get("traj"), list):
        return CHAT
    if isinstance(value.get("trajectory"), list) or isinstance(value.get("history"), list):
        return SWE_AGENT
    if isinstance(value.get("messages_display"), str):
        return MESSAGES_DISPLAY
    return None


def is_message_list(value: list) -> bool:
    """A bare list of chat messages is one trajectory, not a list of trajectories."""
    return bool(value) and all(isinstance(item, dict) and "role" in item for item in value[:3])


def detect(value: Any) -> str:
    found = recognise(value)
    if found is not None:
        return found
    if isinstance(value, dict) and "steps" in value:
        return CANONICAL  # validation names what is wrong with its steps
    if not isinstance(value, dict):
        raise RecordError.single("record", f"expected a JSON object, got {type_name(value)}")
    raise RecordError.single(
        "record",
        "unrecognised shape: no 'steps', 'messages', 'traj', 'response', 'trajectory' or "
        "'history' key (choose a format or a mapping file)",
    )


def to_canonical(value: Any, location: Location, *, format_name: str) -> tuple[str, dict]:
    name = detect(value) if format_name == AUTO else format_name
    if name != CHAT and not isinstance(value, dict):
        raise RecordError.single("record", f"expected a JSON object, got {type_name(value)}")
    record = ADAPTERS[name](value, location)
    if name != CANONICAL:
        outcomes.fill(record)
    return name, record


def canonical(value: dict, location: Location) -> dict[str, Any]:
    return value


def chat(value: Any, location: Location) -> dict[str, Any]:
    if isinstance(value, list):
        record: dict[str, Any] = {"steps": value}
    else:
        record = dict(value)
        key = "messages" if "messages" in record else "traj"
        record["steps"] = record.pop(key)
    _move_first(record, "sample_id", ("sample_id", "trial"))
    _set_data_id(record, fallback=lambda: _question_id(record["steps"]))
    return record


def responses(value: dict, location: Location) -> dict[str, Any]:
    record = dict(value)
    response = record.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        raise RecordError.single("response.output", "expected a list of Responses API items")
    rest = {key: item for key, item in response.items() if key != "output"}
    record["response"] = rest
    record["steps"] = [_response_item_to_step(item) for item in response["output"]]
    _move_first(record, "sample_id", ("sample_id", "_ng_rollout_index"))
    if "agent_name" not in record and isinstance(rest.get("model"), str):
        record["agent_name"] = rest["model"]
    if "created_at" not in record and isinstance(rest.get("created_at"), int | float):
        record["created_at"] = rest["created_at"]
    params = record.get("responses_create_params")
    prompt = params.get("input") if isinstance(params, dict) else None
    _set_data_id(record, fallback=lambda: _question_id(prompt))
    return record


def _response_item_to_step(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    kind = item.get("type")
    if kind == "function_call":
        call = {"id": item.get("call_id"), "name": item.get("name"), "arguments": item.get("arguments")}
        return {"role": "assistant", "content": None, "tool_calls": [call], "type": kind}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output"), "type": kind}
    if kind == "reasoning":
        summary = item.get("summary") or item.get("content") or []
        return {"role": "reasoning", "content": _parts_text(summary), "type": kind}
    if kind == "message":
        return {"role": item.get("role") or "assistant", "content": _parts_text(item.get("content")), "type": kind}
    return {"role": kind or "unknown", "content": [item]}


def _parts_text(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    texts = [part.get("text") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return "\n".join(texts) if len(texts) == len(content) else content


def swe_agent(value: dict, location: Location) -> dict[str, Any]:
    record = dict(value)
    entries = record.pop("trajectory", None)
    if isinstance(entries, list):
        record["steps"] = [_swe_entry_to_step(index, entry) for index, entry in enumerate(entries)]
        times = [entry.get("execution_time") for entry in entries if isinstance(entry, dict)]
        if "exec_time" not in record and times and all(isinstance(t, int | float) for t in times):
            record["exec_time"] = float(sum(times))
    else:
        record["steps"] = record.pop("history")
    # A .traj file is one run of one task, named after the task instance.
    stem = Path(location.file).name.split(".")[0]
    _set_data_id(record, fallback=lambda: stem if location.file != "<stdin>" else _question_id(record["steps"]))
    return record


def _swe_entry_to_step(index: int, entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    step = {key: item for key, item in entry.items() if key not in {"thought", "action"}}
    step["role"] = "assistant"
    step["content"] = entry.get("thought")
    action = entry.get("action")
    if isinstance(action, str) and action.strip():
        name = action.strip().split(None, 1)[0]
        step["tool_calls"] = [{"id": f"action-{index}", "name": name, "arguments": {"command": action}}]
    return step


def messages_display(value: dict, location: Location) -> dict[str, Any]:
    record = dict(value)
    lines = record.pop("messages_display").split("\n")
    record["steps"] = [_display_line_to_step(line) for line in lines]
    _set_data_id(record, fallback=lambda: _question_id(record["steps"]))
    return record


def _display_line_to_step(line: str) -> dict[str, Any]:
    role, separator, content = line.partition(": ")
    if separator and role.isidentifier():
        return {"role": role, "content": content}
    return {"role": "unknown", "content": line}


def _move_first(record: dict, target: str, names: tuple[str, ...]) -> None:
    if target in record:
        return
    for name in names:
        if name in record:
            record[target] = record.pop(name)
            return


def _set_data_id(record: dict, *, fallback: Callable[[], str]) -> None:
    for key in DATA_ID_KEYS:
        if record.get(key) is not None and not isinstance(record[key], dict | list | bool):
            record["data_id"] = record[key] if key == "data_id" else record.pop(key)
            return
    record["data_id"] = fallback()


def _question_id(messages: Any) -> str:
    """Group rollouts of the same question: a hash of the first user message (or the prompt)."""
    question: Any = messages
    if isinstance(messages, list):
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        question = users[0].get("content") if users else messages
    digest = hashlib.blake2b(orjson.dumps(question, option=orjson.OPT_SORT_KEYS), digest_size=8)
    return "q-" + digest.hexdigest()


ADAPTERS: dict[str, Adapter] = {
    CANONICAL: canonical,
    CHAT: chat,
    RESPONSES: responses,
    SWE_AGENT: swe_agent,
    MESSAGES_DISPLAY: messages_display,
}
FORMAT_CHOICES = (AUTO, *ADAPTERS, MAPPING)
