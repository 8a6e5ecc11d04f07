"""`--mapping FILE`: import any JSON shape without code.

A mapping file (YAML or JSON) names where each canonical field sits in the record:

    fields:
      data_id: question.id
      reward: scores.final
      steps: conversation.turns
      analysis.is_success: eval.passed
    step_fields:          # optional: key names inside each step
      role: speaker
      content: text
    records: results.runs # optional: where the records sit inside each document (else found)
    context:              # optional: defaults taken from the document around the records
      agent_name: info.agent.model

Paths are dotted keys with list indexes: `messages[-1].content`, `runs[0].reward`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .errors import Location, RecordError

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")
_MISSING = object()
# A mapping names a few dozen paths; anything near this size is not a mapping file.
MAX_MAPPING_BYTES = 1024 * 1024


class MappingFileError(ValueError):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few lines of aliases expand to gigabytes ("billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a mapping file", event.start_mark
            )
        return super().compose_node(parent, index)


class Mapping:
    def __init__(
        self,
        *,
        fields: dict[str, str],
        step_fields: dict[str, str] | None = None,
        records: str | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        _check_names("fields", fields)
        _check_names("step_fields", step_fields or {})
        _check_names("context", context or {})
        if "steps" not in fields or "data_id" not in fields:
            raise MappingFileError("mapping 'fields' must name at least 'steps' and 'data_id'")
        if records is not None:
            _parse_path(records)
        self.fields = {target: _parse_path(path) for target, path in fields.items()}
        self.step_fields = step_fields or {}
        self.records = records
        self.context = {target: _parse_path(path) for target, path in (context or {}).items()}
        # As given: recorded with the import job, so the job can be resumed with the same mapping.
        self.definition = {
            "fields": dict(fields),
            "step_fields": dict(self.step_fields),
            "records": records,
            "context": dict(context or {}),
        }

    def recognises(self, value: Any) -> bool:
        """Whether `value` is one record: its steps are where the mapping says."""
        return isinstance(value, dict) and isinstance(_resolve(value, self.fields["steps"]), list)

    def defaults(self, document: Any) -> dict[str, Any]:
        """The values the mapping's `context` paths name in the document around the records."""
        found = {target: _resolve(document, path) for target, path in self.context.items()}
        return {target: value for target, value in found.items() if value is not _MISSING and value is not None}

    @classmethod
    def load(cls, path: str) -> Mapping:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_MAPPING_BYTES + 1)
        if len(raw) > MAX_MAPPING_BYTES:
            raise MappingFileError(f"{path}: larger than {MAX_MAPPING_BYTES:,} bytes; not a mapping file")
        try:
            text = raw.decode("utf-8")
            data = json.loads(text) if path.endswith(".json") else yaml.load(text, Loader=_NoAliasLoader)
        except (ValueError, RecursionError, yaml.YAMLError) as error:
            raise MappingFileError(f"{path}: not valid YAML/JSON: {error}") from error
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
            raise MappingFileError(f"{path}: expected a 'fields' mapping of canonical field: path")
        try:
            return cls(
                fields=data["fields"],
                step_fields=data.get("step_fields"),
                records=data.get("records"),
                context=data.get("context"),
            )
        except MappingFileError as error:
            raise MappingFileError(f"{path}: {error}") from error

    def __call__(self, value: Any, location: Location) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise RecordError.single("record", "expected a JSON object")
        used = {path[0] for path in self.fields.values() if path and isinstance(path[0], str)}
        record: dict[str, Any] = {key: item for key, item in value.items() if key not in used}
        for target, path in self.fields.items():
            found = _resolve(value, path)
            if found is not _MISSING:
                _assign(record, target, found)
        if self.step_fields and isinstance(record.get("steps"), list):
            record["steps"] = [self._rename_step(step) for step in record["steps"]]
        return record

    def _rename_step(self, step: Any) -> Any:
        if not isinstance(step, dict):
            return step
        renamed = dict(step)
        for target, source in self.step_fields.items():
            if source in renamed:
                renamed[target] = renamed.pop(source)
        return renamed


def _check_names(section: str, names: Any) -> None:
    if not isinstance(names, dict):
        raise MappingFileError(f"'{section}' must be a mapping of name: path, got {type(names).__name__}")
    for target, source in names.items():
        if not isinstance(target, str) or not isinstance(source, str) or not source:
            raise MappingFileError(f"'{section}': {target!r}: {source!r} must be a name and a non-empty text path")


def _parse_path(path: str) -> list[str | int]:
    if not isinstance(path, str) or not path:
        raise MappingFileError(f"path must be a non-empty string, got {path!r}")
    segments: list[str | int] = []
    for key, index in _SEGMENT.findall(path):
        segments.append(int(index) if index else key)
    return segments


def resolve_path(value: Any, path: str) -> Any:
    """The value at a dotted path (`runs[0].reward`), or None when there is none."""
    found = _resolve(value, _parse_path(path))
    return None if found is _MISSING else found


def _resolve(value: Any, path: list[str | int]) -> Any:
    for segment in path:
        in_list = isinstance(segment, int) and isinstance(value, list) and -len(value) <= segment < len(value)
        in_object = isinstance(segment, str) and isinstance(value, dict) and segment in value
        if in_list or in_object:
            value = value[segment]
        else:
            return _MISSING
    return value


def _assign(record: dict, target: str, value: Any) -> None:
    head, _, tail = target.partition(".")
    if not tail:
        record[head] = value
        return
    nested = record.get(head)
    if not isinstance(nested, dict):
        nested = record[head] = {}
    nested[tail] = value
