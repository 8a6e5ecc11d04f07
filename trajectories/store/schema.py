"""Arrow schemas of the two LanceDB tables, from the field catalogue.

`trajectories` is wide and written once per import: one row per rollout, steps as JSON text.
`annotations` is narrow and mutable (bookmarks, analysis, tags, notes): updating a ~9 KB trajectory
row rewrites all of it, while an annotation row is a few hundred bytes.
"""

from __future__ import annotations

import pyarrow as pa

from trajectories import fields
from trajectories.fields import KEY

from .commits import PRIMARY_KEY_METADATA

TRAJECTORIES_TABLE = fields.TRAJECTORIES
ANNOTATIONS_TABLE = fields.ANNOTATIONS

__all__ = ["ANNOTATIONS_TABLE", "ANNOTATION_SCHEMA", "KEY", "TRAJECTORIES_TABLE", "TRAJECTORY_SCHEMA"]


def _schema(table: str) -> pa.Schema:
    columns = []
    for field in fields.of_table(table):
        column = field.arrow_field()
        if field.name == KEY:
            # Declared to LanceDB, so merge-inserts on it conflict instead of storing an id twice.
            column = column.with_metadata(PRIMARY_KEY_METADATA)
        columns.append(column)
    return pa.schema(columns)


TRAJECTORY_SCHEMA = _schema(TRAJECTORIES_TABLE)
ANNOTATION_SCHEMA = _schema(ANNOTATIONS_TABLE)
ANNOTATION_COLUMNS = tuple(ANNOTATION_SCHEMA.names)
