"""Recognising a record's shape and mapping it onto the canonical trajectory object (FORMAT.md).

Each adapter returns a dict with canonical field names; every key it does not map is left in the
dict under its own name, so validation keeps it in `metadata`.
"""

from __future__ import annotations

import ast
import hashlib
import re
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
TOOLBENCH = "toolbench"
ROLLOUT = "rollout"
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
    if _step_list(value.get("steps"), empty=True):
        return CANONICAL
    if "responses_create_params" in value or isinstance(value.get("response"), dict):
        return RESPONSES
    if isinstance(value.get("answer_generation"), dict):
        return TOOLBENCH
    if _step_list(value.get("messages"), empty=True) or _step_list(value.get("traj")):
        return CHAT
    if _step_list(value.get("trajectory")) or _step_list(value.get("history")):
        return SWE_AGENT
    if _is_rollout_row(value):
        return ROLLOUT
    if isinstance(value.get("messages_display"), str):
        return MESSAGES_DISPLAY
    return None


# Keys a step has in one format or another: a list of objects without any is not a list of steps.
_STEP_KEYS = ("role", "content", "action", "observation", "thought", "type", "source", "message", "text")


def _step_list(value: Any, *, empty: bool = False) -> bool:
    if not isinstance(value, list):
        return False
    if not value:
        return empty
    return all(isinstance(item, dict) and any(key in item for key in _STEP_KEYS) for item in value[:3])


def is_message_list(value: list) -> bool:
    """A bare list of chat messages is one trajectory, not a list of trajectories."""
    return bool(value) and all(isinstance(item, dict) and "role" in item for item in value[:3])


def detect(value: Any) -> str:
    found = recognise(value)
    if found is not None:
        return found
    if isinstance(value, dict):
        # Not recognisable as a record among others, but named like one: validation says what is wrong.
        for key, name in (("steps", CANONICAL), ("messages", CHAT), ("trajectory", SWE_AGENT), ("history", SWE_AGENT)):
            if key in value and (key == "steps" or isinstance(value[key], list)):
                return name
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
    record["steps"] = [response_item_to_step(item) for item in response["output"]]
    _move_first(record, "sample_id", ("sample_id", "_ng_rollout_index"))
    if "agent_name" not in record and isinstance(rest.get("model"), str):
        record["agent_name"] = rest["model"]
    if "created_at" not in record and isinstance(rest.get("created_at"), int | float):
        record["created_at"] = rest["created_at"]
    params = record.get("responses_create_params")
    prompt = params.get("input") if isinstance(params, dict) else None
    _set_data_id(record, fallback=lambda: _question_id(prompt))
    return record


def response_item_to_step(item: Any) -> Any:
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


def toolbench(value: dict, location: Location) -> dict[str, Any]:
    """A ToolBench / ToolLLaMA answer file: the full run is the last of `train_messages`; `Finish`'s
    arguments hold the final answer; success is a valid run that gave an answer."""
    record = {key: item for key, item in value.items() if key not in {"answer_generation", "tree"}}
    answer = value["answer_generation"]
    runs = answer.get("train_messages")
    if isinstance(runs, list) and runs and isinstance(runs[-1], list):
        record["steps"] = runs[-1]
    else:
        record["steps"] = [{"role": "user", "content": answer.get("query")}] if answer.get("query") else []
    final = _finish_answer(answer.get("final_answer"))
    if final:
        record["final_answer"] = final
    if isinstance(value.get("win"), bool):
        record["analysis"] = {"is_success": value["win"]}
    elif isinstance(answer.get("valid_data"), bool):
        record["analysis"] = {"is_success": answer["valid_data"] and answer.get("finish_type") == "give_answer"}
    record["answer_generation"] = {key: item for key, item in answer.items() if key != "train_messages"}
    # One answer file per query: `<query id>_<method>.json`.
    stem = Path(location.file).name.split(".")[0]
    query_id = stem.split("_", 1)[0]
    _set_data_id(record, fallback=lambda: query_id if query_id.isdigit() else _question_id(record["steps"]))
    return record


def _finish_answer(text: Any) -> str | None:
    """`Finish`'s arguments are JSON text with `final_answer` (sometimes a Python repr)."""
    if not isinstance(text, str) or not text.strip():
        return None
    parsed = parse_loose(text)
    if isinstance(parsed, dict):
        found = parsed.get("final_answer")
        return found if isinstance(found, str) else None
    return text


def parse_loose(text: str) -> Any:
    """JSON text, or a Python literal (some agents log `str(dict)`); None when it is neither."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text) if len(text) < 1_000_000 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


# A generic RL rollout row (verl, NeMo-RL, TRL, …): a prompt, a response and a reward.
_PROMPT_KEYS = ("prompt", "input", "question", "query", "problem")
_RESPONSE_KEYS = ("response", "output", "completion", "generation", "responses")
_ROLLOUT_REWARD_KEYS = ("reward", "score", "rewards", "total_reward")
_ROLLOUT_STEP_KEYS = ("step", "global_step", "global_steps", "iteration", "train_step")
_ROLLOUT_GROUP_KEYS = ("uid", "group_id", "prompt_id", "index")
_ROLLOUT_SAMPLE_KEYS = ("sample_idx", "sample_index", "rep_idx", "sample_id")
_STEP_IN_NAME = re.compile(r"(?:step[_-]?|^)(\d+)\.(?:jsonl|json|parquet)", re.I)


def _is_rollout_row(value: dict) -> bool:
    value = _unwrapped(value)
    has_reward = any(key in value for key in _ROLLOUT_REWARD_KEYS) or any(key.endswith("_reward") for key in value)
    if isinstance(value.get("content"), list) and has_reward:
        return True  # NeMo-RL: the conversation as a list of texts or messages
    return has_reward and any(isinstance(value.get(key), str) for key in _RESPONSE_KEYS)


def _unwrapped(value: dict) -> dict:
    """NeMo-RL writes every value as a one-item list."""
    return {key: item[0] if isinstance(item, list) and len(item) == 1 else item for key, item in value.items()}


def rollout(value: dict, location: Location) -> dict[str, Any]:
    """One generated sample of an RL run: the prompt as the user's message, the response as the
    assistant's; the training step as the iteration; the rewards summed when given per function."""
    record = _unwrapped(value)
    content = record.pop("content", None)
    if isinstance(content, list):
        record["steps"] = [_conversation_part(position, part) for position, part in enumerate(content)]
    else:
        prompt_key = next((key for key in _PROMPT_KEYS if key in record), None)
        response_key = next(key for key in _RESPONSE_KEYS if isinstance(record.get(key), str))
        prompt = record.pop(prompt_key) if prompt_key else None
        if isinstance(prompt, dict) and "role" in prompt:
            prompt = [prompt]  # a one-message prompt, unwrapped above
        if isinstance(prompt, list) and is_message_list(prompt):
            steps = list(prompt)
        else:
            steps = [{"role": "user", "content": prompt}] if prompt else []
        record["steps"] = [*steps, {"role": "assistant", "content": record.pop(response_key)}]
    if record.get("reward") is None:
        record["reward"] = _rollout_reward(record)
    _move_first(record, "iteration_id", _ROLLOUT_STEP_KEYS)
    if record.get("iteration_id") is None and (match := _STEP_IN_NAME.search(Path(location.file).name)):
        record["iteration_id"] = int(match.group(1))
    _move_first(record, "sample_id", _ROLLOUT_SAMPLE_KEYS)
    group = next((record[key] for key in _ROLLOUT_GROUP_KEYS if isinstance(record.get(key), str | int)), None)
    _set_data_id(record, fallback=lambda: str(group) if group is not None else _question_id(record["steps"]))
    if record.get("trajectory_id") is None and record.get("sample_id") is None:
        # No sample index: the samples of one prompt in one step differ by what was generated.
        material = orjson.dumps([record.get("iteration_id"), record["data_id"], record["steps"], record.get("reward")])
        record["trajectory_id"] = hashlib.blake2b(material, digest_size=16).hexdigest()
    return record


def _conversation_part(position: int, part: Any) -> Any:
    if isinstance(part, dict):
        return part
    role = (
        "user"
        if position == 0
        else ("environment" if isinstance(part, str) and part.startswith("Environment:") else "assistant")
    )
    return {"role": role, "content": part}


def _rollout_reward(record: dict) -> float | None:
    for key in _ROLLOUT_REWARD_KEYS:
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    parts = [value for key, value in record.items() if key.endswith("_reward") and isinstance(value, int | float)]
    return float(sum(parts)) if parts and not any(isinstance(value, bool) for value in parts) else None


ADAPTERS: dict[str, Adapter] = {
    CANONICAL: canonical,
    CHAT: chat,
    RESPONSES: responses,
    SWE_AGENT: swe_agent,
    MESSAGES_DISPLAY: messages_display,
    TOOLBENCH: toolbench,
    ROLLOUT: rollout,
}
FORMAT_CHOICES = (AUTO, *ADAPTERS, MAPPING)
