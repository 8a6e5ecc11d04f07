"""Where a record came from and what was wrong with it: `file:line[index]: field: reason`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record was read: file, line (1 for a whole document), and within that document the
    collection it sat in (`path`, e.g. "simulations") and its position there."""

    file: str
    line: int
    index: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        inside = f":{self.path}" if self.path else ""
        suffix = f"[{self.index}]" if self.index is not None else ""
        return f"{self.file}:{self.line}{inside}{suffix}"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str


class RecordError(Exception):
    """A record that cannot be imported; carries every field problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors

    @classmethod
    def single(cls, field: str, reason: str) -> RecordError:
        return cls([FieldError(field, reason)])


@dataclass(frozen=True, slots=True)
class Rejection:
    location: Location
    errors: tuple[FieldError, ...]

    def lines(self) -> list[str]:
        return [f"{self.location}: {error.field}: {error.reason}" for error in self.errors]


class ErrorSink:
    """Counts every rejection and warning, keeps the first few, and writes all to a report file.

    Thread-safe: the writer thread reports duplicate-id rejections while the reader reports the rest.
    """

    def __init__(self, *, keep: int = 20, report_path: Path | None = None) -> None:
        self.keep = keep
        self.rejected = 0
        self.warnings = 0
        self.first: list[str] = []
        self.first_warnings: list[str] = []
        self._lock = threading.Lock()
        self._report: TextIO | None = (
            open(report_path, "w", encoding="utf-8") if report_path else None  # noqa: SIM115
        )

    def reject(self, location: Location, errors: list[FieldError] | tuple[FieldError, ...]) -> None:
        lines = Rejection(location, tuple(errors)).lines()
        with self._lock:
            self.rejected += 1
            self._record(lines, self.first)

    def warn(self, location: Location, field: str, reason: str) -> None:
        lines = [f"{location}: {field}: {reason} (warning)"]
        with self._lock:
            self.warnings += 1
            self._record(lines, self.first_warnings)

    def _record(self, lines: list[str], kept: list[str]) -> None:
        if len(kept) < self.keep:
            kept.extend(lines[: self.keep - len(kept)])
        if self._report is not None:
            self._report.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if self._report is not None:
            self._report.close()
            self._report = None


def type_name(value: Any) -> str:
    """How a JSON value's type reads in an error message: "got a string"."""
    return {
        str: "a string", bool: "a boolean", int: "an integer", float: "a number",
        list: "a list", dict: "an object", type(None): "null",
    }.get(type(value), type(value).__name__)  # fmt: skip
