"""Formatting for trajectory pages. Everything returned is plain text: templates escape it."""

from __future__ import annotations

from django import template

from trajectories.pages.cells import EMPTY, cell_text

register = template.Library()


@register.filter
def cell(row: dict, key: str) -> str:
    return cell_text(row, key)


@register.filter
def get(mapping: dict, key: str):
    return mapping.get(key)


@register.filter
def human_bytes(count: int | None) -> str:
    if count is None:
        return EMPTY
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
