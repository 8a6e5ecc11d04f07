"""Reading sources into parsed JSON values, each with its location, without loading JSONL whole.

A `.jsonl` line holds one trajectory or a `{"trajectories": [...]}` wrapper; a `.json`/`.traj` file
holds one document (an array of trajectories or one object). Gzip is recognised by its magic bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import FieldError, Location

STDIN = "-"
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_DOCUMENT_SUFFIXES = {".json", ".traj"}
_KNOWN_SUFFIXES = {".jsonl", ".ndjson", ".json", ".traj"}


@dataclass(slots=True)
class RawRecord:
    location: Location
    value: Any


@dataclass(slots=True)
class UnreadableRecord:
    location: Location
    error: FieldError


class ByteCounter:
    """Bytes read so far across all sources (compressed bytes for .gz), for progress."""

    def __init__(self) -> None:
        self.done = 0
        self._open: list[BinaryIO] = []
        self._closed_total = 0

    def track(self, raw: BinaryIO) -> None:
        self._open.append(raw)

    def release(self, raw: BinaryIO, size: int) -> None:
        self._open.remove(raw)
        self._closed_total += size

    @property
    def read(self) -> int:
        current = 0
        for raw in self._open:
            with contextlib.suppress(OSError, ValueError):
                current += raw.tell()
        return self._closed_total + current


def expand_paths(paths: list[str]) -> list[str]:
    """Files named, plus every known file below a named directory, in a stable order."""
    files: list[str] = []
    for path in paths:
        if path != STDIN and os.path.isdir(path):
            files.extend(sorted(_files_below(path)))
        else:
            files.append(path)
    return files


def _files_below(directory: str) -> Iterator[str]:
    for root, _dirs, names in os.walk(directory):
        for name in names:
            stem = name[:-3] if name.endswith(".gz") else name
            if Path(stem).suffix in _KNOWN_SUFFIXES:
                yield os.path.join(root, name)


def total_bytes(files: list[str]) -> int | None:
    """Total size for a progress bar; None when stdin makes it unknown."""
    if STDIN in files:
        return None
    return sum(os.path.getsize(path) for path in files if os.path.isfile(path))


def read_sources(
    files: list[str], counter: ByteCounter, *, names: dict[str, str] | None = None
) -> Iterator[RawRecord | UnreadableRecord]:
    """Records of every file in order; `names` gives the name errors and `source` show for a path."""
    names = names or {}
    for path in files:
        if path == STDIN:
            yield from _read_stream(sys.stdin.buffer, "<stdin>", document=None)
            continue
        if not os.path.exists(path):
            yield UnreadableRecord(Location(path, 0), FieldError("file", "no such file"))
            continue
        yield from _read_file(path, counter, names.get(path, path))


def _read_file(path: str, counter: ByteCounter, name: str) -> Iterator[RawRecord | UnreadableRecord]:
    with open(path, "rb") as raw:
        counter.track(raw)
        try:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if compressed else raw
            stem = path[:-3] if path.endswith(".gz") else path
            document = Path(stem).suffix in _DOCUMENT_SUFFIXES
            yield from _read_stream(stream, name, document=document)
        finally:
            counter.release(raw, os.path.getsize(path))


def _read_stream(stream: BinaryIO, name: str, *, document: bool | None) -> Iterator[RawRecord | UnreadableRecord]:
    first = stream.readline()
    if first.startswith(_BOM):
        first = first[len(_BOM) :]
    if document is None:
        # stdin: JSONL unless the first line alone is not a JSON value (a pretty-printed document).
        document = bool(first.strip()) and _parse(first)[1] is not None
    if document:
        yield from _read_document(first + stream.read(), name)
    else:
        yield from _read_lines(first, stream, name)


def _read_document(data: bytes, name: str) -> Iterator[RawRecord | UnreadableRecord]:
    if not data.strip():
        yield UnreadableRecord(Location(name, 0), FieldError("file", "empty file, no records"))
        return
    value, error = _parse(data)
    if error is not None and "after document" in error:
        # Named .json but written as JSON lines: read it line by line instead.
        yield from _read_lines(b"", _Lines(data), name)
        return
    if error is not None:
        yield UnreadableRecord(Location(name, 1), FieldError("json", error))
        return
    if isinstance(value, list) and not _is_message_list(value):
        for index, item in enumerate(value):
            yield RawRecord(Location(name, 1, index), item)
        return
    yield from _records_in(value, Location(name, 1))


def _read_lines(first: bytes, stream, name: str) -> Iterator[RawRecord | UnreadableRecord]:
    lines = itertools.chain([first] if first else [], iter(stream.readline, b""))
    seen_any = False
    for line_number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        seen_any = True
        location = Location(name, line_number)
        value, error = _parse(stripped)
        if error is None:
            yield from _records_in(value, location)
            continue
        if not line.endswith(b"\n"):
            # Only the last line can lack its newline: the writer was cut off mid-record.
            error = f"truncated last line (file ends mid-record): {error}"
        yield UnreadableRecord(location, FieldError("json", error))
    if not seen_any:
        yield UnreadableRecord(Location(name, 0), FieldError("file", "empty file, no records"))


def _records_in(value: Any, location: Location) -> Iterator[RawRecord | UnreadableRecord]:
    if isinstance(value, dict) and "trajectories" in value and "steps" not in value:
        items = value["trajectories"]
        if not isinstance(items, list):
            yield UnreadableRecord(location, FieldError("trajectories", "expected a list"))
            return
        for index, item in enumerate(items):
            yield RawRecord(Location(location.file, location.line, index), item)
        return
    yield RawRecord(location, value)


def _is_message_list(value: list) -> bool:
    """A bare list of chat messages is one trajectory, not a list of trajectories."""
    return bool(value) and all(isinstance(item, dict) and "role" in item for item in value[:3])


def _parse(data: bytes) -> tuple[Any, str | None]:
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as fast_error:
        # The stdlib parser accepts NaN/Infinity, so validation can name the field that holds one.
        try:
            return json.loads(data), None
        except UnicodeDecodeError as error:
            return None, f"not valid UTF-8 (byte {error.start}: {data[error.start : error.start + 1]!r})"
        except (json.JSONDecodeError, RecursionError):
            return None, f"invalid JSON: {fast_error}"


class _Lines:
    """readline() over bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self._lines = iter(data.splitlines(keepends=True))

    def readline(self) -> bytes:
        return next(self._lines, b"")
