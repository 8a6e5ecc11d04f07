"""Documents too large to read whole, read as a stream: a 2 GB `.json` array or results file imports in
the memory of one record at a time.

Two passes over the file with ijson (C backend). The first builds nothing: it notes every list in the
document (by its ijson prefix, `simulations.item`), how many elements it has and which keys its first
elements carry, and the scalar fields outside the lists (the context). The lists whose elements look like
records are chosen, the shallowest first (a record's own message list is not another collection). The
second pass builds the chosen lists' elements one at a time, each bounded by the JSON-value limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import ijson
from ijson.common import ObjectBuilder

from .discovery import _NESTED_UNDER, MAX_CONTEXT_TEXT, MAX_CONTEXT_VALUES, WRAPPER_NAMES
from .errors import FieldError, Location

# Keys that make an object a record in one format or another (see adapters.recognise).
RECORD_KEYS = frozenset(
    {"steps", "messages", "traj", "trajectory", "history", "response", "responses_create_params",
     "answer_generation", "messages_display"}
)  # fmt: skip
_RESPONSE_KEYS = frozenset({"response", "output", "completion", "generation", "responses"})
_REWARD_KEYS = frozenset({"reward", "score", "rewards", "total_reward"})
_SAMPLED_ITEMS = 20
# Bounds of the first pass: keys noted per list, lists tracked, and the depth (ijson's prefix text
# grows with it, so very deep nesting costs quadratic time).
_MAX_KEYS = 1000
_MAX_LISTS = 10_000
_MAX_PREFIX = 2000
# Long strings are read in 1 MiB pieces (ijson's 64 KiB default makes them quadratic).
_BUFFER = 1 << 20
_CONTAINERS = ("start_map", "start_array")


@dataclass
class _List:
    elements: int = 0
    keys: set[str] = field(default_factory=set)
    nested: set[tuple[str, str]] = field(default_factory=set)

    def looks_like_records(self) -> bool:
        if self.keys & RECORD_KEYS:
            return True
        if any(outer in _NESTED_UNDER and inner in RECORD_KEYS for outer, inner in self.nested):
            return True
        return bool(self.keys & _RESPONSE_KEYS) and bool(self.keys & _REWARD_KEYS)


@dataclass
class Plan:
    """What the first pass found: the record lists to read, the context, and a report line each."""

    lists: list[str]
    context: dict[str, Any]
    report: list[str]
    # The document is itself one record (a `.traj` file, a message list): streaming cannot split it.
    one_record: bool = False


def plan(stream: BinaryIO) -> Plan:
    """The first pass: which lists hold records (ijson prefixes of their elements), and the context."""
    lists: dict[str, _List] = {}
    context: dict[str, Any] = {}
    root_keys: set[str] = set()
    for prefix, event, value in _until_broken(ijson.parse(stream, use_float=True, buf_size=_BUFFER)):
        if len(prefix) > _MAX_PREFIX:
            break  # nested past any record's shape: what was seen so far decides
        if event == "map_key" and prefix == "" and len(root_keys) < _MAX_KEYS:
            root_keys.add(value)
        if event in _CONTAINERS and (prefix == "item" or prefix.endswith(".item")):
            found = lists.get(prefix)
            if found is None:
                if len(lists) >= _MAX_LISTS:
                    continue
                found = lists[prefix] = _List()
            found.elements += 1
        elif event == "map_key":
            owner = _owner(prefix, lists)
            if owner is not None:
                found, rest = owner
                if found.elements <= _SAMPLED_ITEMS and len(found.keys) + len(found.nested) < _MAX_KEYS:
                    if not rest:
                        found.keys.add(value)
                    elif "." not in rest:
                        found.nested.add((rest, value))
        elif _is_context(event, prefix) and len(context) < MAX_CONTEXT_VALUES:
            context[prefix] = value[:MAX_CONTEXT_TEXT] if isinstance(value, str) else value
    top = lists.get("item")
    if root_keys & RECORD_KEYS or (top is not None and "role" in top.keys):
        return Plan(lists=[], context={}, report=[], one_record=True)
    chosen: list[str] = []
    for prefix in sorted(lists, key=lambda name: name.count(".")):
        if any(prefix.startswith(outer + ".") for outer in chosen):
            continue
        if lists[prefix].looks_like_records():
            chosen.append(prefix)
    if not chosen:
        chosen = [prefix for prefix in lists if prefix in ("item", *(f"{name}.item" for name in WRAPPER_NAMES))][:1]
    report = [f"{shown(prefix)}: {lists[prefix].elements:,} records" for prefix in chosen]
    return Plan(lists=chosen, context={key: _number(item) for key, item in context.items()}, report=report)


def _until_broken(events):
    """The events up to a parse error: the second pass reports it, after the records before it."""
    try:
        yield from events
    except ijson.JSONError:
        return


def _is_context(event: str, prefix: str) -> bool:
    """A scalar outside every list, not too deep: part of the document around the records."""
    scalar = event not in ("end_map", "end_array", "start_map", "start_array")
    return scalar and ".item" not in f".{prefix}" and prefix.count(".") < 3


def _owner(prefix: str, lists: dict[str, _List]) -> tuple[_List, str] | None:
    """The list whose element `prefix` is inside, and the path within that element ("" = its top)."""
    head, separator, rest = prefix.rpartition(".item.")
    if prefix in lists:
        return lists[prefix], ""
    if separator and (head + ".item") in lists:
        return lists[head + ".item"], rest
    if prefix.startswith("item.") and "item" in lists:
        return lists["item"], prefix[len("item.") :]
    return None


def shown(prefix: str) -> str:
    """`results.item` as a user reads it: `results` (the top-level array: `(document)`)."""
    name = prefix[: -len(".item")] if prefix.endswith(".item") else ("" if prefix == "item" else prefix)
    return name.replace(".item.", "[].") or "(document)"


def elements(
    stream: BinaryIO, prefix: str, *, name: str, max_values: int
) -> Iterator[tuple[Location, Any] | tuple[Location, FieldError]]:
    """The second pass over one list: each element built alone, refused past `max_values` values."""
    path = shown(prefix)
    path = None if path == "(document)" else path
    builder: ObjectBuilder | None = None
    depth = values = index = 0
    for current, event, value in ijson.parse(stream, use_float=True, buf_size=_BUFFER):
        if len(current) > _MAX_PREFIX:
            raise ValueError(f"nested deeper than a record can be, at {current[:80]}…")
        if builder is None and depth == 0:
            if current != prefix:
                continue
            if event not in _CONTAINERS:
                yield Location(name, 1, index, path), value
                index += 1
                continue
            builder, depth, values = ObjectBuilder(), 0, 0
        if event in _CONTAINERS:
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        values += 1
        if builder is not None:
            builder.event(event, value)
            if values > max_values:
                builder = None  # drop what was built; keep counting to the element's end
        if depth == 0:
            location = Location(name, 1, index, path)
            if builder is None:
                reason = (
                    f"more than the {max_values:,}-value limit; not built (if it is a real record, raise the "
                    "limit: TRAJSITE_IMPORT_MAX_JSON_VALUES, --max-json-values on the command line)"
                )
                yield location, FieldError("record", reason)
            else:
                yield location, builder.value
            builder, index = None, index + 1


def _number(value: Any) -> Any:
    return float(value) if type(value).__name__ == "Decimal" else value


def stream_records(opener: Callable[[], BinaryIO], *, name: str, max_values: int):
    """The plan and then every record of every chosen list; `opener` opens the document afresh."""
    with opener() as stream:
        found = plan(stream)
    yield found
    for prefix in found.lists:
        with opener() as stream:
            yield from elements(stream, prefix, name=name, max_values=max_values)
