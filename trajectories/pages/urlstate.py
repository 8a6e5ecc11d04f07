"""Every list state lives in the URL: helpers that change one parameter and keep the rest."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import QueryDict

from trajectories import fields
from trajectories import query as q

COLUMNS_VAR = "columns"
# Columns of the list page: (key, header, sort field or None), in the catalogue's order.
COLUMNS = tuple((field.name, field.label, field.name if field.sortable else None) for field in fields.COLUMNS)
DEFAULT_COLUMNS = fields.DEFAULT_COLUMNS
PAGE_SIZES = (25, 50, 100, 200, 500)


class UrlState:
    def __init__(self, params: QueryDict) -> None:
        self.params = params.copy()
        self._pairs = [(name, value) for name, values in params.lists() for value in values]

    def url(self, **changes) -> str:
        """'?…' with each given parameter replaced (None removes it); the page resets unless given."""
        dropped = set(changes) | ({q.PAGE_VAR} if q.PAGE_VAR not in changes else set())
        pairs = [(name, value) for name, value in self._pairs if name not in dropped]
        for name, value in changes.items():
            if value is None:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            pairs.extend((name, str(item)) for item in values)
        return "?" + urlencode(pairs)

    def toggled(self, name: str, value: str) -> str:
        """Add `value` to a multi-value filter, or remove it when present."""
        values = self.params.getlist(name)
        values = [item for item in values if item != value] if value in values else [*values, value]
        return self.url(**{name: values or None})

    def without(self, name: str, value: str | None = None) -> str:
        if value is None:
            return self.url(**{name: None})
        return self.url(**{name: [item for item in self.params.getlist(name) if item != value] or None})

    def is_active(self, name: str, value: str) -> bool:
        return value in self.params.getlist(name)

    def columns(self) -> tuple[str, ...]:
        wanted = {key for text in self.params.getlist(COLUMNS_VAR) for key in text.split(",")}
        chosen = tuple(key for key, _, _ in COLUMNS if key in wanted)
        return chosen or DEFAULT_COLUMNS

    def list_params(self) -> str:
        """The query string without display-only parameters, for links that carry the list along."""
        return self.params.urlencode()
