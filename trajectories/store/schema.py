"""Arrow schemas of the two LanceDB tables.

`trajectories` is wide and written once per import: one row per rollout, steps as JSON text.
`annotations` is narrow and mutable (bookmarks, analysis, tags, notes): updating a ~9 KB trajectory
row rewrites all of it, while an annotation row is a few hundred bytes.
"""

from __future__ import annotations

import pyarrow as pa

from .commits import PRIMARY_KEY_METADATA

TRAJECTORIES_TABLE = "trajectories"
ANNOTATIONS_TABLE = "annotations"

_TIMESTAMP = pa.timestamp("us", tz="UTC")

KEY = "trajectory_id"
_KEY_FIELD = pa.field(KEY, pa.string(), nullable=False, metadata=PRIMARY_KEY_METADATA)

TRAJECTORY_SCHEMA = pa.schema(
    [
        _KEY_FIELD,
        pa.field("data_id", pa.string(), nullable=False),
        pa.field("training_id", pa.string()),
        pa.field("agent_name", pa.string()),
        pa.field("epoch_id", pa.int64()),
        pa.field("iteration_id", pa.int64()),
        pa.field("sample_id", pa.int64()),
        pa.field("reward", pa.float64()),
        pa.field("toolcall_reward", pa.float64()),
        pa.field("res_reward", pa.float64()),
        pa.field("exec_time", pa.float64()),
        pa.field("step_count", pa.int32(), nullable=False),
        pa.field("tool_call_count", pa.int32(), nullable=False),
        # Distinct tool names in order of first use: "used tool X" filters and facets.
        pa.field("tools", pa.list_(pa.string())),
        # The last assistant text: what the agent answered, shown in lists and searched later.
        pa.field("final_answer", pa.string()),
        # Large types: one long agent run can carry megabytes of observations.
        pa.field("steps", pa.large_string(), nullable=False),
        pa.field("metadata", pa.large_string()),
        pa.field("source_format", pa.string()),
        pa.field("source", pa.string()),
        pa.field("import_id", pa.string()),
        pa.field("created_at", _TIMESTAMP, nullable=False),
        pa.field("imported_at", _TIMESTAMP, nullable=False),
    ]
)

ANNOTATION_SCHEMA = pa.schema(
    [
        _KEY_FIELD,
        pa.field("is_bookmarked", pa.bool_(), nullable=False),
        pa.field("is_success", pa.bool_()),
        pa.field("category", pa.string()),
        pa.field("root_cause", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("notes", pa.string()),
        pa.field("updated_at", _TIMESTAMP, nullable=False),
        pa.field("updated_by", pa.string()),
    ]
)

TRAJECTORY_COLUMNS = tuple(TRAJECTORY_SCHEMA.names)
ANNOTATION_COLUMNS = tuple(ANNOTATION_SCHEMA.names)
