"""Outcomes, times and ids under the names and nestings agent projects give them.

Applied to records of every recognised format but the canonical one (whose names are the contract):
a field already set is never overwritten, and the key a value came from stays in the metadata.
"""

from __future__ import annotations

import math
from typing import Any

# Dotted paths, most specific first.
REWARD_PATHS = (
    "reward", "total_reward", "final_reward", "score", "reward_info.reward", "result.reward", "results.reward",
    "eval.reward", "info.reward", "outcome.reward",
)  # fmt: skip
SUCCESS_PATHS = (
    "is_success", "success", "resolved", "win", "passed", "solved", "correct", "result.success",
    "info.success", "eval.passed", "outcome.success",
)  # fmt: skip
DURATION_PATHS = (
    "exec_time", "duration", "total_time", "elapsed", "elapsed_time", "execution_time", "runtime",
    "wall_time", "working_time",
)  # fmt: skip
START_PATHS = ("created_at", "start_time", "started_at", "timestamp", "created", "date")
SAMPLE_PATHS = ("sample_id", "trial", "sample_index", "sample_idx", "rep_idx", "attempt")
AGENT_PATHS = (
    "agent_name", "model_name", "model", "agent", "llm", "policy", "info.config.model.model_name",
    "info.model_name", "config.model.model_name",
)  # fmt: skip
# Ids of one run of one task. Not `run_id`: trackers use it for a whole training run, shared by many.
RUN_ID_PATHS = ("simulation_id", "uuid", "trajectory_id", "id")
# Letter grades of eval frameworks (Inspect AI: CORRECT, INCORRECT, PARTIAL, NOANSWER).
GRADES = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}


def fill(record: dict) -> None:
    """Set reward, success, exec_time, created_at, sample_id, agent_name and trajectory_id from the
    names other projects use, where the record does not give them under the canonical name."""
    _fill_number(record, "reward", REWARD_PATHS)
    if record.get("reward") is None:
        scored = _from_scores(record.get("scores"))
        if scored is not None:
            record["reward"] = scored
    success = _first(record, SUCCESS_PATHS, lambda value: type(value) is bool)
    analysis = record.get("analysis")
    if success is not None and (type(analysis) is not dict or analysis.get("is_success") is None):
        record["analysis"] = {**(analysis if type(analysis) is dict else {}), "is_success": success}
    _fill_number(record, "exec_time", DURATION_PATHS, minimum=0.0)
    if record.get("created_at") is None:
        moment = _first(record, START_PATHS[1:], lambda value: usable_time(value) is not None)
        if moment is not None:
            record["created_at"] = usable_time(moment)
    if record.get("sample_id") is None:
        sample = _first(record, SAMPLE_PATHS[1:], lambda value: type(value) is int and value >= 0)
        if sample is None and "scores" in record and type(record.get("epoch")) is int:
            sample = record["epoch"]  # an eval sample's epoch is its repeat, not a training epoch
        if sample is not None:
            record["sample_id"] = sample
    if record.get("agent_name") is None:
        agent = _first(record, AGENT_PATHS[1:], lambda value: type(value) is str and bool(value))
        if agent is not None:
            record["agent_name"] = agent
    if record.get("trajectory_id") is None:
        run_id = _first(record, RUN_ID_PATHS[:-2] + RUN_ID_PATHS[-1:], lambda value: type(value) in (str, int))
        if run_id is not None and str(run_id) != str(record.get("data_id")):
            record["trajectory_id"] = str(run_id)


def _fill_number(record: dict, name: str, paths: tuple[str, ...], *, minimum: float | None = None) -> None:
    if record.get(name) is not None:
        return
    value = _first(record, paths[1:], _is_number)
    if type(value) is bool:
        value = float(value)
    if value is not None and (minimum is None or value >= minimum):
        record[name] = float(value)


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float or type(value) is bool) and (
        type(value) is bool or math.isfinite(value)
    )


def _first(record: dict, paths: tuple[str, ...], accept) -> Any:
    for path in paths:
        value = record
        for part in path.split("."):
            if type(value) is not dict:
                value = None
                break
            value = value.get(part)
        if value is not None and accept(value):
            return value
    return None


def _from_scores(scores: Any) -> float | None:
    """A `scores` object of scorer → value (or → {"value": …}): the first scorer's value as a number."""
    if type(scores) is not dict:
        return None
    for score in scores.values():
        value = score.get("value") if type(score) is dict else score
        if type(value) is str and value in GRADES:
            return GRADES[value]
        if _is_number(value):
            return float(value)
    return None


def usable_time(value: Any) -> Any:
    """A time the canonical `created_at` takes (unix seconds or ISO-8601), from seconds, milliseconds
    or ISO text; None for anything else (a date in another notation is left in the metadata)."""
    if type(value) in (int, float) and math.isfinite(value):
        if 1e8 <= value < 1e11:
            return value
        if 1e11 <= value < 1e14:
            return value / 1000  # milliseconds
        return None
    if type(value) is str and value:
        from datetime import datetime

        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None
        return value
    return None
