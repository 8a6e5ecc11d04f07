"""The overview: a dashboard of training runs (size, latest reward and success, curves by iteration),
agents, categories, latest imports, bookmarked trajectories."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from trajectories import analysis, reads
from trajectories.models import ImportJob, Monitor
from trajectories.query import TrajectoryQuery
from trajectories.store import ScopeTooLarge

from . import charts, monitors
from .htmlcache import render_cached

_BOOKMARKS_SHOWN = 10
_RUNS_SHOWN = 30


def _run(curve: dict) -> dict:
    """One training run's row: size, iterations, the latest iteration's reward and success, curves."""
    points = [point for point in curve["points"] if point["key"] is not None]
    latest = points[-1] if points else None
    key = curve["key"]
    rows = analysis.rows_of("training_id", key)
    return {
        "key": key,
        "count": curve["count"],
        "iterations": len(points),
        "latest": latest,
        "reward_curve": charts.sparkline([point["reward_mean"] for point in points]),
        "success_curve": charts.sparkline([point["success_rate"] for point in points], y_range=(0.0, 1.0)),
        "list_url": analysis.link(reverse("trajectories:list"), rows),
        "stats_url": analysis.link(reverse("trajectories:stats"), rows, [("by", "iteration_id")]),
        "groups_url": analysis.link(reverse("trajectories:groups"), rows),
    }


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    return render_cached(request, "trajectories/home.html", _context, page="home", url="")


def _sized(key: str | None, count: int) -> dict:
    """A run's row without its curves: a store past its memory budget draws them per run, not here."""
    return _run({"key": key, "count": count, "points": []}) | {"iterations": None, "latest": None}


def _context() -> dict:
    facets = reads.facets()
    try:
        curves = reads.curves(query=TrajectoryQuery(), split="training_id", by="iteration_id")
        runs, compared = [_run(curve) for curve in curves], True
    except ScopeTooLarge:
        runs, compared = [_sized(key, count) for key, count in facets["training_id"]], False
    bookmarked = reads.page(query=TrajectoryQuery.where(is_bookmarked=True).replace(page_size=_BOOKMARKS_SHOWN))
    return {
        "total": reads.total(),
        "runs": sorted(runs, key=lambda run: (run["key"] is None, -run["count"]))[:_RUNS_SHOWN],
        "run_count": len(runs),
        "runs_compared": compared,
        "agents": facets["agent_name"],
        "categories": [pair for pair in facets["category"] if pair[0] is not None][:10],
        "bookmarked": bookmarked.rows,
        "bookmarked_count": bookmarked.count,
        "imports": list(ImportJob.objects.select_related("created_by")[:5]),
        "monitors": [monitors.summary(monitor) for monitor in Monitor.objects.filter(enabled=True)],
        "monitors_off": Monitor.objects.filter(enabled=False).count(),
        "text_index": reads.text_index_state(),
    }
