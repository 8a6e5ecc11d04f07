"""What a page says when its question spans more trajectories than the server holds in memory (a
store past its budget, store/runs.py): why, and the same page for each training run, largest first."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from trajectories import reads
from trajectories.store import ScopeTooLarge

from .urlstate import UrlState

_RUNS_SHOWN = 50


def choose_a_run(request: HttpRequest, error: ScopeTooLarge) -> HttpResponse:
    state = UrlState(request.GET)
    runs = [(run, count) for run, count in reads.facets()["training_id"] if run is not None]
    context = {
        "message": error.message,
        "runs": [
            {"name": run, "count": count, "url": request.path + state.url(training_id=run)}
            for run, count in runs[:_RUNS_SHOWN]
        ],
        "more": max(len(runs) - _RUNS_SHOWN, 0),
    }
    return render(request, "trajectories/choose_run.html", context, status=400)
