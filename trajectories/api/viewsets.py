"""`TrajectoryViewSet`: list, retrieve, annotate, bulk actions, delete and facets over the store."""

from __future__ import annotations

import hashlib

import orjson
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from trajectories import comparing, exporting, reads, selection, services
from trajectories.auth import require_delete

from . import serializers as s
from .filters import TrajectoryQueryFilter, parse_request, parse_request_params
from .pagination import StorePagination


class StoreSelection:
    """What DRF calls the queryset: the read path, asked for one page of a parsed query."""

    def page(self, query):
        return reads.page(query=query)


class _AnyType(BaseRenderer):
    """An export answers its own type (JSONL, Parquet, CSV) whatever the client's Accept says;
    its errors are JSON."""

    media_type = "*/*"
    format = "export"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return b"" if data is None else orjson.dumps(data)


class TrajectoryViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAdminUser]
    pagination_class = StorePagination
    filter_backends = [TrajectoryQueryFilter]
    serializer_class = s.TrajectorySummarySerializer
    lookup_field = "trajectory_id"
    lookup_value_converter = "traj"

    def get_queryset(self):
        return StoreSelection()

    def list(self, request, format=None):
        rows = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)

    @extend_schema(responses=s.TrajectoryDetailSerializer)
    def retrieve(self, request, trajectory_id: str, format=None):
        return Response(s.TrajectoryDetailSerializer(self._get(trajectory_id), context={"request": request}).data)

    @extend_schema(request=s.AnnotationSerializer, responses=s.TrajectoryDetailSerializer)
    def partial_update(self, request, trajectory_id: str, format=None):
        changes = s.AnnotationSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        # The edit itself checks that the id is stored (no read of its steps first: a detail read is
        # the costliest part of an edit under load); nothing annotated is a 404 or an empty change.
        if not services.annotate(trajectory_ids=[trajectory_id], change=changes.to_change(), user=request.user):
            self._get(trajectory_id)
        return self.retrieve(request, trajectory_id)

    @extend_schema(responses={204: OpenApiResponse(description="deleted")})
    def destroy(self, request, trajectory_id: str, format=None):
        require_delete(request.user)
        if not services.delete(trajectory_ids=[trajectory_id]):
            raise NotFound(f"no trajectory {trajectory_id!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[OpenApiParameter("k", int, description="how many (1-100, default 10)")],
        responses={200: dict},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def similar(self, request, trajectory_id: str, format=None):
        """The trajectories most like this one (cosine of their embeddings), among those the list
        parameters select (e.g. `training_id=…&is_success=false`: similar failures of that run)."""
        params = request.query_params.copy()
        k = _whole(params.pop("k", ["10"])[-1], low=1, high=100, name="k")
        query = parse_request_params(params)
        rows = reads.similar(trajectory_id=trajectory_id, query=query, k=k)
        if rows is None:
            raise NotFound(f"no trajectory {trajectory_id!r}")
        data = s.TrajectorySummarySerializer(rows, many=True, context={"request": request}).data
        for item, row in zip(data, rows, strict=True):
            item["similarity"] = row["similarity"]
        return Response({"trajectory_id": trajectory_id, "results": data})

    @extend_schema(
        request=s.BulkUpdateSerializer,
        responses={200: s.CountSerializer, 409: s.ConfirmationSerializer, 428: s.ConfirmationSerializer},
    )
    @action(detail=False, methods=["post"], url_path="bulk-update")
    def bulk_update(self, request, format=None):
        """Change the mutable fields of listed trajectories, of those matching `query`, or of `all`.

        A query-selected change of more than TRAJSITE_BULK_CONFIRM_ROWS rows answers 428 with the count
        and a `confirm` token; send the same request again with it (409 if the rows changed meanwhile).
        """
        payload = s.BulkUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        change = payload.validated_data["changes"]["change"]
        chosen = payload.validated_data["selection"]
        if "ids" not in payload.validated_data:
            # The token is for these changes: confirming "category=x" does not also confirm "category=y".
            action = f"bulk-update:{hashlib.blake2b(repr(change).encode(), digest_size=12).hexdigest()}"
            token = payload.validated_data.get("confirm")
            if (asked := _unconfirmed(request, chosen, action=action, token=token)) is not None:
                return asked
        count = services.annotate(trajectory_ids=list(chosen.ids), change=change, user=request.user)
        return Response({"count": count})

    @extend_schema(
        request=s.SelectionSerializer,
        responses={200: s.CountSerializer, 409: s.ConfirmationSerializer, 428: s.ConfirmationSerializer},
    )
    @action(detail=False, methods=["post"], url_path="bulk-delete")
    def bulk_delete(self, request, format=None):
        """Delete listed trajectories, those matching `query`, or `all` (needs the delete permission).

        More than TRAJSITE_BULK_CONFIRM_ROWS rows answers 428 with the count and a `confirm` token;
        send the same request again with it (409 if the rows changed meanwhile).
        """
        require_delete(request.user)
        payload = s.SelectionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        chosen = payload.validated_data["selection"]
        token = payload.validated_data.get("confirm")
        if (asked := _unconfirmed(request, chosen, action="bulk-delete", token=token)) is not None:
            return asked
        return Response({"count": services.delete(trajectory_ids=list(chosen.ids))})

    @extend_schema(responses=s.FacetsSerializer)
    @action(detail=False, methods=["get"], pagination_class=None)
    def facets(self, request, format=None):
        """Distinct values and their counts among the trajectories matching the filters."""
        query = parse_request(request)
        facets = reads.facets(query=query)
        # Rows with no value (None) are not a value one can filter by equality: the pages offer them
        # as `<field>_empty=true`; the API's facet lists stay lists of values.
        return Response(
            {name: [{"value": v, "count": c} for v, c in values if v is not None] for name, values in facets.items()}
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                exporting.FORMAT_VAR,
                str,
                enum=[*exporting.FORMATS],
                description="The dataset format (default jsonl).",
            ),
            OpenApiParameter(
                exporting.MIN_GAP_VAR,
                float,
                description="pairs: the least reward gap between a group's best and worst.",
            ),
        ],
        responses={200: bytes},
    )
    @action(detail=False, methods=["get"], pagination_class=None, renderer_classes=[JSONRenderer, _AnyType])
    def export(self, request, format=None):
        """Every trajectory matching the list parameters, in list order, streamed as a dataset: `jsonl`
        (canonical, re-imports losslessly), `sft` (`{"messages": [...]}`, OpenAI tool calls), `pairs`
        (best vs worst sample of each GRPO group), `parquet` or `csv` (metadata)."""
        try:
            fmt, query, min_gap = exporting.parse_export(request.query_params)
        except exporting.ExportError as error:
            raise ValidationError({error.parameter: [error.message]}) from error
        return exporting.response(fmt, query, min_gap)

    @extend_schema(
        parameters=[
            OpenApiParameter("ids", str, many=True, description="2 to 4 trajectory ids (repeat the parameter).")
        ],
        responses={200: dict},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def compare(self, request, format=None):
        """Two to four trajectories side by side: `diff` (per field, the values and whether they differ),
        `rows` (step indices aligned by equal tool calls, first trajectory first; null is a gap) and
        `diverges_at` (per other trajectory, the first's step where its tool calls part ways)."""
        try:
            found = comparing.compare(trajectory_ids=request.query_params.getlist("ids"))
        except comparing.CompareError as error:
            raise ValidationError({"ids": [str(error)]}) from error
        return Response(
            {
                "trajectories": [record["trajectory_id"] for record in found.records],
                "diff": [{"field": name, "values": values, "differs": differs} for name, values, differs in found.diff],
                "rows": found.rows,
                "diverges_at": found.diverges_at,
            }
        )

    def _get(self, trajectory_id: str) -> dict:
        record = reads.trajectory(trajectory_id=trajectory_id)
        if record is None:
            raise NotFound(f"no trajectory {trajectory_id!r}")
        return record


def _unconfirmed(request, chosen: selection.Selection, *, action: str, token: str | None) -> Response | None:
    """428 with the count and a token before a large action; 409 when a token no longer fits."""
    if not selection.needs_confirmation(chosen):
        return None
    problem = selection.confirmation_problem(token, chosen, action=action, user=request.user)
    if problem is None:
        return None
    body = {
        "detail": f'{problem}. To go ahead, send the same request again with "confirm" set to this token.',
        "count": chosen.count,
        "selection": chosen.description,
        "confirm": selection.confirmation_token(chosen, action=action, user=request.user),
    }
    return Response(body, status=status.HTTP_409_CONFLICT if token else status.HTTP_428_PRECONDITION_REQUIRED)


def _whole(text: str, *, low: int, high: int, name: str) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ValidationError({name: [f"a whole number from {low} to {high}"]})
    return int(text)
