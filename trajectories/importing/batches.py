"""Accumulating validated rows as Arrow tables (`BatchBuilder`, within a chunk) and chunks' tables into
one write (`PendingWrite`, in the importing process), with one duplicate rule for both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trajectories.store import TRAJECTORY_SCHEMA, AnnotationChange

from .errors import FieldError, Location
from .validation import Validated

_TRAJECTORY_NAMES = TRAJECTORY_SCHEMA.names
# A later record of an id this import already took, under on_duplicate="error" (else it is counted).
DUPLICATE_IN_IMPORT = FieldError("trajectory_id", "duplicate of an earlier record in this import")
# A batch also closes early past this many bytes of steps, so huge rollouts cannot pile up in memory.
MAX_BATCH_BYTES = 128 * 1024 * 1024


@dataclass(slots=True)
class Batch:
    """One write: trajectories, what the records say of their annotations, where each row came from."""

    trajectories: pa.Table
    annotations: dict[str, AnnotationChange]
    ids: list[str]
    locations: list[Location]

    def split(self, at: int) -> tuple[Batch, Batch | None]:
        """The first `at` rows, and the rest (None when there is none); tables share their memory."""
        if len(self.ids) <= at:
            return self, None
        return self._rows(0, at), self._rows(at, len(self.ids))

    def _rows(self, start: int, stop: int) -> Batch:
        ids = self.ids[start:stop]
        return Batch(
            trajectories=self.trajectories.slice(start, stop - start),
            annotations={key: self.annotations[key] for key in ids if key in self.annotations},
            ids=ids,
            locations=self.locations[start:stop],
        )


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


class PendingWrite:
    """Batches of several chunks gathered into one write, in arrival order. An id that comes again is
    the rule `on_duplicate` says: under "update" the later record replaces the earlier whole (its
    annotations too); otherwise the later one is not taken (`add` returns where it came from)."""

    def __init__(self, *, on_duplicate: str) -> None:
        self.on_duplicate = on_duplicate
        self._parts: list[Batch] = []
        self._dropped: list[set[int]] = []
        self._where: dict[str, tuple[int, int]] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._where)

    def add(self, batch: Batch) -> list[Location]:
        part = len(self._parts)
        dropped: set[int] = set()
        refused: list[Location] = []
        for row, trajectory_id in enumerate(batch.ids):
            earlier = self._where.get(trajectory_id)
            if earlier is None:
                self._where[trajectory_id] = (part, row)
            elif self.on_duplicate == "update":
                self._dropped[earlier[0]].add(earlier[1])
                self._where[trajectory_id] = (part, row)
            else:
                dropped.add(row)
                refused.append(batch.locations[row])
        self._parts.append(batch)
        self._dropped.append(dropped)
        self.nbytes += batch.trajectories.nbytes
        return refused

    def build(self) -> Batch:
        tables, annotations, ids, locations = [], {}, [], []
        for part, (batch, dropped) in enumerate(zip(self._parts, self._dropped, strict=True)):
            if dropped:
                kept = [row not in dropped for row in range(len(batch.ids))]
                tables.append(batch.trajectories.filter(pa.array(kept)))
                ids.extend(key for key, keep in zip(batch.ids, kept, strict=True) if keep)
                locations.extend(where for where, keep in zip(batch.locations, kept, strict=True) if keep)
            else:
                tables.append(batch.trajectories)
                ids.extend(batch.ids)
                locations.extend(batch.locations)
            # A record's annotations go with the row taken for its id.
            annotations.update(
                (key, change) for key, change in batch.annotations.items() if self._where[key][0] == part
            )
        trajectories = pa.concat_tables(tables) if tables else TRAJECTORY_SCHEMA.empty_table()
        return Batch(trajectories=trajectories, annotations=annotations, ids=ids, locations=locations)
