"""Serializers: trajectory rows out, annotation changes in."""

from __future__ import annotations

import orjson
from django.http import QueryDict
from django.urls import reverse
from rest_framework import serializers

from trajectories import query as q
from trajectories.links import id_path
from trajectories.store import UNSET, AnnotationChange

MAX_TAG_LENGTH = 100
MAX_TEXT_LENGTH = 10_000
MAX_BULK_IDS = 100_000


class TrajectorySummarySerializer(serializers.Serializer):
    """A list row. `questionId`, `isSuccess`, `rootCause` keep the seed API's shape available."""

    trajectory_id = serializers.CharField()
    url = serializers.SerializerMethodField()
    data_id = serializers.CharField()
    training_id = serializers.CharField(allow_null=True)
    agent_name = serializers.CharField(allow_null=True)
    epoch_id = serializers.IntegerField(allow_null=True)
    iteration_id = serializers.IntegerField(allow_null=True)
    sample_id = serializers.IntegerField(allow_null=True)
    reward = serializers.FloatField(allow_null=True)
    toolcall_reward = serializers.FloatField(allow_null=True)
    res_reward = serializers.FloatField(allow_null=True)
    exec_time = serializers.FloatField(allow_null=True)
    step_count = serializers.IntegerField()
    tool_call_count = serializers.IntegerField()
    tools = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    is_bookmarked = serializers.BooleanField()
    is_success = serializers.BooleanField(allow_null=True)
    category = serializers.CharField(allow_null=True)
    root_cause = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    questionId = serializers.CharField(source="data_id")
    isSuccess = serializers.BooleanField(source="is_success", allow_null=True)
    rootCause = serializers.CharField(source="root_cause", allow_null=True)

    def get_url(self, row) -> str | None:
        request = self.context.get("request")
        if request is None:
            return None
        prefix = self.context.get("url_prefix")
        if prefix is None:
            prefix = self.context["url_prefix"] = request.build_absolute_uri(reverse("api:trajectory-list"))
        return f"{prefix}{id_path(row['trajectory_id'])}/"

    def to_representation(self, row) -> dict:
        # Hand-rolled for list pages: DRF's field-by-field path costs more than the query itself.
        if type(self) is not TrajectorySummarySerializer:
            return super().to_representation(row)
        data = {name: row.get(name) for name in _SUMMARY_PLAIN}
        data["url"] = self.get_url(row)
        data["created_at"] = _iso(row.get("created_at"))
        data["questionId"] = row.get("data_id")
        data["isSuccess"] = row.get("is_success")
        data["rootCause"] = row.get("root_cause")
        return data


_SUMMARY_PLAIN = tuple(
    name
    for name in TrajectorySummarySerializer._declared_fields
    if name not in {"url", "created_at", "questionId", "isSuccess", "rootCause"}
)


def _iso(value) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TrajectoryDetailSerializer(TrajectorySummarySerializer):
    final_answer = serializers.CharField(allow_null=True)
    source = serializers.CharField(allow_null=True)
    source_format = serializers.CharField(allow_null=True)
    import_id = serializers.CharField(allow_null=True)
    imported_at = serializers.DateTimeField()
    steps = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()
    notes = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_null=True)

    def get_steps(self, row) -> list:
        return orjson.loads(row["steps"])

    def get_metadata(self, row) -> dict:
        return orjson.loads(row["metadata"]) if row.get("metadata") else {}


class TagField(serializers.CharField):
    """One tag: a single line of printable text (the detail page edits tags one per line)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=MAX_TAG_LENGTH, **kwargs)

    def to_internal_value(self, data) -> str:
        tag = super().to_internal_value(data)
        if not tag.isprintable():
            raise serializers.ValidationError("a tag is one line of printable text (no line breaks or tabs)")
        return tag


class AnnotationSerializer(serializers.Serializer):
    """The mutable fields. Absent fields are kept; null clears; add_tags/remove_tags compose with
    concurrent edits (set operations on the stored tags), `tags` replaces them all."""

    is_bookmarked = serializers.BooleanField(required=False)
    is_success = serializers.BooleanField(required=False, allow_null=True)
    category = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=200)
    root_cause = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT_LENGTH)
    notes = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=MAX_TEXT_LENGTH)
    tags = serializers.ListField(child=TagField(), required=False, max_length=200)
    add_tags = serializers.ListField(child=TagField(), required=False, max_length=200)
    remove_tags = serializers.ListField(child=TagField(), required=False, max_length=200)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("give at least one field to change")
        return attrs

    def to_change(self) -> AnnotationChange:
        return change_from(self.validated_data)


def change_from(data: dict) -> AnnotationChange:
    """The AnnotationChange that validated annotation fields describe."""
    values = {
        name: (data[name] or None) if name in {"category", "root_cause", "notes"} else data[name]
        for name in ("is_bookmarked", "is_success", "category", "root_cause", "notes")
        if name in data
    }
    return AnnotationChange(
        **values,
        tags=tuple(dict.fromkeys(data["tags"])) if "tags" in data else UNSET,
        add_tags=tuple(data.get("add_tags", ())),
        remove_tags=tuple(data.get("remove_tags", ())),
    )


class SelectionSerializer(serializers.Serializer):
    """Which trajectories a bulk action applies to: listed ids, a filter query, or explicitly all."""

    ids = serializers.ListField(
        child=serializers.CharField(max_length=512, trim_whitespace=False),
        required=False,
        max_length=MAX_BULK_IDS,
        allow_empty=False,
    )
    query = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=20_000,
        help_text="filters from a list URL, e.g. 'agent_name=x&reward_min=0.5'; empty values, page, "
        "ordering and other display parameters are refused, and so is a query that filters nothing",
    )
    all = serializers.BooleanField(
        required=False, default=False, help_text="act on every trajectory (instead of ids or a query)"
    )
    confirm = serializers.CharField(
        required=False,
        max_length=2000,
        help_text="the token from the answer that reported the count, when the action needed confirming",
    )

    def validate(self, attrs):
        given = [name for name in ("ids", "query") if name in attrs] + (["all"] if attrs["all"] else [])
        if len(given) != 1:
            raise serializers.ValidationError("give exactly one of 'ids', 'query' or \"all\": true")
        if "query" in attrs:
            try:
                attrs["parsed_query"] = q.parse_filters(QueryDict(attrs["query"]))
            except q.QueryError as error:
                raise serializers.ValidationError({"query": [str(error)]}) from error
            if not attrs["parsed_query"].is_filtered:
                raise serializers.ValidationError(
                    {"query": ['this query filters nothing; send "all": true to act on every trajectory']}
                )
        return attrs


class BulkUpdateSerializer(SelectionSerializer):
    changes = AnnotationSerializer()


class FacetValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class FacetsSerializer(serializers.Serializer):
    agent_name = FacetValueSerializer(many=True)
    training_id = FacetValueSerializer(many=True)
    category = FacetValueSerializer(many=True)
    tools = FacetValueSerializer(many=True)
    tags = FacetValueSerializer(many=True)


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class ConfirmationSerializer(serializers.Serializer):
    """A bulk action that must be confirmed: repeat the request with `confirm` set to the token."""

    detail = serializers.CharField()
    count = serializers.IntegerField()
    selection = serializers.CharField()
    confirm = serializers.CharField()
