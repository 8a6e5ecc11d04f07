"""A DRF paginator backed by the store: exact count, page links, 404 past the end."""

from __future__ import annotations

import math

from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from trajectories import query as q


class StorePagination(BasePagination):
    """`queryset` is a `StoreSelection`; the page comes from `view.trajectory_query`."""

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.query = view.trajectory_query
        self.result = queryset.page(self.query)
        self.pages = max(1, math.ceil(self.result.count / self.query.page_size))
        if self.query.page > self.pages:
            raise NotFound(
                f"page {self.query.page} is past the end: {self.result.count} results make {self.pages} pages"
            )
        return self.result.rows

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "count": self.result.count,
                "next": self._link(self.query.page + 1),
                "previous": self._link(self.query.page - 1),
                "results": data,
            }
        )

    def _link(self, page: int) -> str | None:
        if page < 1 or page > self.pages:
            return None
        url = self.request.build_absolute_uri()
        return remove_query_param(url, q.PAGE_VAR) if page == 1 else replace_query_param(url, q.PAGE_VAR, page)

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer", "example": 123},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": q.PAGE_VAR,
                "required": False,
                "in": "query",
                "description": "Page number (from 1).",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": q.PAGE_SIZE_VAR,
                "required": False,
                "in": "query",
                "description": f"Results per page (1-{q.MAX_PAGE_SIZE}, default {q.DEFAULT_PAGE_SIZE}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": q.MAX_PAGE_SIZE},
            },
        ]
