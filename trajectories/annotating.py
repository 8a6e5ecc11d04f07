"""User input → an annotation change: one set of limits and messages for the API and the pages.

The API hands over its JSON (types already checked by DRF), the detail form what the user changed,
a bulk action its one value; all three come here, and a value over a limit is an error naming the
field (shown next to it on a page, a 400 in the API), never cut short silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajectories.store import UNSET, AnnotationChange

TEXT_LIMITS = {"category": 200, "root_cause": 10_000, "notes": 10_000}
MAX_TAG_LENGTH = 100
MAX_TAGS = 200


class ChangeError(ValueError):
    """What is wrong, per field: {"category": ["at most 200 characters (got 250)"], ...}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name}: {' '.join(messages)}" for name, messages in errors.items()))
        self.errors = errors


def change_from(data: Mapping[str, Any]) -> AnnotationChange:
    """The change `data` asks for: absent fields are kept, None (or "") clears a text field, `tags`
    replaces every tag while `add_tags` / `remove_tags` compose with edits made elsewhere."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name in ("is_bookmarked", "is_success"):
        if name in data:
            values[name] = data[name]
    for name, limit in TEXT_LIMITS.items():
        if name in data:
            text = (data[name] or "").strip()
            if len(text) > limit:
                errors.setdefault(name, []).append(f"at most {limit:,} characters (got {len(text):,})")
            values[name] = text or None
    for name in ("tags", "add_tags"):
        if name in data:
            values[name] = tuple(dict.fromkeys(_tags(data[name], name, errors)))
    if "remove_tags" in data:
        # A tag is removed as it is stored: an imported tag may break these rules, and must stay removable.
        values["remove_tags"] = tuple(dict.fromkeys(tag for tag in data["remove_tags"] if tag))
    if errors:
        raise ChangeError(errors)
    return AnnotationChange(
        **{name: values[name] for name in ("is_bookmarked", "is_success", *TEXT_LIMITS) if name in values},
        tags=values.get("tags", UNSET),
        add_tags=values.get("add_tags", ()),
        remove_tags=values.get("remove_tags", ()),
    )


def _tags(tags, name: str, errors: dict[str, list[str]]) -> list[str]:
    if len(tags) > MAX_TAGS:
        errors.setdefault(name, []).append(f"at most {MAX_TAGS} tags (got {len(tags)})")
    kept = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            errors.setdefault(name, []).append("a tag cannot be empty")
        elif len(tag) > MAX_TAG_LENGTH:
            errors.setdefault(name, []).append(f"a tag has at most {MAX_TAG_LENGTH} characters: {tag[:40]!r}…")
        elif not tag.isprintable():
            errors.setdefault(name, []).append("a tag is one line of printable text (no line breaks or tabs)")
        else:
            kept.append(tag)
    return kept


def tag_lines(text: str) -> list[str]:
    """Tags typed one per line (the detail form)."""
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
