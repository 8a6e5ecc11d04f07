"""Monitors: saved questions asked of every import (create one from any list URL, switch the shipped
ones on, see each one's matches and their trend by iteration)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from trajectories import monitoring, reads
from trajectories.models import Monitor
from trajectories.query import TrajectoryQuery
from trajectories.signals import trajectories_changed
from trajectories.store import ScopeTooLarge

from . import charts

FROM_VAR = "from"


def summary(monitor: Monitor) -> dict:
    """A monitor's matches: how many, where they are, and how many per iteration."""
    rows = TrajectoryQuery.where(tags=monitor.tag)
    count = reads.count(query=rows)
    try:
        by_iteration = [point for point in reads.stats(query=rows, by="iteration_id") if point["key"] is not None]
    except ScopeTooLarge:  # a store past the memory budget charts a tag within a training run only
        by_iteration = []
    return {
        "monitor": monitor,
        "count": count,
        "matches_url": reverse("trajectories:list") + "?" + urlencode({"tag": monitor.tag}),
        "query_url": reverse("trajectories:list") + ("?" + monitor.query if monitor.query else ""),
        "trend": charts.sparkline([point["count"] for point in by_iteration]),
        "latest": by_iteration[-1] if by_iteration else None,
    }


@staff_member_required
def monitor_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _create(request)
    query = request.GET.get(FROM_VAR, "")
    return render(
        request,
        "trajectories/monitors.html",
        {
            "monitors": [summary(monitor) for monitor in Monitor.objects.all()],
            "form": {"query": query, "name": slugify(query.split("=")[-1])[:40] if query else "", "description": ""},
            "rules": Monitor.Rule.choices,
        },
    )


def _create(request: HttpRequest) -> HttpResponse:
    form = {key: request.POST.get(key, "").strip() for key in ("name", "description", "query", "rule")}
    error = None
    if slugify(form["name"]) != form["name"] or not form["name"] or len(form["name"]) > 60:
        error = "name: up to 60 letters, digits, - and _ (it becomes the tag monitor:<name>)"
    elif len(form["description"]) > 300 or len(form["query"]) > 4000:
        error = "description: at most 300 characters; query: at most 4,000"
    elif form["rule"] not in Monitor.Rule.values:
        error = f"rule: {form['rule']!r} is not a rule"
    else:
        try:
            monitoring.parsed(form["query"], form["rule"])
        except monitoring.MonitorError as raised:
            error = f"query: {raised}"
    if error is None:
        try:
            Monitor.objects.create(**form, created_by=request.user)
        except IntegrityError:
            error = f"name: a monitor named {form['name']!r} exists"
    if error is not None:
        monitors = [summary(monitor) for monitor in Monitor.objects.all()]
        context = {"monitors": monitors, "form": form, "rules": Monitor.Rule.choices, "error": error}
        return render(request, "trajectories/monitors.html", context, status=400)
    trajectories_changed.send(sender=Monitor)
    messages.success(request, f"Monitor {form['name']} saved: every import from now on is checked. "
                              "Run it to tag the rows stored already.")  # fmt: skip
    return redirect("trajectories:monitors")


@staff_member_required
@require_POST
def monitor_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    monitor = get_object_or_404(Monitor, pk=pk)
    Monitor.objects.filter(pk=pk).update(enabled=not monitor.enabled)
    trajectories_changed.send(sender=Monitor)
    messages.success(request, f"Monitor {monitor.name} {'switched off' if monitor.enabled else 'switched on'}.")
    return redirect("trajectories:monitors")


@staff_member_required
@require_POST
def monitor_delete(request: HttpRequest, pk: int) -> HttpResponse:
    monitor = get_object_or_404(Monitor, pk=pk)
    monitor.delete()
    trajectories_changed.send(sender=Monitor)
    messages.success(request, f"Monitor {monitor.name} deleted; the rows it tagged keep the tag {monitor.tag}.")
    return redirect("trajectories:monitors")


@staff_member_required
@require_POST
def monitor_run(request: HttpRequest) -> HttpResponse:
    """Every enabled monitor over every stored row (after switching one on)."""
    tagged = monitoring.run(import_id=None)
    if not tagged:
        messages.warning(request, "No monitor is switched on.")
    else:
        done = ", ".join(f"{name}: {count:,}" for name, count in tagged.items())
        messages.success(request, f"Monitors run over every row; rows tagged: {done}.")
    return redirect("trajectories:monitors")
