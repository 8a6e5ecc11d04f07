"""List cells as text, and whole table rows as escaped HTML built in Python.

A 50-row list renders ~900 values; Django's template engine spent more time on them than the query
took, so rows are assembled here, every value passing through `escape`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from trajectories import fields
from trajectories.fields import Display
from trajectories.links import id_path

EMPTY = "—"


def cell_text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None or value == []:
        return EMPTY
    field = fields.BY_NAME.get(key)
    return _FORMATS[field.display if field else Display.TEXT](value)


_FORMATS = {
    Display.TEXT: str,
    Display.NUMBER: str,
    Display.REWARD: lambda value: f"{value:.4g}",
    Display.SECONDS: lambda value: f"{value:,.1f}",
    Display.YES_NO: lambda value: "yes" if value else "no",
    Display.STAR: lambda value: "★" if value else "",
    Display.DATETIME: lambda value: value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else str(value),
    Display.LIST: lambda value: ", ".join(value) if isinstance(value, list) else str(value),
}


def _tone(key: str, value) -> str:
    """A colour class for rewards (five steps over 0-1) and success: scanning a page for good and bad."""
    if value is None:
        return ""
    field = fields.BY_NAME.get(key)
    if field is not None and field.display is Display.REWARD and isinstance(value, int | float) and value == value:
        return f" tone-{min(4, int(min(max(value, 0.0), 1.0) * 5))}"
    if key == "is_success":
        return " tone-yes" if value else " tone-no"
    return ""


def table_rows(rows: list[dict[str, Any]], columns: tuple[str, ...], list_params: str) -> list[SafeString]:
    detail_prefix = reverse("trajectories:list")
    suffix = f"?{list_params}" if list_params else ""
    rendered = []
    for row in rows:
        trajectory_id = row["trajectory_id"]
        parts = [
            f'<tr><td class="action-checkbox"><input type="checkbox" name="ids" value="{escape(trajectory_id)}"'
            f' class="action-select" aria-label="select {escape(trajectory_id)}"></td>'
        ]
        for key in columns:
            if key == "trajectory_id":
                href = f"{detail_prefix}{id_path(trajectory_id)}/{suffix}"
                shown = trajectory_id if len(trajectory_id) <= 48 else trajectory_id[:47] + "…"
                parts.append(f'<th class="field-trajectory_id"><a href="{escape(href)}">{escape(shown)}</a></th>')
            else:
                text = escape(cell_text(row, key))
                parts.append(f'<td class="field-{key}{_tone(key, row.get(key))}" title="{text}">{text}</td>')
        parts.append("</tr>")
        if row.get("snippet") is not None:
            parts.append(_snippet_row(row["snippet"], len(columns)))
        rendered.append(mark_safe("".join(parts)))
    return rendered


def _snippet_row(snippet, columns: int) -> str:
    """Where a content search matched, under the row: the text escaped, the matches marked."""
    pieces = [f"<mark>{escape(text)}</mark>" if match else escape(text) for text, match in snippet.parts]
    before = "… " if snippet.clipped_start else ""
    after = " …" if snippet.clipped_end else ""
    return (
        f'<tr class="snippet-row"><td></td><td colspan="{columns}" class="snippet">'
        f"{before}{''.join(pieces)}{after}</td></tr>"
    )
