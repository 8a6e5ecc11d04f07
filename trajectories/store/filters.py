"""Building LanceDB filter text safely.

LanceDB filters are SQL text with no parameter binding, so every value is quoted here and column
names come only from allow-lists. Nothing outside this module writes filter text.
"""

from __future__ import annotations

from .schema import ANNOTATION_COLUMNS, TRAJECTORY_COLUMNS

_KNOWN_COLUMNS = frozenset(TRAJECTORY_COLUMNS) | frozenset(ANNOTATION_COLUMNS)


class UnsafeFilterValue(ValueError):
    pass


def quote_string(value: str) -> str:
    """A SQL string literal: single quotes doubled; NUL refused (it truncates C strings)."""
    if not isinstance(value, str):
        raise UnsafeFilterValue(f"expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise UnsafeFilterValue("NUL character in filter value")
    return "'" + value.replace("'", "''") + "'"


def column(name: str) -> str:
    if name not in _KNOWN_COLUMNS:
        raise UnsafeFilterValue(f"unknown column {name!r}")
    return name


def equals(name: str, value: str) -> str:
    return f"{column(name)} = {quote_string(value)}"
