"""Validating a canonical record and turning it into a store row (FORMAT.md is the contract).

This is the importer's hot path: plain type checks, no per-field objects, one pass over the steps.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from trajectories.derived import derived_columns
from trajectories.store.annotations import AnnotationChange

from .errors import FieldError, RecordError, type_name
from .steps import normalise

MAX_ID_LENGTH = 512
MAX_FIELD_ERRORS = 20
FINAL_ANSWER_LENGTH = 2000
_INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

KNOWN_FIELDS = frozenset(
    {
        "trajectory_id", "data_id", "training_id", "agent_name", "epoch_id", "iteration_id",
        "sample_id", "reward", "toolcall_reward", "res_reward", "exec_time", "steps",
        "step_count", "analysis", "is_bookmarked", "tags", "created_at", "final_answer",
    }
)  # fmt: skip
_ANALYSIS_FIELDS = ("is_success", "category", "root_cause")
_POSITION_FIELDS = ("epoch_id", "iteration_id", "sample_id")


@dataclass(frozen=True, slots=True)
class Defaults:
    training_id: str | None = None
    agent_name: str | None = None
    import_id: str | None = None
    imported_at_us: int = 0


@dataclass(slots=True)
class Validated:
    row: dict[str, Any]
    annotation: AnnotationChange | None
    warnings: list[FieldError]


def validate(record: dict, *, source: str, source_format: str, defaults: Defaults) -> Validated:
    errors: list[FieldError] = []
    warnings: list[FieldError] = []
    row: dict[str, Any] = {
        "data_id": _identifier(record, "data_id", errors, required=True),
        "training_id": _text(record, "training_id", errors) or defaults.training_id,
        "agent_name": _text(record, "agent_name", errors) or defaults.agent_name,
    }
    for name in _POSITION_FIELDS:
        row[name] = _count(record, name, errors)
    for name in ("reward", "toolcall_reward", "res_reward"):
        row[name] = _number(record, name, errors)
    row["exec_time"] = _number(record, "exec_time", errors, minimum=0.0)
    _add_steps(record, row, errors, warnings)
    annotation = _annotation(record, errors)
    created_at = _timestamp(record, errors)
    given_id = _identifier(record, "trajectory_id", errors, required=False)
    if errors:
        raise RecordError(errors)
    try:
        row["trajectory_id"] = given_id or _derived_id(record, row)
        row["metadata"] = _metadata(record)
    except orjson.JSONEncodeError as error:
        raise RecordError.single("metadata", f"cannot be stored as JSON: {error}") from error
    row["source_format"] = source_format
    row["source"] = source
    row["import_id"] = defaults.import_id
    row["created_at"] = defaults.imported_at_us if created_at is None else created_at
    row["imported_at"] = defaults.imported_at_us
    return Validated(row, annotation, warnings)


def _identifier(record: dict, name: str, errors: list[FieldError], *, required: bool) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            errors.append(FieldError(name, "missing (required)"))
        return None
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        errors.append(FieldError(name, f"expected a string or integer, got {type_name(value)}"))
        return None
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        errors.append(FieldError(name, f"must be 1-{MAX_ID_LENGTH} printable characters"))
        return None
    return value


def _text(record: dict, name: str, errors: list[FieldError]) -> str | None:
    value = record.get(name)
    if value is None or type(value) is str:
        return value
    errors.append(FieldError(name, f"expected a string, got {type_name(value)}"))
    return None


def _count(record: dict, name: str, errors: list[FieldError]) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        errors.append(FieldError(name, f"expected an integer >= 0, got {type_name(value)}"))
        return None
    if not 0 <= value <= _INT64_MAX:
        errors.append(FieldError(name, f"expected an integer >= 0, got {value}"))
        return None
    return value


def _number(record: dict, name: str, errors: list[FieldError], *, minimum: float | None = None) -> float | None:
    value = record.get(name)
    if value is None:
        return None
    if type(value) is not float and type(value) is not int:
        errors.append(FieldError(name, f"expected a finite number, got {type_name(value)}"))
        return None
    if not math.isfinite(value):
        errors.append(FieldError(name, f"{value} is not a finite number"))
        return None
    if minimum is not None and value < minimum:
        errors.append(FieldError(name, f"must be >= {minimum:g}, got {value}"))
        return None
    return float(value)


def _add_steps(record: dict, row: dict, errors: list[FieldError], warnings: list[FieldError]) -> None:
    steps = record.get("steps")
    if type(steps) is str and steps.lstrip().startswith("["):
        # Steps kept as JSON text, as Parquet and CSV dumps often hold them.
        try:
            steps = orjson.loads(steps)
        except orjson.JSONDecodeError as error:
            errors.append(FieldError("steps", f"text that is not a JSON list of steps: {error}"))
            return
    if not isinstance(steps, list):
        reason = "missing (required)" if steps is None else f"expected a list, got {type_name(steps)}"
        errors.append(FieldError("steps", reason))
        return
    steps = normalise(steps)
    tools: dict[str, None] = {}
    calls = 0
    final_answer = None
    for index, step in enumerate(steps):
        if len(errors) >= MAX_FIELD_ERRORS:
            # A million malformed steps would make a million messages: the first few say enough.
            errors.append(FieldError("steps", f"more problems after steps[{index - 1}] not listed"))
            return
        if type(step) is not dict:
            errors.append(FieldError(f"steps[{index}]", f"expected an object, got {type_name(step)}"))
            continue
        role = step.get("role")
        if type(role) is not str:
            errors.append(FieldError(f"steps[{index}].role", "missing or not a string"))
        raw_calls = step.get("tool_calls")
        if raw_calls:
            normalized = _tool_calls(raw_calls, index, errors)
            if normalized is not None:
                if normalized is not raw_calls:
                    step = steps[index] = {**step, "tool_calls": normalized}
                calls += len(normalized)
                tools.update(dict.fromkeys(call["name"] for call in normalized))
        if role == "assistant":
            text = _content_text(step.get("content"))
            if text:
                final_answer = text
    given = record.get("step_count")
    if given is not None and given != len(steps):
        warnings.append(FieldError("step_count", f"{given!r} given but {len(steps)} steps found; stored {len(steps)}"))
    try:
        row["steps"] = orjson.dumps(steps).decode()
    except orjson.JSONEncodeError as error:
        errors.append(FieldError("steps", f"cannot be stored as JSON: {error}"))
        return
    row["step_count"] = len(steps)
    row["tool_call_count"] = calls
    row["tools"] = list(tools)
    given_answer = record.get("final_answer")
    if type(given_answer) is str and given_answer:
        final_answer = given_answer  # an agent's explicit answer (a `Finish` call) beats its last words
    row["final_answer"] = final_answer[:FINAL_ANSWER_LENGTH] if final_answer else None
    row.update(derived_columns(steps, final_answer, row["tools"]))


def _tool_calls(raw_calls: Any, index: int, errors: list[FieldError]) -> list[dict] | None:
    """Canonical calls; `raw_calls` itself when every call is canonical already (the common case)."""
    if type(raw_calls) is not list:
        errors.append(FieldError(f"steps[{index}].tool_calls", "expected a list"))
        return None
    normalized = []
    changed = False
    for position, call in enumerate(raw_calls):
        if len(errors) >= MAX_FIELD_ERRORS:
            return None
        field = f"steps[{index}].tool_calls[{position}]"
        if type(call) is not dict:
            errors.append(FieldError(field, "expected an object"))
            continue
        if _is_canonical(call):
            normalized.append(call)
            continue
        function = call.get("function")
        source = function if type(function) is dict else call
        # Inspect AI names the function in `function` itself.
        name = function if type(function) is str and function else source.get("name")
        if type(name) is not str or not name:
            errors.append(FieldError(f"{field}.name", "missing or not a string"))
            continue
        normalized.append(_tool_call(call, source, name))
        changed = True
    return normalized if changed or len(normalized) != len(raw_calls) else raw_calls


def _is_canonical(call: dict) -> bool:
    name = call.get("name")
    return (
        type(name) is str
        and bool(name)
        and "function" not in call
        and "type" not in call
        and type(call.get("arguments")) is not str
    )


def _tool_call(call: dict, source: dict, name: str) -> dict:
    arguments = source.get("arguments")
    if type(arguments) is str:
        # OpenAI sends arguments as JSON text; keep them as an object when they parse as one.
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            parsed = None
        if type(parsed) is dict:
            arguments = parsed
    extra = {key: value for key, value in call.items() if key not in {"function", "name", "arguments", "id", "type"}}
    return {"id": call.get("id"), "name": name, "arguments": arguments, **extra}


def _content_text(content: Any) -> str | None:
    if type(content) is str:
        return content
    if type(content) is list:
        texts = [part["text"] for part in content if type(part) is dict and type(part.get("text")) is str]
        return "\n".join(texts) or None
    return None


def _annotation(record: dict, errors: list[FieldError]) -> AnnotationChange | None:
    """What the record says about its annotations, as a change: only the fields it gives are set,
    tags are added, so re-importing never clears what a user wrote (notes, their tags, a bookmark)."""
    analysis = record.get("analysis")
    bookmarked = record.get("is_bookmarked")
    tags = record.get("tags")
    if bookmarked is not None and type(bookmarked) is not bool:
        errors.append(FieldError("is_bookmarked", f"expected a boolean, got {type_name(bookmarked)}"))
    if tags is not None and (type(tags) is not list or any(type(tag) is not str for tag in tags)):
        errors.append(FieldError("tags", "expected a list of strings"))
    values: dict[str, Any] = {}
    if analysis is not None:
        if type(analysis) is not dict:
            errors.append(FieldError("analysis", f"expected an object, got {type_name(analysis)}"))
            return None
        success = analysis.get("is_success")
        if success is not None and type(success) is not bool:
            errors.append(FieldError("analysis.is_success", f"expected a boolean, got {type_name(success)}"))
        elif success is not None:
            values["is_success"] = success
        for name in ("category", "root_cause"):
            text = analysis.get(name)
            if text is not None and type(text) is not str:
                errors.append(FieldError(f"analysis.{name}", f"expected a string, got {type_name(text)}"))
            elif text:
                values[name] = text
    if bookmarked is True:
        values["is_bookmarked"] = True
    add_tags = tuple(dict.fromkeys(tags)) if type(tags) is list else ()
    if not values and not add_tags:
        return None
    return AnnotationChange(**values, add_tags=add_tags)


def _timestamp(record: dict, errors: list[FieldError]) -> int | None:
    value = record.get("created_at")
    if value is None:
        return None
    try:
        if type(value) is int or type(value) is float:
            if not math.isfinite(value):
                raise ValueError("not a finite number")
            moment = datetime.fromtimestamp(value, tz=UTC)
        elif type(value) is str:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        else:
            raise ValueError(f"expected unix seconds or an ISO-8601 string, got {type_name(value)}")
    except (ValueError, OverflowError, OSError) as error:
        errors.append(FieldError("created_at", str(error)))
        return None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _derived_id(record: dict, row: dict) -> str:
    """Stable across re-imports: from the training position when there is one, else the content."""
    if any(row[name] is not None for name in _POSITION_FIELDS):
        key = [
            row["training_id"],
            row["epoch_id"],
            row["iteration_id"],
            row["sample_id"],
            row["data_id"],
            row["agent_name"],
        ]
        material = orjson.dumps(key)
    else:
        material = orjson.dumps([row["training_id"], row["agent_name"], record], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(material, digest_size=16).hexdigest()


def _metadata(record: dict) -> str | None:
    extra = {key: value for key, value in record.items() if key not in KNOWN_FIELDS}
    analysis = record.get("analysis")
    if type(analysis) is dict:
        unknown = {key: value for key, value in analysis.items() if key not in _ANALYSIS_FIELDS}
        if unknown:
            extra["analysis"] = unknown
    return orjson.dumps(extra, option=orjson.OPT_NON_STR_KEYS).decode() if extra else None
