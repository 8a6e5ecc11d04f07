"""The overview: counts per training run and agent, latest imports, bookmarked trajectories."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse

from trajectories import reads
from trajectories.models import ImportJob
from trajectories.query import TrajectoryQuery

from .htmlcache import render_cached

_BOOKMARKS_SHOWN = 10


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    return render_cached(request, "trajectories/home.html", _context, page="home", url="")


def _context() -> dict:
    facets = reads.facets()
    bookmarked = reads.page(query=TrajectoryQuery.where(is_bookmarked=True).replace(page_size=_BOOKMARKS_SHOWN))
    return {
        "total": reads.total(),
        "runs": facets["training_id"],
        "agents": facets["agent_name"],
        "categories": [pair for pair in facets["category"] if pair[0] is not None][:10],
        "bookmarked": bookmarked.rows,
        "bookmarked_count": bookmarked.count,
        "imports": list(ImportJob.objects.select_related("created_by")[:5]),
    }
