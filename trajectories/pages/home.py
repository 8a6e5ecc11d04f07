"""The overview: counts per training run and agent, latest imports, bookmarked trajectories."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from trajectories import cache
from trajectories.models import ImportJob
from trajectories.query import TrajectoryQuery

_BOOKMARKS_SHOWN = 10


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    facets = cache.facets()
    bookmarked = cache.page(TrajectoryQuery(booleans={"is_bookmarked": True}, page_size=_BOOKMARKS_SHOWN))
    context = {
        "total": cache.total(),
        "runs": facets["training_id"],
        "agents": facets["agent_name"],
        "categories": facets["category"][:10],
        "bookmarked": bookmarked.rows,
        "bookmarked_count": bookmarked.count,
        "imports": ImportJob.objects.select_related("created_by")[:5],
    }
    return render(request, "trajectories/home.html", context)
