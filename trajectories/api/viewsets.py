"""`TrajectoryViewSet`: list, retrieve, annotate, bulk actions, delete and facets over the store."""

from __future__ import annotations

import hashlib

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from trajectories import cache, selection, services
from trajectories.query import TrajectoryQuery

from . import serializers as s
from .filters import TrajectoryQueryFilter, parse_request
from .pagination import StorePagination

DELETE_PERMISSION = "trajectories.delete_trajectory"


class StoreSelection:
    """What DRF calls the queryset: the (cached) store, asked for one page of a parsed query."""

    def page(self, query):
        return cache.page(query)


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
        self._get(trajectory_id)
        changes = s.AnnotationSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        services.annotate(trajectory_ids=[trajectory_id], change=changes.to_change(), user=request.user)
        return self.retrieve(request, trajectory_id)

    @extend_schema(responses={204: OpenApiResponse(description="deleted")})
    def destroy(self, request, trajectory_id: str, format=None):
        self._require_delete_permission(request)
        if not services.delete(trajectory_ids=[trajectory_id]):
            raise NotFound(f"no trajectory {trajectory_id!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)

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
        change = s.change_from(payload.validated_data["changes"])
        chosen = _selection(payload.validated_data)
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
        self._require_delete_permission(request)
        payload = s.SelectionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        chosen = _selection(payload.validated_data)
        token = payload.validated_data.get("confirm")
        if (asked := _unconfirmed(request, chosen, action="bulk-delete", token=token)) is not None:
            return asked
        return Response({"count": services.delete(trajectory_ids=list(chosen.ids))})

    @extend_schema(responses=s.FacetsSerializer)
    @action(detail=False, methods=["get"], pagination_class=None)
    def facets(self, request, format=None):
        """Distinct values and their counts among the trajectories matching the filters."""
        query = parse_request(request)
        facets = cache.facets(query)
        return Response({name: [{"value": v, "count": c} for v, c in values] for name, values in facets.items()})

    def _get(self, trajectory_id: str) -> dict:
        record = cache.trajectory(trajectory_id)
        if record is None:
            raise NotFound(f"no trajectory {trajectory_id!r}")
        return record

    def _require_delete_permission(self, request) -> None:
        if not request.user.has_perm(DELETE_PERMISSION):
            raise PermissionDenied("deleting trajectories needs the 'Can delete trajectories' permission")


def _selection(data: dict) -> selection.Selection:
    if "ids" in data:
        return selection.by_ids(data["ids"])
    return selection.by_query(data.get("parsed_query") or TrajectoryQuery(), everything=data["all"])


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
