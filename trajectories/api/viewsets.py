"""`TrajectoryViewSet`: list, retrieve, annotate, bulk actions, delete and facets over the store."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from trajectories import cache, services

from . import serializers as s
from .filters import TrajectoryQueryFilter, parse_request
from .pagination import StorePagination

DELETE_PERMISSION = "trajectories.delete_trajectory"
_ID_PATTERN = r".+"


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
    lookup_value_regex = _ID_PATTERN

    def get_queryset(self):
        return StoreSelection()

    def list(self, request):
        rows = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)

    @extend_schema(responses=s.TrajectoryDetailSerializer)
    def retrieve(self, request, trajectory_id: str):
        return Response(s.TrajectoryDetailSerializer(self._get(trajectory_id), context={"request": request}).data)

    @extend_schema(request=s.AnnotationSerializer, responses=s.TrajectoryDetailSerializer)
    def partial_update(self, request, trajectory_id: str):
        self._get(trajectory_id)
        changes = s.AnnotationSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        services.annotate(trajectory_ids=[trajectory_id], change=changes.to_change(), user=request.user)
        return self.retrieve(request, trajectory_id)

    @extend_schema(responses={204: OpenApiResponse(description="deleted")})
    def destroy(self, request, trajectory_id: str):
        self._require_delete_permission(request)
        if not services.delete(trajectory_ids=[trajectory_id]):
            raise NotFound(f"no trajectory {trajectory_id!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.BulkUpdateSerializer, responses=s.CountSerializer)
    @action(detail=False, methods=["post"], url_path="bulk-update")
    def bulk_update(self, request):
        """Change the mutable fields of listed trajectories, or of every one matching `query`."""
        payload = s.BulkUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        changes = s.AnnotationSerializer(data=request.data["changes"])
        changes.is_valid(raise_exception=True)
        change = changes.to_change()
        data = payload.validated_data
        if "ids" in data:
            count = services.annotate(trajectory_ids=data["ids"], change=change, user=request.user)
        else:
            count = services.annotate_matching(query=data["parsed_query"], change=change, user=request.user)
        return Response({"count": count})

    @extend_schema(request=s.SelectionSerializer, responses=s.CountSerializer)
    @action(detail=False, methods=["post"], url_path="bulk-delete")
    def bulk_delete(self, request):
        """Delete listed trajectories, or every one matching `query` (needs the delete permission)."""
        self._require_delete_permission(request)
        payload = s.SelectionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if "ids" in data:
            count = services.delete(trajectory_ids=data["ids"])
        else:
            count = services.delete_matching(query=data["parsed_query"])
        return Response({"count": count})

    @extend_schema(responses=s.FacetsSerializer)
    @action(detail=False, methods=["get"], pagination_class=None)
    def facets(self, request):
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
