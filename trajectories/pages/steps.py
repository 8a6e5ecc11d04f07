"""Shaping steps for the timeline: roles, tool calls paired with their results, long content clipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

STEPS_PER_PAGE = 50
COLLAPSE_LINES = 30
# Past this many characters a step shows its start only, with a link to the whole content.
CLIP_CHARACTERS = 20_000
_SHOWN_KEYS = {"role", "content", "tool_calls", "tool_call_id", "name", "type", "error", "is_error"}


@dataclass
class Block:
    """A piece of text: the first lines always shown, the rest behind "show all"."""

    head: str
    rest: str = ""
    total_lines: int = 0
    clipped_characters: int = 0
    is_json: bool = False


@dataclass
class DisplayStep:
    index: int
    role: str
    name: str | None
    content: Block | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    result_of: dict[str, Any] | None = None
    # The step's other keys (usage, cost, raw provider data, …): kept, shown folded as one block.
    extras: list[str] = field(default_factory=list)
    extras_block: Block | None = None
    error: Block | None = None


def display_steps(steps: list[Any], *, start: int, count: int = STEPS_PER_PAGE) -> list[DisplayStep]:
    calls, results = _pairing(steps)
    shown = []
    for index in range(start, min(start + count, len(steps))):
        step = steps[index] if isinstance(steps[index], dict) else {"role": "unknown", "content": steps[index]}
        tool_calls = [
            {
                "id": call.get("id"),
                "name": call.get("name"),
                "arguments": text_block(call.get("arguments")),
                "result_step": results.get(call.get("id")) if _pairs(call.get("id")) else None,
                "parsed_from_text": bool(call.get("parsed_from_text")),
            }
            for call in step.get("tool_calls") or []
            if isinstance(call, dict)
        ]
        call_id = step.get("tool_call_id")
        extras = {
            key: value for key, value in step.items() if key not in _SHOWN_KEYS and value not in (None, "", [], {})
        }
        shown.append(
            DisplayStep(
                index=index,
                role=str(step.get("role") or "unknown"),
                name=step.get("name") if isinstance(step.get("name"), str) else None,
                content=text_block(step.get("content")) if step.get("content") not in (None, "", []) else None,
                tool_calls=tool_calls,
                result_of=calls.get(call_id) if _pairs(call_id) else None,
                extras=list(extras),
                extras_block=text_block(extras) if extras else None,
                error=_error_of(step),
            )
        )
    return shown


def _error_of(step: dict) -> Block | None:
    """A tool result that says it failed: an `error` text or object, or an error flag."""
    error = step.get("error")
    if error in (None, False, "", {}) and not step.get("is_error"):
        return None
    return text_block("failed" if error in (None, True, False, "", {}) else error)


def _pairing(steps: list[Any]) -> tuple[dict[str, dict], dict[str, int]]:
    """call id → {step, name} of the call; call id → index of the step holding its result."""
    calls: dict[str, dict] = {}
    results: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        for call in step.get("tool_calls") or []:
            # Ids are untrusted: only text or numbers pair a call with its result.
            if isinstance(call, dict) and _pairs(call.get("id")):
                calls[call["id"]] = {"step": index, "name": call.get("name")}
        if _pairs(step.get("tool_call_id")):
            results.setdefault(step["tool_call_id"], index)
    return calls, results


def _pairs(call_id: Any) -> bool:
    """Whether an id can pair a call with its result: untrusted ids may be objects or lists."""
    return isinstance(call_id, str | int) and call_id != "" and call_id is not False


def text_block(value: Any) -> Block:
    text, is_json = _as_text(value)
    clipped = 0
    if len(text) > CLIP_CHARACTERS:
        clipped = len(text)
        text = text[:CLIP_CHARACTERS]
    lines = text.split("\n")
    head, rest = "\n".join(lines[:COLLAPSE_LINES]), "\n".join(lines[COLLAPSE_LINES:])
    return Block(head=head, rest=rest, total_lines=len(lines), clipped_characters=clipped, is_json=is_json)


def _as_text(value: Any) -> tuple[str, bool]:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "[") and len(stripped) < 2_000_000:
            try:
                return orjson.dumps(orjson.loads(stripped), option=orjson.OPT_INDENT_2).decode(), True
            except orjson.JSONDecodeError:
                pass
        return value, False
    if isinstance(value, list) and all(isinstance(part, dict) and isinstance(part.get("text"), str) for part in value):
        return "\n".join(part["text"] for part in value), False
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode(), True


def raw_step_text(step: Any) -> str:
    """One step's content in full, for the "whole content" link of a clipped step."""
    if isinstance(step, dict):
        return _as_text(step.get("content"))[0]
    return _as_text(step)[0]
