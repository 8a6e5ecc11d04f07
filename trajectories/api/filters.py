"""The query-string parser as a DRF filter backend, so the OpenAPI schema lists every filter."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend

from trajectories import fields
from trajectories import query as q
from trajectories.fields import Filter, Kind


class TrajectoryQueryFilter(BaseFilterBackend):
    """Parses the request's parameters once; the paginator and actions read `view.trajectory_query`."""

    def filter_queryset(self, request, queryset, view):
        view.trajectory_query = parse_request(request)
        return queryset

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [_parameter(name, schema, description) for name, schema, description in _FILTER_PARAMETERS]


def parse_request(request) -> q.TrajectoryQuery:
    return parse_request_params(request.query_params)


def parse_request_params(params) -> q.TrajectoryQuery:
    try:
        return q.parse_query(params)
    except q.QueryError as error:
        raise ValidationError({error.parameter: [error.message]}) from error


def _parameter(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}


_TEXT = {"type": "string", "maxLength": q.MAX_VALUE_LENGTH}
_TEXT_LIST = {"type": "array", "items": _TEXT}
_NUMBER = {Kind.INT: {"type": "integer"}, Kind.FLOAT: {"type": "number"}, Kind.TIME: {"type": "string"}}
_TIME_NOTE = " (unix seconds or ISO-8601)"


def _field_parameters(field: fields.Field) -> list[tuple[str, dict, str]]:
    name, label = field.param, field.label
    found: list[tuple[str, dict, str]] = []
    if field.filter is Filter.EXACT:
        found.append((name, _TEXT_LIST, f"{label}: exact; '*' is a wildcard; repeat for any of several."))
    elif field.filter is Filter.ANY_OF:
        has = "Has any of these" if field.kind is Kind.LIST else "Any of these"
        found.append((name, _TEXT_LIST, f"{label}: {has.lower()} values; repeat for several."))
    elif field.filter is Filter.CONTAINS:
        found.append((name, _TEXT, f"{label} contains this text (case-insensitive)."))
    elif field.filter is Filter.BOOLEAN:
        schema = (
            {"type": "string", "enum": ["true", "false", "null"]}
            if field.kind is Kind.TRISTATE
            else {"type": "boolean"}
        )
        found.append((name, schema, field.help))
    elif field.filter is Filter.RANGE:
        note = _TIME_NOTE if field.kind is Kind.TIME else ""
        schema = _NUMBER[field.kind]
        found += [
            (name, {"type": "array", "items": schema}, f"{label}: exact value{note}; repeat for any of several."),
            (name + q.MIN_SUFFIX, schema, f"{label}: at least{note}."),
            (name + q.MAX_SUFFIX, schema, f"{label}: at most{note}."),
        ]
    if field.empty_param:
        found.append(
            (field.empty_param, {"type": "boolean"}, f"true: {label.lower()} has no value; false: it has one.")
        )
    return found


_FILTER_PARAMETERS: list[tuple[str, dict, str]] = [
    (q.SEARCH_VAR, _TEXT, f"Case-insensitive substring of {', '.join(fields.SEARCHED)}."),
    (
        q.TEXT_VAR,
        _TEXT,
        'Words inside the steps (messages, tool calls and results, final answer): all must occur; "a phrase"; '
        "-word excludes; word* is a prefix; Chinese/Japanese/Korean words match inside any text. Rows then carry "
        "`snippet` and `score`, and the default order is relevance.",
    ),
    (q.REGEX_VAR, _TEXT, "An RE2 pattern over the steps' text, read for the rows the other conditions leave."),
    *[parameter for field in fields.FILTERED for parameter in _field_parameters(field)],
    (
        q.ORDERING_VAR,
        {"type": "string"},
        f"Comma-separated fields, '-' for descending: {', '.join(q.SORT_FIELDS)}; or relevance (with q).",
    ),
]
