"""Accumulating validated rows column by column and handing them over as Arrow tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trajectories.store import TRAJECTORY_SCHEMA, AnnotationChange

from .errors import Location
from .validation import Validated

_TRAJECTORY_NAMES = TRAJECTORY_SCHEMA.names


@dataclass(slots=True)
class Batch:
    """One write: trajectories, what the records say of their annotations, where each row came from."""

    trajectories: pa.Table
    annotations: dict[str, AnnotationChange]
    ids: list[str]
    locations: list[Location]


@dataclass
class BatchBuilder:
    """Rows in arrival order; a later record with an id already in the batch replaces or is dropped."""

    on_duplicate: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: dict[str, AnnotationChange] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    nbytes: int = 0

    def add(self, validated: Validated, *, location: Location) -> bool:
        """False when the id is already in this batch and the new record is not taken."""
        trajectory_id = validated.row["trajectory_id"]
        if trajectory_id in self.rows and self.on_duplicate != "update":
            return False
        self.rows[trajectory_id] = validated.row
        self.locations[trajectory_id] = location
        self.nbytes += len(validated.row["steps"])
        # A later record of the same id replaces the earlier one whole, annotations included.
        self.annotations.pop(trajectory_id, None)
        if validated.annotation is not None:
            self.annotations[trajectory_id] = validated.annotation
        return True

    def remove(self, trajectory_id: str) -> None:
        self.rows.pop(trajectory_id)
        self.annotations.pop(trajectory_id, None)
        self.locations.pop(trajectory_id)

    def __len__(self) -> int:
        return len(self.rows)

    def build(self) -> Batch:
        rows = list(self.rows.values())
        columns = {name: [row[name] for row in rows] for name in _TRAJECTORY_NAMES}
        trajectories = pa.Table.from_pydict(columns, schema=TRAJECTORY_SCHEMA)
        return Batch(
            trajectories=trajectories,
            annotations=dict(self.annotations),
            ids=columns["trajectory_id"],
            locations=[self.locations[key] for key in columns["trajectory_id"]],
        )
