"""Trajectories back into the canonical import format (FORMAT.md), so an export re-imports as it was."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson

from trajectories import fields


def to_canonical(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record (with steps and annotations) as one canonical trajectory object."""
    metadata = orjson.loads(record["metadata"]) if record.get("metadata") else {}
    steps = record["steps"]
    canonical: dict[str, Any] = {name: record.get(name) for name in fields.EXPORTED}
    canonical["steps"] = orjson.loads(steps) if isinstance(steps, str) else steps
    analysis = {name: record.get(name) for name in ("is_success", "category", "root_cause")}
    extra_analysis = metadata.pop("analysis", None)
    if isinstance(extra_analysis, dict):
        analysis.update(extra_analysis)
    canonical["analysis"] = analysis
    canonical["is_bookmarked"] = bool(record.get("is_bookmarked"))
    canonical["tags"] = list(record.get("tags") or [])
    if record.get("notes"):
        canonical["notes"] = record["notes"]
    created = record.get("created_at")
    canonical["created_at"] = created.isoformat() if isinstance(created, datetime) else created
    for key, value in metadata.items():
        canonical.setdefault(key, value)
    return canonical


def jsonl_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield orjson.dumps(to_canonical(record)) + b"\n"
