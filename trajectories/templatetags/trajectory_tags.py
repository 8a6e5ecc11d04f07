"""Formatting for trajectory pages. Everything returned is plain text: templates escape it."""

from __future__ import annotations

from django import template

from trajectories.importing.progress import human_bytes
from trajectories.pages.cells import EMPTY, cell_text

register = template.Library()


@register.filter
def cell(row: dict, key: str) -> str:
    return cell_text(row, key)


@register.filter
def get(mapping: dict, key: str):
    return mapping.get(key)


@register.filter(name="human_bytes")
def human_bytes_or_empty(count: int | None) -> str:
    return EMPTY if count is None else human_bytes(count)
