"""Changes to the mutable side of trajectories (bookmark, analysis, tags, notes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> str:
        # One sentinel per process, also after a trip through pickle (import workers send changes).
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class AnnotationChange:
    """Fields left UNSET are kept; None clears a field. Tags can be replaced, added or removed."""

    is_bookmarked: Any = UNSET
    is_success: Any = UNSET
    category: Any = UNSET
    root_cause: Any = UNSET
    notes: Any = UNSET
    tags: Any = UNSET
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        scalars = (self.is_bookmarked, self.is_success, self.category, self.root_cause, self.notes, self.tags)
        return all(value is UNSET for value in scalars) and not self.add_tags and not self.remove_tags

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        changed = dict(row)
        for name in ("is_bookmarked", "is_success", "category", "root_cause", "notes"):
            value = getattr(self, name)
            if value is not UNSET:
                changed[name] = value
        tags = list(row.get("tags") or []) if self.tags is UNSET else list(self.tags)
        tags.extend(tag for tag in self.add_tags if tag not in tags)
        changed["tags"] = [tag for tag in tags if tag not in self.remove_tags]
        return changed


def blank_annotation(trajectory_id: str) -> dict[str, Any]:
    return {
        "trajectory_id": trajectory_id,
        "is_bookmarked": False,
        "is_success": None,
        "category": None,
        "root_cause": None,
        "tags": [],
        "notes": None,
        "updated_at": None,
        "updated_by": None,
    }
