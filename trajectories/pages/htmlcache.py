"""Whole staff pages from the cache, with the per-user parts put back in.

A cached list page still cost ~13 ms to render (the admin templates); the same page from Redis costs
under 2. What differs between two staff users seeing one URL is their CSRF token, their name in the
header, flash messages and the delete permission: the page is rendered with sentinels for the first
two, filled in per request; pages with messages are never cached; the permission is part of the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from trajectories import cache
from trajectories.auth import can_delete

# Placeholders that escaped content can never contain: trajectory text reaches a page only escaped,
# and escaping turns "<" into "&lt;". Marked safe, so the template puts them in as they are.
_CSRF = mark_safe("<trajsite:csrf-token>")
_NAME = mark_safe("<trajsite:user-name>")


class _SentinelUser:
    """The request's user, except that its name renders as a sentinel."""

    def __init__(self, user) -> None:
        self._user = user

    def __getattr__(self, name: str) -> Any:
        return getattr(self._user, name)

    def get_short_name(self) -> str:
        return _NAME

    def get_username(self) -> str:
        return _NAME


def render_cached(
    request: HttpRequest, template: str, context: Callable[[], dict[str, Any]], *, page: str, url: str
) -> HttpResponse:
    """`template` rendered with `context()`, from the cache when the page `page` at `url` was rendered
    already for this generation and table versions."""
    if len(messages.get_messages(request)):
        return HttpResponse(render_to_string(template, context(), request=request))
    token = get_token(request)

    def build() -> str:
        values = {**context(), "csrf_token": _CSRF, "user": _SentinelUser(request.user)}
        return render_to_string(template, values, request=request)

    question = f"{url}|delete={can_delete(request.user)}"
    html = cache.cached(f"html-{page}", question, build)
    user = request.user
    name = user.get_short_name() or user.get_username()
    return HttpResponse(html.replace(_CSRF, token).replace(_NAME, str(escape(name))))
