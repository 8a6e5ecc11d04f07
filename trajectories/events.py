"""Structured log lines: one JSON object per event (an import's end, a slow request), so a log
pipeline can count and chart them without parsing prose."""

from __future__ import annotations

import logging

import orjson

log = logging.getLogger("trajsite.events")


def log_event(event: str, **fields) -> None:
    """Log `{"event": event, **fields}` as one JSON line at INFO (WARNING with `warning=True`)."""
    level = logging.WARNING if fields.pop("warning", False) else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, orjson.dumps({"event": event, **fields}, default=str).decode())
