"""Trajectory ids in URL paths: one path segment per id, for pages and API alike.

Ids may hold "/", "%", or be a route's own name ("import", "facets") or "..". In a path an id is
its segment: "/" and "%" percent-encoded, the first character of a reserved name or of a run of
dots encoded too, everything else as it is (non-ASCII stays readable). Django then quotes the
segment once more, like any path, and decodes it once on the way in; the converter decodes the rest.
So `/trajectories/x%252Fraw/` is the trajectory "x/raw", never the raw view of "x".
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from django.urls import register_converter

# Names of the routes that sit beside a trajectory's own, under /trajectories/ and /api/trajectories/.
RESERVED_SEGMENTS = frozenset(
    {"import", "actions", "facets", "bulk-update", "bulk-delete", "stats", "groups", "group", "compare", "questions"}
)
# What Django's reverse() leaves unquoted in a path (RFC 3986 sub-delimiters and "~:@").
_REVERSE_SAFE = "!$&'()*+,;=~:@"


def id_segment(trajectory_id: str) -> str:
    """The path segment of an id, before Django's own quoting (what `{% url %}` is given)."""
    segment = trajectory_id.replace("%", "%25").replace("/", "%2F")
    if segment in RESERVED_SEGMENTS or segment.strip(".") == "":
        segment = f"%{ord(segment[0]):02X}{segment[1:]}"
    return segment


def id_path(trajectory_id: str) -> str:
    """The segment as it appears in a URL (quoted once more, as reverse() does)."""
    return quote(id_segment(trajectory_id), safe=_REVERSE_SAFE)


class TrajectoryIdConverter:
    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        return id_segment(value)


register_converter(TrajectoryIdConverter, "traj")
