"""Formatting for trajectory pages. Everything returned is plain text: templates escape it."""

from __future__ import annotations

from datetime import datetime

from django import template

register = template.Library()

_EMPTY = "—"


@register.filter
def cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None or value == []:
        return _EMPTY
    if key in {"reward", "toolcall_reward", "res_reward"}:
        return f"{value:.4g}"
    if key == "exec_time":
        return f"{value:,.1f}"
    if key == "is_success":
        return "yes" if value else "no"
    if key == "is_bookmarked":
        return "★" if value else ""
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


@register.filter
def get(mapping: dict, key: str):
    return mapping.get(key)


@register.filter
def human_bytes(count: int | None) -> str:
    if count is None:
        return _EMPTY
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
