"""Steps as agents really write them, brought to one timeline of messages, calls and results.

The canonical step is a chat message (`role`, `content`, `tool_calls`, `tool_call_id`). Agents and
APIs write the same things in other shapes; each is translated here, once, for every format:

- OpenAI's older `function_call` on an assistant message and `role: "function"` results (linked to
  the call before them, which has no id);
- Anthropic Messages content blocks: `text`, `thinking`, `tool_use` (a call) and `tool_result`
  (a result, possibly `is_error`) inside `content` lists;
- a result linked to its call by `id` instead of `tool_call_id`;
- event histories (`{"type": "action" | "observation", …}` or `source: "agent" | "environment"`);
- agents that act through text: a fenced bash / python block in an assistant message, answered by
  the next message's output, becomes a tool call marked `parsed_from_text`.

Steps already canonical come back as the same list (the common case costs one pass of key checks).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# A fenced block an agent runs: ```bash … ``` (also sh, shell, python); the observation follows.
_FENCED = re.compile(r"```(bash|sh|shell|console|mswea_bash_command|python|py)[ \t]*\n(.*?)```", re.S)
_OBSERVATION = re.compile(r"<returncode>|<output>|^\s*(observation|output|exit code|returncode)\b", re.I | re.M)
_BLOCK_TYPES = {"tool_use", "tool_result", "thinking", "redacted_thinking"}
_RESPONSES_ITEMS = {"function_call", "function_call_output", "message", "reasoning"}
_TEXT_TOOLS = {
    "bash": "bash", "sh": "bash", "shell": "bash", "console": "bash", "mswea_bash_command": "bash",
    "python": "python", "py": "python",
}  # fmt: skip


def normalise(steps: list[Any]) -> list[Any]:
    """The steps in canonical shape; `steps` itself when nothing needed changing."""
    if not any(_needs_work(step, steps, index) for index, step in enumerate(steps)):
        return steps
    result: list[Any] = []
    pending_function: str | None = None  # the id given to the last `function_call`, for its result
    for index, step in enumerate(steps):
        if type(step) is not dict:
            result.append(step)
            continue
        step = _event_as_message(step)
        if (
            isinstance(step.get("function_call"), dict | str)
            and step.get("function_call")
            and not step.get("tool_calls")
        ):
            step, pending_function = _function_call(step, index)
        elif step.get("role") == "function":
            step = {**step, "role": "tool", "tool_call_id": step.get("tool_call_id") or pending_function}
            pending_function = None
        if step.get("role") == "tool" and not step.get("tool_call_id") and step.get("id"):
            step = {**step, "tool_call_id": step["id"]}
        content = step.get("content")
        if type(content) is list and any(_block_type(part) in _BLOCK_TYPES for part in content):
            result.extend(_from_blocks(step, content))
            continue
        result.append(step)
    return _text_actions(result)


def _needs_work(step: Any, steps: list[Any], index: int) -> bool:
    if type(step) is not dict:
        return False
    if "function_call" in step or step.get("role") in ("function", None):
        return True
    if step.get("role") == "tool" and not step.get("tool_call_id") and step.get("id"):
        return True
    content = step.get("content")
    if type(content) is list:
        return any(_block_type(part) in _BLOCK_TYPES for part in content)
    return step.get("role") == "assistant" and not step.get("tool_calls") and _acts_in_text(content, steps, index)


def _block_type(part: Any) -> str | None:
    return part.get("type") if type(part) is dict else None


def _event_as_message(step: dict) -> dict:
    """An event-history entry (`source`/`type` instead of `role`) as a message."""
    if step.get("role") is not None:
        return step
    if step.get("type") in _RESPONSES_ITEMS:
        # OpenAI Responses / Agents SDK items in a message list: a call, its output, a message, reasoning.
        from .adapters import response_item_to_step

        return response_item_to_step(step)
    source, kind = step.get("source"), step.get("type") or step.get("kind")
    if kind in ("action", "tool_call") or source == "agent":
        role = "assistant"
    elif kind in ("observation", "tool_result") or source in ("environment", "tool"):
        role = "tool"
    elif source == "user" or kind == "message":
        role = "user"
    else:
        return step
    changed = {**step, "role": role}
    if role == "assistant" and not step.get("tool_calls") and (name := step.get("action") or step.get("tool")):
        arguments = step.get("args") or step.get("arguments") or step.get("action_input")
        changed["tool_calls"] = [
            {"id": step.get("id") or step.get("tool_call_id"), "name": str(name), "arguments": arguments}
        ]
    if changed.get("content") is None:
        changed["content"] = step.get("message") or step.get("observation") or step.get("thought")
    if role == "tool" and not step.get("tool_call_id"):
        changed["tool_call_id"] = step.get("cause") or step.get("id")
    return changed


def _function_call(step: dict, index: int) -> tuple[dict, str]:
    call = step["function_call"]
    if isinstance(call, str):
        from .adapters import parse_loose

        call = parse_loose(call)
        if not isinstance(call, dict):
            return step, None
    call_id = call.get("id") or f"call-{index}"
    tool_call = {"id": call_id, "name": call.get("name"), "arguments": call.get("arguments")}
    changed = {key: value for key, value in step.items() if key != "function_call"}
    return {**changed, "tool_calls": [tool_call]}, call_id


def _from_blocks(step: dict, blocks: list) -> list[dict]:
    """A message whose content is Anthropic blocks: text and thinking stay its content, `tool_use`
    blocks become its calls, and each `tool_result` block becomes a result step of its own."""
    texts, thinking, calls, results = [], [], [], []
    for part in blocks:
        kind = _block_type(part)
        if kind == "tool_use":
            calls.append({"id": part.get("id"), "name": part.get("name"), "arguments": part.get("input")})
        elif kind == "tool_result":
            result = {"role": "tool", "tool_call_id": part.get("tool_use_id"), "content": part.get("content")}
            if part.get("is_error"):
                result["error"] = True
            results.append(result)
        elif kind in ("thinking", "redacted_thinking"):
            thought = part.get("thinking") or ""
            thinking.append(thought if isinstance(thought, str) else orjson.dumps(thought).decode())
        elif type(part) is dict and type(part.get("text")) is str:
            texts.append(part["text"])
        else:
            texts.append(part)
    rest = {key: value for key, value in step.items() if key != "content"}
    shaped = []
    if texts or calls or thinking or not results:
        message = {
            **rest,
            "content": "\n".join(t for t in texts if type(t) is str) if all(type(t) is str for t in texts) else texts,
        }
        if thinking:
            message["thinking"] = "\n".join(thinking)
        if calls:
            message["tool_calls"] = [*(step.get("tool_calls") or []), *calls]
        shaped.append(message)
    return shaped + results


def _acts_in_text(content: Any, steps: list[Any], index: int) -> bool:
    if type(content) is not str or "```" not in content or _FENCED.search(content) is None:
        return False
    following = steps[index + 1] if index + 1 < len(steps) else None
    return (
        type(following) is dict
        and following.get("role") in ("user", "tool", "environment")
        and type(following.get("content")) is str
        and _OBSERVATION.search(following["content"][:2000]) is not None
    )


def _text_actions(steps: list[Any]) -> list[Any]:
    """Fenced code an agent ran, answered by the next message: a call, and that message its result."""
    for index, step in enumerate(steps):
        if type(step) is not dict or step.get("role") != "assistant" or step.get("tool_calls"):
            continue
        if not _acts_in_text(step.get("content"), steps, index):
            continue
        calls = []
        for position, match in enumerate(_FENCED.finditer(step["content"])):
            language, code = match.groups()
            call_id = f"text-{index}-{position}"
            arguments = {"command": code.strip()} if _TEXT_TOOLS[language] == "bash" else {"code": code.strip()}
            calls.append(
                {"id": call_id, "name": _TEXT_TOOLS[language], "arguments": arguments, "parsed_from_text": True}
            )
        steps[index] = {**step, "tool_calls": calls}
        following = steps[index + 1]
        if not following.get("tool_call_id"):
            steps[index + 1] = {**following, "tool_call_id": calls[-1]["id"]}
    return steps
