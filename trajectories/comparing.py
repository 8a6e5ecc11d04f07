"""Two to four trajectories side by side: their fields as a diff, their steps aligned by tool calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from trajectories import alignment, fields, reads

MIN_COMPARED, MAX_COMPARED = 2, 4
DIFF_FIELDS = (
    "data_id", "training_id", "agent_name", "epoch_id", "iteration_id", "sample_id", *fields.REWARDS,
    "step_count", "tool_call_count", "exec_time", "is_success", "category", "root_cause", "tags", "tools",
    "source_format", "created_at",
)  # fmt: skip


class CompareError(ValueError):
    pass


@dataclass
class Comparison:
    records: list[dict[str, Any]]  # without steps
    steps: list[list[Any]]
    diff: list[tuple[str, list[Any], bool]]  # field, values, whether they differ
    rows: list[list[int | None]]  # step index per trajectory (None: a gap), aligned to the first
    diverges_at: list[int | None]  # per other trajectory: the first step (of the first) where calls differ
    diverging_steps: list[int | None]  # per trajectory: its step where its calls leave the first's


def compare(*, trajectory_ids: list[str]) -> Comparison:
    ids = list(dict.fromkeys(trajectory_ids))
    if not MIN_COMPARED <= len(ids) <= MAX_COMPARED:
        raise CompareError(f"give {MIN_COMPARED} to {MAX_COMPARED} different trajectory ids (ids=a&ids=b)")
    records = []
    for trajectory_id in ids:
        record = reads.trajectory(trajectory_id=trajectory_id)
        if record is None:
            raise CompareError(f"no trajectory {trajectory_id!r}")
        records.append(dict(record))
    steps = [orjson.loads(record.pop("steps")) for record in records]
    diff = [(name, [record.get(name) for record in records], len({repr(r.get(name)) for r in records}) > 1)
            for name in DIFF_FIELDS]  # fmt: skip
    first_actions = alignment.actions(steps[0])
    diverges, diverging = [], [None]
    for other in steps[1:]:
        theirs = alignment.actions(other)
        split = alignment.first_divergence(first_actions, theirs)
        diverges.append(first_actions[split].step if split is not None and split < len(first_actions) else None)
        diverging.append(theirs[split].step if split is not None and split < len(theirs) else None)
    if diverges and diverges[0] is not None:
        diverging[0] = diverges[0]
    return Comparison(records, steps, diff, _rows(steps), diverges, diverging)


def _rows(steps: list[list[Any]]) -> list[list[int | None]]:
    """Rows of step indices, one column per trajectory: every other trajectory aligned to the first;
    its unmatched steps get rows of their own just before the first's next step."""
    first = len(steps[0])
    before: list[list[list[int | None]]] = [[] for _ in range(first + 1)]  # gap rows before each step
    rows = [[index] + [None] * (len(steps) - 1) for index in range(first)]
    for column, other in enumerate(steps[1:], start=1):
        waiting: list[int] = []
        for left, right in alignment.align(steps[0], other):
            if left is None:
                waiting.append(right)
                continue
            rows[left][column] = right
            before[left] += [_gap(len(steps), column, step) for step in waiting]
            waiting = []
        before[first] += [_gap(len(steps), column, step) for step in waiting]
    ordered = []
    for index in range(first):
        ordered += before[index]
        ordered.append(rows[index])
    ordered += before[first]
    return ordered


def _gap(width: int, column: int, step: int) -> list[int | None]:
    row: list[int | None] = [None] * width
    row[column] = step
    return row
