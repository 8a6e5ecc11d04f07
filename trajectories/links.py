"""Trajectory ids in URL paths: the same escaping for pages and API (ids may hold "/" or quotes)."""

from __future__ import annotations

from urllib.parse import quote

# What Django's reverse() leaves unescaped in a path segment, except "/", which is escaped here.
_SAFE = "!$&'()*+,;=~:@"


def id_segment(trajectory_id: str) -> str:
    return quote(trajectory_id, safe=_SAFE)
