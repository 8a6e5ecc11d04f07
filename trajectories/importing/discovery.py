"""Finding the records inside a document, at any depth, with the rest of the document as context.

A results file is rarely one trajectory per line: tau2-bench writes `{"info": …, "tasks": […],
"simulations": […]}`, eval logs keep `samples` under the run, some tools key records by id. A parsed
document (a `.json` file, a JSONL line) is searched for record-like objects: the document itself, the
elements of its lists and the values of objects keyed by id, at any depth, and a record whose steps sit
one level down (under `state`, `output`, …) is lifted into shape. What is not a record is context:
its scalar fields are given to every record found (recognised names fill the agent, run and time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Location
from .readers import RawRecord, repairs_within

# How deep a document is searched, and how much of its scalar context is kept.
MAX_DEPTH = 6
MAX_CONTEXT_VALUES = 64
MAX_CONTEXT_TEXT = 500
# A list of objects by one of these names, holding nothing recognisable, is still taken as the records
# (each is then rejected on its own, naming what it lacks) rather than the whole document.
WRAPPER_NAMES = ("trajectories", "records", "rollouts", "samples", "results", "data", "items")
# Objects a record's steps may sit under.
_NESTED_UNDER = ("state", "output", "result", "results", "trajectory_data", "data", "sample", "run")
# Context names that fill a record's empty fields, most specific first: (field, last key names).
CONTEXT_DEFAULTS = (
    ("agent_name", ("agent_name", "model_name", "llm", "model", "policy")),
    ("training_id", ("training_id", "run_name", "experiment_name", "experiment", "run_id")),
    ("created_at", ("created_at", "timestamp", "started_at", "start_time", "created", "date")),
)


@dataclass(slots=True)
class Found:
    """One record: where it sat (`path` of its collection, its `index` or id `key` there)."""

    value: Any
    path: str = ""
    index: int | None = None
    key: str | None = None
    # The format `recognise` named, when it named one: the adapter need not ask again.
    kind: str | None = None


@dataclass
class Discovery:
    records: list[Found]
    context: dict[str, Any] = field(default_factory=dict)
    # Where records were found and what was passed over: "simulations: 50 records", "tasks: skipped, …".
    report: list[str] = field(default_factory=list)
    # Set when nothing was recognised: what the document held, for the rejection that follows.
    description: str | None = None


def discover(document: Any, *, recognise: Callable[[Any], bool], records_path: str | None = None) -> Discovery:
    """The records in `document`. `recognise(value)` says whether a value is one record as it is
    (a format's name, or any true value)."""
    kind = recognise(document)
    if kind:
        return Discovery(records=[Found(document, kind=kind if isinstance(kind, str) else None)])
    walker = _Walker(recognise)
    if records_path is not None:
        return walker.at_path(document, records_path)
    lifted = _lifted(document, recognise)
    if lifted is not None:
        return Discovery(records=[Found(lifted)])
    walker.walk(document, "", 0)
    if walker.records:
        return Discovery(records=walker.records, context=walker.context, report=walker.report())
    wrapped = _wrapper_elements(document)
    if wrapped is not None:
        return Discovery(records=wrapped, context=walker.context)
    return Discovery(records=[Found(document)], description=describe(document))


class _Walker:
    def __init__(self, recognise: Callable[[Any], bool]) -> None:
        self.recognise = recognise
        self.records: list[Found] = []
        self.context: dict[str, Any] = {}
        self.found: dict[str, int] = {}
        self.skipped: dict[str, str] = {}

    def walk(self, value: Any, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, list):
            self._walk_list(value, path, depth)
        elif isinstance(value, dict) and not self._keyed_records(value, path):
            for key, item in value.items():
                self._walk_item(item, _join(path, str(key)), depth)

    def _walk_list(self, items: list, path: str, depth: int) -> None:
        before = len(self.records)
        objects = 0
        others: list[tuple[int, Any]] = []
        for index, item in enumerate(items):
            record = item if self.recognise(item) else _lifted(item, self.recognise)
            if record is not None:
                self.records.append(Found(record, path=path, index=index))
                continue
            if isinstance(item, dict | list):
                objects += 1
                inside = len(self.records)
                self.walk(item, f"{path}[{index}]", depth + 1)
                if len(self.records) > inside:
                    continue
            others.append((index, item))
        direct = sum(1 for found in self.records[before:] if found.path == path)
        if direct:
            self.found[path or "(document)"] = direct
            # Beside records, an element that is not one is rejected on its own (saying what it
            # lacks), never passed over in silence.
            self.records.extend(Found(item, path=path, index=index) for index, item in others)
        elif objects and len(self.records) == before and "[" not in path and "." not in path:
            # Named at the top of the document only: deeper lists (a task's criteria) are detail.
            self.skipped[path or "(document)"] = f"skipped, {objects:,} object{'s' * (objects != 1)} without steps"

    def _keyed_records(self, value: dict, path: str) -> bool:
        """An object whose values are records keyed by their id: True when it was one (and taken)."""
        objects = [(key, item) for key, item in value.items() if isinstance(item, dict)]
        if len(objects) < 2 or len(objects) < len(value) * 0.9:
            return False
        records = [(key, item if self.recognise(item) else _lifted(item, self.recognise)) for key, item in objects]
        if sum(record is not None for _, record in records) < len(objects) * 0.9:
            return False
        for key, record in records:
            # A value that is not a record is rejected on its own, not passed over.
            self.records.append(Found(record if record is not None else value[key], path=path, key=str(key)))
        self.found[path or "(document)"] = sum(record is not None for _, record in records)
        return True

    def _walk_item(self, item: Any, path: str, depth: int) -> None:
        if isinstance(item, dict | list):
            record = item if isinstance(item, dict) and self.recognise(item) else None
            if record is not None:
                self.records.append(Found(record, path=path))
                self.found[path] = 1
            else:
                self.walk(item, path, depth + 1)
        elif len(self.context) < MAX_CONTEXT_VALUES and "[" not in path:
            self.context[path] = item[:MAX_CONTEXT_TEXT] if isinstance(item, str) else item

    def report(self) -> list[str]:
        lines = [f"{path}: {count:,} record{'s' * (count != 1)}" for path, count in self.found.items()]
        return lines + [f"{path}: {reason}" for path, reason in self.skipped.items()]

    def at_path(self, document: Any, path: str) -> Discovery:
        """The records a mapping's `records:` path names (a list, or an object keyed by id)."""
        from .mapping import resolve_path

        found = resolve_path(document, path)
        if isinstance(found, list):
            records = [Found(item, path=path, index=index) for index, item in enumerate(found)]
        elif isinstance(found, dict):
            records = [Found(item, path=path, key=str(key)) for key, item in found.items()]
        else:
            return Discovery(records=[Found(document)], description=f"no list at {path!r}: {describe(document)}")
        if isinstance(document, dict):
            head = path.split(".")[0].split("[")[0]
            self.walk({key: value for key, value in document.items() if key != head}, "", 0)
        return Discovery(records=records, context=self.context, report=[f"{path}: {len(records):,} records"])


def _lifted(value: Any, recognise: Callable[[Any], bool]) -> dict | None:
    """`value` with the steps that sit one level down (under `state`, `output`, …) brought up."""
    if not isinstance(value, dict):
        return None
    for key in _NESTED_UNDER:
        inner = value.get(key)
        if isinstance(inner, dict) and recognise(inner):
            return {**inner, **{name: item for name, item in value.items() if name != key}}
    return None


def _wrapper_elements(document: Any) -> list[Found] | None:
    if isinstance(document, list) and all(isinstance(item, dict | list) for item in document[:3]):
        return [Found(item, index=index) for index, item in enumerate(document)]
    if isinstance(document, dict):
        for name in WRAPPER_NAMES:
            items = document.get(name)
            if isinstance(items, list) and items and all(isinstance(item, dict) for item in items[:3]):
                return [Found(item, path=name, index=index) for index, item in enumerate(items)]
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(value: Any) -> str:
    """What a value holds, in a line: "an object with keys info, tasks (a list of 3 objects)"."""
    if isinstance(value, list):
        kinds = {type(item).__name__ for item in value[:20]}
        return f"a list of {len(value):,} {'/'.join(sorted(_KIND.get(kind, kind) for kind in kinds)) or 'items'}"
    if isinstance(value, dict):
        parts = []
        for key, item in list(value.items())[:12]:
            if isinstance(item, list):
                parts.append(f"{key} ({describe(item)})")
            elif isinstance(item, dict):
                parts.append(f"{key} (an object)")
            else:
                parts.append(str(key))
        more = f" and {len(value) - 12} more" if len(value) > 12 else ""
        return f"an object with keys {', '.join(parts)}{more}"
    return f"a {_KIND.get(type(value).__name__, type(value).__name__)}"


_KIND = {"dict": "objects", "list": "lists", "str": "strings", "int": "numbers", "float": "numbers", "bool": "booleans"}


def apply_context(record: dict, context: dict[str, Any], *, defaults: dict[str, Any] | None = None) -> None:
    """The document's context on a record: `defaults` (a mapping's context paths) and then recognised
    names fill empty fields; the scalars are kept in the record's metadata as `document`."""
    for target, value in (defaults or {}).items():
        if record.get(target) is None and (usable := _usable(target, value)) is not None:
            record[target] = usable
    if not context:
        return
    for target, names in CONTEXT_DEFAULTS:
        if record.get(target) is None:
            value = _usable(target, _pick(context, names))
            if value is not None:
                record[target] = value
    record.setdefault("document", context)


def _pick(context: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The first context value whose last key is one of `names`, preferring paths that name the agent."""
    candidates = [
        ("agent" not in path, "user" in path, names.index(path.rsplit(".", 1)[-1]), path.count("."), value)
        for path, value in context.items()
        if path.rsplit(".", 1)[-1] in names and isinstance(value, str | int | float) and not isinstance(value, bool)
    ]
    candidates = [item for item in candidates if not isinstance(item[-1], str) or item[-1]]
    return min(candidates, key=lambda item: item[:4])[-1] if candidates else None


def records_of(
    document: RawRecord, *, recognise: Callable[[Any], bool], records_path: str | None = None
) -> tuple[Discovery, list[RawRecord]]:
    """The discovery in a read document, and each record found as a RawRecord: located in its file
    (`file:line:path[index]`) and carrying the repairs made inside it, named relative to it."""
    found = discover(document.value, recognise=recognise, records_path=records_path)
    if document.context:
        found.context = {**document.context, **found.context}
    if document.report:
        found.report = [*document.report, *found.report]
    where = document.location
    records = []
    for record in found.records:
        head = _join(record.path, record.key) if record.key is not None else record.path
        inner = head + (f"[{record.index}]" if record.index is not None else "")
        if where.path is not None or where.index is not None:  # streamed out of a document: its place first
            location = where if not head else Location(where.file, where.line, where.index, f"{where.path}.{head}")
        else:
            location = Location(where.file, where.line, record.index, head or None)
        repairs = tuple((error.field, error) for error in repairs_within(document.repairs, inner))
        records.append(RawRecord(location, record.value, repairs))
    return found, records


def _usable(target: str, value: Any) -> Any:
    """A context value as the field it fills takes it (text for names, a parseable time), or None."""
    if value is None or isinstance(value, bool):
        return None
    if target == "created_at":
        from .outcomes import usable_time

        return usable_time(value)
    if isinstance(value, int | float | str):
        return str(value) if str(value) else None
    return None
