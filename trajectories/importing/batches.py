"""Accumulating validated rows column by column and handing them over as Arrow tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trajectories.store import ANNOTATION_SCHEMA, TRAJECTORY_SCHEMA

from .validation import Validated

_TRAJECTORY_NAMES = TRAJECTORY_SCHEMA.names
_ANNOTATION_NAMES = [name for name in ANNOTATION_SCHEMA.names if name != "updated_at"]


@dataclass(slots=True)
class Batch:
    """One write: trajectories, their annotations, and where each row came from."""

    trajectories: pa.Table
    annotations: pa.Table | None
    ids: list[str]
    sources: list[str]


@dataclass
class BatchBuilder:
    """Rows in arrival order; a later record with an id already in the batch replaces or is dropped."""

    on_duplicate: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)
    nbytes: int = 0

    def add(self, validated: Validated) -> bool:
        """False when the id is already in this batch and the new record is not taken."""
        trajectory_id = validated.row["trajectory_id"]
        if trajectory_id in self.rows and self.on_duplicate != "update":
            return False
        self.rows[trajectory_id] = validated.row
        self.nbytes += len(validated.row["steps"])
        if validated.annotation is not None:
            self.annotations[trajectory_id] = validated.annotation
        return True

    def __len__(self) -> int:
        return len(self.rows)

    def build(self, *, now_us: int) -> Batch:
        rows = list(self.rows.values())
        columns = {name: [row[name] for row in rows] for name in _TRAJECTORY_NAMES}
        trajectories = pa.Table.from_pydict(columns, schema=TRAJECTORY_SCHEMA)
        annotations = None
        if self.annotations:
            notes = list(self.annotations.values())
            note_columns: dict[str, list] = {name: [n[name] for n in notes] for name in _ANNOTATION_NAMES}
            note_columns["updated_at"] = [now_us] * len(notes)
            annotations = pa.Table.from_pydict(note_columns, schema=ANNOTATION_SCHEMA)
        return Batch(
            trajectories=trajectories,
            annotations=annotations,
            ids=columns["trajectory_id"],
            sources=columns["source"],
        )
