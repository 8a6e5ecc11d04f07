"""Writes that pages, the API and commands share: each changes the store, then signals once."""

from __future__ import annotations

from trajectories.query import TrajectoryQuery
from trajectories.signals import trajectories_changed
from trajectories.store import AnnotationChange, get_store


def annotate(*, trajectory_ids: list[str], change: AnnotationChange, user) -> int:
    count = get_store().annotate(trajectory_ids=trajectory_ids, change=change, user=_name(user))
    if count:
        trajectories_changed.send(sender=AnnotationChange, trajectory_ids=trajectory_ids, annotations_only=True)
    return count


def delete(*, trajectory_ids: list[str]) -> int:
    count = get_store().delete(trajectory_ids=trajectory_ids)
    if count:
        trajectories_changed.send(sender=TrajectoryQuery, trajectory_ids=trajectory_ids)
    return count


def _name(user) -> str | None:
    return getattr(user, "get_username", lambda: None)() if user is not None else None
