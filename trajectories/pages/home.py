"""The overview: counts per training run and agent, latest imports, bookmarked trajectories."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse

from trajectories import cache
from trajectories.models import ImportJob
from trajectories.query import TrajectoryQuery

from .htmlcache import render_cached

_BOOKMARKS_SHOWN = 10


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    return render_cached(request, "trajectories/home.html", _context, what="home", detail="")


def _context() -> dict:
    facets = cache.facets()
    bookmarked = cache.page(TrajectoryQuery(booleans={"is_bookmarked": True}, page_size=_BOOKMARKS_SHOWN))
    return {
        "total": cache.total(),
        "runs": facets["training_id"],
        "agents": facets["agent_name"],
        "categories": facets["category"][:10],
        "bookmarked": bookmarked.rows,
        "bookmarked_count": bookmarked.count,
        "imports": list(ImportJob.objects.select_related("created_by")[:5]),
    }
