"""The columns derived from a trajectory's steps for the store's own use, computed in one place for
the importer and for the backfill of stores made before a column existed."""

from __future__ import annotations

from typing import Any

import orjson

from trajectories.content import searchable
from trajectories.embedding import embed

DERIVED = ("answered", "search_text", "embedding")


def derived_columns(steps: list[Any] | str, final_answer: str | None, tools: list[str] | None = None) -> dict:
    """`answered`, `search_text` and `embedding` of one trajectory (steps as a list or stored JSON)."""
    if isinstance(steps, str):
        steps = orjson.loads(steps)
    if tools is None:
        tools = list(dict.fromkeys(
            call["name"] for step in steps if type(step) is dict for call in step.get("tool_calls") or ()
            if type(call) is dict and type(call.get("name")) is str
        ))  # fmt: skip
    return from_text(tools, searchable(steps, final_answer), final_answer)


def from_text(tools: list[str], search_text: str, final_answer: str | None) -> dict:
    """The same from the stored search text (no steps to parse): what a backfill reads when only the
    embedding or the answered flag is missing."""
    return {
        "answered": bool(final_answer and final_answer.strip()),
        "search_text": search_text,
        "embedding": embed(tools, search_text),
    }
