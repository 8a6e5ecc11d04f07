"""The query-string parser as a DRF filter backend, so the OpenAPI schema lists every filter."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend

from trajectories import query as q


class TrajectoryQueryFilter(BaseFilterBackend):
    """Parses the request's parameters once; the paginator and actions read `view.trajectory_query`."""

    def filter_queryset(self, request, queryset, view):
        view.trajectory_query = parse_request(request)
        return queryset

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [_parameter(name, schema, description) for name, schema, description in _FILTER_PARAMETERS]


def parse_request(request) -> q.TrajectoryQuery:
    try:
        return q.parse_query(request.query_params)
    except q.QueryError as error:
        raise ValidationError({error.parameter: [error.message]}) from error


def _parameter(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}


_TEXT = {"type": "string", "maxLength": q.MAX_VALUE_LENGTH}
_TEXT_LIST = {"type": "array", "items": _TEXT}
_FILTER_PARAMETERS: list[tuple[str, dict, str]] = [
    (q.SEARCH_VAR, _TEXT, "Case-insensitive substring of trajectory_id, data_id, agent_name or training_id."),
    *[(name, _TEXT_LIST, f"Exact {name}; '*' is a wildcard; repeat for any of several.") for name in q.TEXT_FIELDS],
    *[
        (name + suffix, {"type": "number" if name in q.FLOAT_FIELDS else "integer"}, f"{label} {name}.")
        for name in q.FLOAT_FIELDS + q.INT_FIELDS
        for suffix, label in (("", "Exact"), (q.MIN_SUFFIX, "Smallest"), (q.MAX_SUFFIX, "Largest"))
    ],
    *[
        ("created_at" + suffix, {"type": "string"}, f"{label} created_at: unix seconds or ISO-8601.")
        for suffix, label in (("", "Exact"), (q.MIN_SUFFIX, "Earliest"), (q.MAX_SUFFIX, "Latest"))
    ],
    ("is_bookmarked", {"type": "boolean"}, "Bookmarked or not."),
    ("is_success", {"type": "string", "enum": ["true", "false", "null"]}, "Judged successful, failed, or not judged."),
    (q.CATEGORY_VAR, _TEXT_LIST, "Analysis category; repeat for any of several."),
    (q.ROOT_CAUSE_VAR, _TEXT, "Root cause contains this text (case-insensitive)."),
    (q.TAG_VAR, _TEXT_LIST, "Has any of these tags."),
    (q.TOOL_VAR, _TEXT_LIST, "Used any of these tools."),
    (q.ORDERING_VAR, {"type": "string"}, f"Comma-separated fields, '-' for descending: {', '.join(q.SORT_FIELDS)}."),
]
