"""Tool-call sequences of trajectories: where two rollouts part ways, and how their steps line up.

A step's "action" is its tool calls (name and arguments); a step without tool calls has none. Two
timelines are aligned by the longest common subsequence of their steps' keys (equal calls, results
of equal calls, else the same role face each other; the rest face gaps), the classic dynamic
programme, bounded in size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

# Above this many steps on both sides the alignment table would be too large: the tail is unaligned.
MAX_ALIGNED_STEPS = 400
_ERROR = re.compile(
    r"Traceback \(most recent call last\)|\b[A-Z][A-Za-z]*(Error|Exception)\b|\berror:|Permission denied"
    r"|command not found|No such file or directory|exit code [1-9]|timed out",
)
ERROR_SNIPPET = 200


@dataclass(frozen=True)
class Action:
    step: int
    calls: tuple[tuple[str, str], ...]  # (name, arguments as canonical JSON)

    @property
    def names(self) -> str:
        return ", ".join(name for name, _ in self.calls)


def actions(steps: list[Any]) -> list[Action]:
    """Each step that makes tool calls, in order."""
    found = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        calls = tuple(
            (str(call.get("name")), _canonical(call.get("arguments")))
            for call in step.get("tool_calls") or []
            if isinstance(call, dict)
        )
        if calls:
            found.append(Action(step=index, calls=calls))
    return found


def tool_names(steps: list[Any]) -> list[str]:
    return [name for action in actions(steps) for name, _ in action.calls]


def first_divergence(left: list[Action], right: list[Action]) -> int | None:
    """The index (in actions) of the first call that differs; None when one is a prefix of the other
    and they have the same length (identical sequences)."""
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a.calls != b.calls:
            return index
    return None if len(left) == len(right) else min(len(left), len(right))


def first_tool_error(steps: list[Any]) -> tuple[int, str] | None:
    """The first tool result that reports a failure (an error field or flag, or error text): its step
    index and the start of what it said."""
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("role") not in ("tool", "function", "observation", "ipython"):
            continue
        if step.get("is_error") or step.get("error"):
            return index, _text(step.get("error") or step.get("content"))[:ERROR_SNIPPET]
        text = _text(step.get("content"))
        found = _ERROR.search(text)
        if found:
            start = max(0, found.start() - 40)
            return index, text[start : start + ERROR_SNIPPET]
    return None


def align(left: list[Any], right: list[Any]) -> list[tuple[int | None, int | None]]:
    """Pairs of step indices (None: a gap) covering both step lists in order, by the longest common
    subsequence of step keys: a call step's key is its calls, a tool result's is the call it answers,
    any other step's is its role. Unmatched steps face gaps."""
    keys_left, keys_right = step_keys(left), step_keys(right)
    n, m = min(len(left), MAX_ALIGNED_STEPS), min(len(right), MAX_ALIGNED_STEPS)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = table[i], table[i + 1]
        key = keys_left[i]
        for j in range(m - 1, -1, -1):
            row[j] = below[j + 1] + 1 if key == keys_right[j] else max(below[j], row[j + 1])
    pairs: list[tuple[int | None, int | None]] = []
    i = j = 0
    while i < n and j < m:
        if keys_left[i] == keys_right[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            pairs.append((i, None))
            i += 1
        else:
            pairs.append((None, j))
            j += 1
    pairs += [(index, None) for index in range(i, len(left))]
    pairs += [(None, index) for index in range(j, len(right))]
    return pairs


def step_keys(steps: list[Any]) -> list[tuple]:
    """What a step must equal to face another: its calls, the call it answers, or its role."""
    answered: dict[str, tuple] = {}
    keys: list[tuple] = []
    for step in steps:
        if not isinstance(step, dict):
            keys.append(("other",))
            continue
        calls = tuple(
            (str(call.get("name")), _canonical(call.get("arguments")))
            for call in step.get("tool_calls") or []
            if isinstance(call, dict)
        )
        for call in step.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id"):
                answered[str(call["id"])] = calls
        if calls:
            keys.append(("calls", calls))
        elif step.get("tool_call_id") and str(step["tool_call_id"]) in answered:
            keys.append(("result", answered[str(step["tool_call_id"])]))
        else:
            keys.append(("role", str(step.get("role"))))
    return keys


def _canonical(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
    try:
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return str(arguments)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(part.get("text") or "") if isinstance(part, dict) else str(part) for part in value)
    return "" if value is None else str(value)
