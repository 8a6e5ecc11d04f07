"""Errors as JSON with a message, including the store's own refusals (never a 500 for bad input)."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from trajectories.query import QueryError


def exception_handler(exc, context):
    if isinstance(exc, QueryError):
        return Response({exc.parameter: [exc.message]}, status=400)
    return drf_exception_handler(exc, context)
