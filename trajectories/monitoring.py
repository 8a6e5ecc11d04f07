"""Monitors: saved questions asked of every import's new rows.

After an import (any process: the command, an upload's thread), each enabled monitor's query runs
on the rows that import stored, read in batches (no projection of the whole store is built) and the
rows it matches get the tag `monitor:<name>`. The tag is the record: the list of matches is the list
filtered by it, and its counts by iteration are the stats of that list. A monitor switched on later
tags older rows when run over everything (the monitors page, or `manage.py run_monitors --all`).
"""

from __future__ import annotations

import logging

from django.dispatch import receiver
from django.http import QueryDict
from django.utils import timezone

from trajectories import query as q
from trajectories.models import Monitor
from trajectories.signals import trajectories_changed
from trajectories.store import AnnotationChange, get_store

log = logging.getLogger(__name__)


class MonitorError(ValueError):
    pass


def parsed(text: str, rule: str = "") -> q.TrajectoryQuery:
    """A monitor's question, stated strictly (an empty or display-only parameter is an error, as
    for bulk actions: a typo must not make a monitor match everything)."""
    params = QueryDict(text)
    try:
        query = q.parse_filters(params)
    except q.QueryError as error:
        raise MonitorError(f"{error.parameter}: {error.message}") from None
    if not query.is_filtered and not rule:
        raise MonitorError("give at least one condition: a monitor matching every row says nothing")
    return query


def run(*, import_id: str | None) -> dict[str, int]:
    """Ask every enabled monitor of one import's rows (None: of every row); returns the rows tagged."""
    monitors = list(Monitor.objects.filter(enabled=True))
    if not monitors:
        return {}
    queries, rules = {}, {}
    for monitor in monitors:
        try:
            queries[monitor.name] = parsed(monitor.query, monitor.rule)
        except MonitorError as error:
            log.warning("monitor %s skipped: %s", monitor.name, error)
            continue
        rules[monitor.name] = monitor.rule
    store = get_store()
    tagged = dict.fromkeys(queries, 0)
    for found in store.imported_matching(import_id=import_id, queries=queries, rules=rules):
        for name, ids in found.items():
            if ids:
                store.annotate(
                    trajectory_ids=ids, change=AnnotationChange(add_tags=[f"monitor:{name}"]), user="monitor"
                )
                tagged[name] += len(ids)
    now = timezone.now()
    for monitor in monitors:
        if monitor.name in tagged:
            Monitor.objects.filter(pk=monitor.pk).update(last_run_at=now, last_matched=tagged[monitor.name])
    if any(tagged.values()):
        trajectories_changed.send(sender=Monitor, import_id=None)
    return tagged


@receiver(trajectories_changed)
def after_import(sender, import_id: str | None = None, **kwargs) -> None:
    """An import finished (or stopped): its rows meet the monitors. Never fails the import."""
    if import_id is None or sender is Monitor:
        return
    try:
        found = run(import_id=import_id)
    except Exception:  # a monitor must never lose an import: the rows are stored, the tags can be rerun
        log.exception("monitors of import %s failed; run `manage.py run_monitors --import %s`", import_id, import_id)
        return
    if found:
        log.info("monitors of import %s tagged %s", import_id, found)
