"""Serializers: trajectory rows out (fields from the catalogue), annotation changes in."""

from __future__ import annotations

import orjson
from django.core.validators import MaxLengthValidator
from django.urls import reverse
from rest_framework import serializers

from trajectories import annotating, fields, selection
from trajectories.fields import Kind
from trajectories.links import id_path

MAX_BULK_IDS = 100_000

_DRF_FIELDS = {
    Kind.ID: serializers.CharField,
    Kind.TEXT: serializers.CharField,
    Kind.LONG_TEXT: serializers.CharField,
    Kind.INT: serializers.IntegerField,
    Kind.FLOAT: serializers.FloatField,
    Kind.TIME: serializers.DateTimeField,
    Kind.BOOL: serializers.BooleanField,
    Kind.TRISTATE: serializers.BooleanField,
}


def _drf_field(field: fields.Field) -> serializers.Field:
    options = {"help_text": field.help}
    if field.kind is Kind.LIST:
        return serializers.ListField(child=serializers.CharField(), **options)
    # A trajectory never annotated has no annotation row: its annotation fields read as null.
    nullable = field.nullable or (field.table == fields.ANNOTATIONS and field.kind is not Kind.BOOL)
    return _DRF_FIELDS[field.kind](allow_null=nullable, **options) if nullable else _DRF_FIELDS[field.kind](**options)


def _declared(chosen) -> dict[str, serializers.Field]:
    return {field.name: _drf_field(field) for field in chosen}


class TrajectorySummarySerializer(serializers.Serializer):
    """A list row: the catalogue's `summary` fields. `questionId`, `isSuccess`, `rootCause` keep the
    seed API's shape available."""

    url = serializers.SerializerMethodField()
    questionId = serializers.CharField(source="data_id")
    isSuccess = serializers.BooleanField(source="is_success", allow_null=True)
    rootCause = serializers.CharField(source="root_cause", allow_null=True)

    def get_fields(self):
        return {**_declared(fields.SUMMARY), **super().get_fields()}

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
        for name in _SUMMARY_TIMES:
            data[name] = _iso(row.get(name))
        data["url"] = self.get_url(row)
        data["questionId"] = row.get("data_id")
        data["isSuccess"] = row.get("is_success")
        data["rootCause"] = row.get("root_cause")
        if row.get("snippet") is not None or "score" in row:
            # A content search (`q`, `regex`): where it matched, and how well (relevance).
            data["snippet"] = row["snippet"].as_json() if row.get("snippet") is not None else None
            data["score"] = row.get("score")
        return data


_SUMMARY_PLAIN = tuple(field.name for field in fields.SUMMARY if field.kind is not Kind.TIME)
_SUMMARY_TIMES = tuple(field.name for field in fields.SUMMARY if field.kind is Kind.TIME)


def _iso(value) -> str | None:
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TrajectoryDetailSerializer(TrajectorySummarySerializer):
    """One trajectory: every field of the catalogue, steps and metadata as JSON."""

    steps = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()

    def get_fields(self):
        rest = [
            field
            for field in fields.FIELDS
            if not field.summary and not field.internal and field.name not in {"steps", "metadata"}
        ]
        return {**super().get_fields(), **_declared(rest)}

    def get_steps(self, row) -> list:
        return orjson.loads(row["steps"])

    def get_metadata(self, row) -> dict:
        return orjson.loads(row["metadata"]) if row.get("metadata") else {}


class _StatedLimit(MaxLengthValidator):
    """A limit the OpenAPI schema states (drf-spectacular reads length validators) but that does not
    check here: `annotating` checks it, with the messages the pages show."""

    def __call__(self, value) -> None:
        return None


class _LimitedText(serializers.CharField):
    def __init__(self, *, limit: int, **options) -> None:
        super().__init__(**options)
        self.validators.append(_StatedLimit(limit))


class _LimitedList(serializers.ListField):
    def __init__(self, *, limit: int, **options) -> None:
        super().__init__(**options)
        self.validators.append(_StatedLimit(limit))


def _text(name: str) -> serializers.CharField:
    limit = annotating.TEXT_LIMITS[name]
    return _LimitedText(required=False, allow_null=True, allow_blank=True, limit=limit)


def _tag_list() -> serializers.ListField:
    tag = _LimitedText(allow_blank=True, limit=annotating.MAX_TAG_LENGTH)
    return _LimitedList(child=tag, required=False, limit=annotating.MAX_TAGS)


class AnnotationSerializer(serializers.Serializer):
    """The mutable fields. Absent fields are kept; null clears; add_tags/remove_tags compose with
    concurrent edits (set operations on the stored tags), `tags` replaces them all. Limits and their
    messages are `trajectories.annotating`'s, the same as the pages'."""

    is_bookmarked = serializers.BooleanField(required=False)
    is_success = serializers.BooleanField(required=False, allow_null=True)
    category = _text("category")
    root_cause = _text("root_cause")
    notes = _text("notes")
    tags = _tag_list()
    add_tags = _tag_list()
    # A stored tag is removed as it is, whatever it holds: no limits.
    remove_tags = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("give at least one field to change")
        try:
            attrs["change"] = annotating.change_from(attrs)
        except annotating.ChangeError as error:
            raise serializers.ValidationError(error.errors) from error
        return attrs

    def to_change(self):
        return self.validated_data["change"]


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
        try:
            attrs["selection"] = selection.resolve(
                ids=attrs.get("ids"), query=attrs.get("query"), everything=attrs["all"]
            )
        except selection.ScopeError as error:
            raise serializers.ValidationError({error.parameter: [error.message]}) from error
        return attrs


class BulkUpdateSerializer(SelectionSerializer):
    changes = AnnotationSerializer()


class FacetValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class FacetsSerializer(serializers.Serializer):
    def get_fields(self):
        return {field.name: FacetValueSerializer(many=True) for field in fields.FACETS}


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class ConfirmationSerializer(serializers.Serializer):
    """A bulk action that must be confirmed: repeat the request with `confirm` set to the token."""

    detail = serializers.CharField()
    count = serializers.IntegerField()
    selection = serializers.CharField()
    confirm = serializers.CharField()
