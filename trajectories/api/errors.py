"""Errors as JSON with a message, including the store's own refusals (never a 500 for bad input)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from trajectories.query import QueryError
from trajectories.store import StoreBusy

RETRY_AFTER_SECONDS = 5


def exception_handler(exc, context):
    if isinstance(exc, QueryError):
        return Response({exc.parameter: [exc.message]}, status=400)
    if isinstance(exc, StoreBusy):
        # Nothing was written: saying so is honest, and the client can simply send it again.
        body = {"detail": f"the store is busy with other writers; nothing was changed, try again ({exc})"}
        return Response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)  # DRF's own conversion drops the message
    return drf_exception_handler(exc, context)
