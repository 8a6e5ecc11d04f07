"""Reading sources into parsed JSON documents, each with its location, in bounded memory.

A `.jsonl` line is one document, a `.json`/`.traj` file is one document; which records a document holds
(itself, a list of them, a wrapper, results nested at any depth) is `discovery`'s question, asked by
the pipeline. Gzip is recognised by its magic bytes.
Every source is hostile until read: a line or document past its limit is one error and the reading
goes on; only regular files are read below a directory (a FIFO hangs, `/dev/zero` never ends); text
the store cannot hold (lone UTF-16 surrogates from split tokens) is repaired with U+FFFD and a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import gzip
import io
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from .errors import FieldError, Location

STDIN = "-"
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_DOCUMENT_SUFFIXES = {".json", ".traj"}
_KNOWN_SUFFIXES = {".jsonl", ".ndjson", ".json", ".traj", ".parquet"}
_PARQUET_MAGIC = b"PAR1"
# JSONL is read in blocks of whole lines this large (one unit of work for `chunks`).
LINES_BLOCK_BYTES = 4 * 1024 * 1024
# Parquet rows are read this many at a time (a row group may hold millions).
_PARQUET_BATCH_ROWS = 1000
_SKIP_CHUNK = 1024 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
# orjson reads integers past 64 bits as floats; the fallback parser must not hand the store bigger ones.
_INT_RANGE = (-(2**63), 2**64)


@dataclass(frozen=True, slots=True)
class Limits:
    """Largest JSONL line and `.json` document read into memory (bytes), and most JSON values either
    may hold: parsed, each value is a Python object of 50-500 bytes, so a 40 MB line of `{},{},...`
    would take gigabytes where a real 40 MB record takes a hundred megabytes."""

    max_line_bytes: int = 256 * 1024 * 1024
    max_document_bytes: int = 256 * 1024 * 1024
    max_values: int = 2_000_000


@dataclass(slots=True)
class RawRecord:
    """One parsed document (or, once discovered, one record in it)."""

    location: Location
    value: Any
    # Text repaired on the way in, by its path in `value`: warnings, not rejections.
    repairs: tuple[tuple[str, FieldError], ...] = ()
    # A record streamed out of a large document: that document's context, and (on its first record)
    # where the records were found in it.
    context: dict[str, Any] | None = None
    report: tuple[str, ...] = ()


@dataclass(slots=True)
class UnreadableRecord:
    location: Location
    error: FieldError


@dataclass(slots=True)
class RawText:
    """JSONL lines (a block of whole lines, the first numbered `location.line`) or a whole `.json`
    document, as read and not yet parsed: splitting and parsing are the costly part, so they happen
    where the records are processed (a worker process, on large imports)."""

    location: Location
    data: bytes
    document: bool = False


Unit = RawText | RawRecord | UnreadableRecord


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


def expand_paths(paths: list[str], *, skipped: list[str] | None = None) -> list[str]:
    """Files named, plus every known regular file below a named directory, in a stable order.

    Below a directory, FIFOs, sockets, devices and links to them are left out (added to `skipped`):
    a FIFO would block the import, a link to /dev/zero would never end.
    """
    files: list[str] = []
    for path in paths:
        if path != STDIN and os.path.isdir(path):
            for found in sorted(_files_below(path)):
                if _is_regular(found):
                    files.append(found)
                elif skipped is not None:
                    skipped.append(found)
        else:
            files.append(path)
    return files


def _files_below(directory: str) -> Iterator[str]:
    for root, _dirs, names in os.walk(directory):
        for name in names:
            stem = name[:-3] if name.endswith(".gz") else name
            if Path(stem).suffix in _KNOWN_SUFFIXES:
                yield os.path.join(root, name)


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def total_bytes(files: list[str]) -> int | None:
    """Total size for a progress bar; None when stdin makes it unknown."""
    if STDIN in files:
        return None
    return sum(os.path.getsize(path) for path in files if os.path.isfile(path))


def read_sources(
    files: list[str], counter: ByteCounter, *, names: dict[str, str] | None = None, limits: Limits = Limits()
) -> Iterator[RawRecord | UnreadableRecord]:
    """The parsed documents of every file in order; `names` gives the name errors and `source` show."""
    for unit in read_units(files, counter, names=names, limits=limits):
        yield from parsed(unit, limits)


def read_units(
    files: list[str], counter: ByteCounter, *, names: dict[str, str] | None = None, limits: Limits = Limits()
) -> Iterator[Unit]:
    """What every file holds, in order, read but not yet parsed (see `parsed`)."""
    names = names or {}
    for path in files:
        if path == STDIN:
            yield from _read_stream(sys.stdin.buffer, "<stdin>", document=None, limits=limits)
            continue
        name = names.get(path, path)
        problem = _unreadable(path)
        if problem is not None:
            yield UnreadableRecord(Location(name, 0), FieldError("file", problem))
            continue
        yield from _read_file(path, counter, name, limits)


def _unreadable(path: str) -> str | None:
    """Why a named path cannot be read; a FIFO is fine when named (`<(zcat dump.gz)`), a device is not."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"cannot read: {error.strerror}"
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    return "not a regular file (a device or socket); not read"


def _read_file(path: str, counter: ByteCounter, name: str, limits: Limits) -> Iterator[Unit]:
    if path.endswith(".parquet"):
        yield from _read_parquet(path, counter, name)
        return
    stem = path[:-3] if path.endswith(".gz") else path
    document = Path(stem).suffix in _DOCUMENT_SUFFIXES
    with open(path, "rb") as raw:
        counter.track(raw)
        try:
            # peek, not read + seek: a FIFO cannot seek back.
            compressed = raw.peek(2)[:2] == _GZIP_MAGIC
            streamable = document and _streamable(path)
            if streamable and not compressed and os.path.getsize(path) > limits.max_document_bytes:
                # Too large to read whole: streamed, a record at a time.
                yield from _read_streamed(path, raw, compressed, name, limits)
                return
            # A compressed document is read whole until it proves too large; then it is streamed.
            restream = (lambda: _read_streamed(path, raw, compressed, name, limits)) if streamable else None
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if compressed else raw
            yield from _read_stream(stream, name, document=document, limits=limits, restream=restream)
        except (zlib.error, gzip.BadGzipFile, EOFError) as error:
            yield UnreadableRecord(Location(name, 0), FieldError("file", f"corrupt compressed data: {error}"))
        finally:
            counter.release(raw, os.path.getsize(path))


def _streamable(path: str) -> bool:
    """A regular file can be read twice (a FIFO cannot)."""
    return _is_regular(path)


def _read_streamed(path: str, raw: BinaryIO, compressed: bool, name: str, limits: Limits):
    import ijson

    from .streaming import stream_records

    def opener():
        # The outer handle is the one progress follows: the second pass re-reads through it.
        raw.seek(0)
        return contextlib.nullcontext(gzip.GzipFile(fileobj=raw) if compressed else raw)

    found = last = None
    try:
        for item in stream_records(opener, name=name, max_values=limits.max_values):
            if found is None:
                found = item
                if item.one_record:
                    reason = (
                        f"one record larger than the {limits.max_document_bytes:,}-byte document limit; not read "
                        "(raise the limit: TRAJSITE_IMPORT_MAX_DOCUMENT_BYTES, --max-document-bytes on the "
                        "command line)"
                    )
                    yield UnreadableRecord(Location(name, 0), FieldError("file", reason))
                elif not item.lists:
                    reason = "a document too large to read whole, with no list of records found in it"
                    yield UnreadableRecord(Location(name, 0), FieldError("file", reason))
                continue
            location, value = item
            last = location
            if isinstance(value, FieldError):
                yield UnreadableRecord(location, value)
            else:
                report = tuple(found.report) if location.index == 0 else ()
                yield RawRecord(location, value, context=found.context, report=report)
    except (ijson.JSONError, ValueError, OSError, EOFError, zlib.error) as error:
        # A stream cannot go past what it cannot parse (NaN, a cut-off file): say where it stopped.
        where = f"after {last.path or '(document)'}[{last.index}]" if last is not None else "before any record"
        reason = f"invalid JSON {where}; the rest of the document was not read (fix it and import again): {error}"
        yield UnreadableRecord(Location(name, 1), FieldError("json", reason))


def _read_parquet(path: str, counter: ByteCounter, name: str) -> Iterator[RawRecord | UnreadableRecord]:
    """Each row of a Parquet file (how several RL frameworks and dataset tools dump rollouts) as one
    document, read a thousand rows at a time; `line` is the row number (from 1)."""
    import pyarrow.parquet as pq

    with open(path, "rb") as raw:
        counter.track(raw)
        try:
            if raw.read(4) != _PARQUET_MAGIC:
                yield UnreadableRecord(Location(name, 0), FieldError("file", "not a Parquet file (no PAR1 header)"))
                return
            raw.seek(0)
            try:
                reader = pq.ParquetFile(raw)
                row = 0
                for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                    for value in batch.to_pylist():
                        row += 1
                        yield RawRecord(Location(name, row), _plain(value))
            except (OSError, ValueError, pa.ArrowException) as error:
                yield UnreadableRecord(Location(name, 0), FieldError("file", f"unreadable Parquet: {error}"))
        finally:
            counter.release(raw, os.path.getsize(path))


def _plain(value: Any) -> Any:
    """A Parquet value as JSON would hold it: times as ISO text, bytes as text, decimals as floats."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, decimal.Decimal | datetime.timedelta):
        return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    return value


def _read_stream(
    stream: BinaryIO, name: str, *, document: bool | None, limits: Limits, restream=None
) -> Iterator[Unit]:
    first = stream.readline(limits.max_line_bytes + 1)
    if first.startswith(_BOM):
        first = first[len(_BOM) :]
    if document is None:
        # stdin: JSONL unless the first line alone is not a JSON value (a pretty-printed document).
        document = bool(first.strip()) and len(first) <= limits.max_line_bytes and _parse(first)[1] is not None
    if document:
        yield from _read_document(first, stream, name, limits, restream=restream)
    else:
        yield from _read_lines(first, stream, name, limits)


def _read_document(first: bytes, stream: BinaryIO, name: str, limits: Limits, *, restream=None) -> Iterator[Unit]:
    data = first + stream.read(max(limits.max_document_bytes + 1 - len(first), 0))
    if restream is not None and (len(data) > limits.max_document_bytes or _too_many_values(data, limits)):
        del data
        yield from restream()
        return
    if len(data) > limits.max_document_bytes:
        reason = (
            f"document larger than {limits.max_document_bytes:,} bytes; not read "
            "(give it as a file, which is streamed, or as JSON lines; or raise the document limit: "
            "TRAJSITE_IMPORT_MAX_DOCUMENT_BYTES, --max-document-bytes on the command line)"
        )
        yield UnreadableRecord(Location(name, 0), FieldError("file", reason))
        return
    if not data.strip():
        yield UnreadableRecord(Location(name, 0), FieldError("file", "empty file, no records"))
        return
    if (crowded := _too_many_values(data, limits)) is not None:
        yield UnreadableRecord(Location(name, 0), FieldError("file", crowded))
        return
    yield RawText(Location(name, 1), data, document=True)


def _read_lines(first: bytes, stream, name: str, limits: Limits) -> Iterator[RawText | UnreadableRecord]:
    """Blocks of whole lines, read a block at a time: splitting them is left to `parsed`. Only a line
    longer than the limit is cut here, before it is held in memory whole."""
    seen_any = False
    line_number = 1  # of the first line in `partial`
    if first.endswith(b"\n"):  # a whole first line, read to see what the stream holds
        seen_any = bool(first.strip())
        yield RawText(Location(name, 1), first)
        line_number, first = 2, b""
    partial, size = [first] if first else [], len(first)  # the line in progress, in pieces
    while data := stream.read(LINES_BLOCK_BYTES):
        newline = data.rfind(b"\n")
        if newline < 0:
            partial.append(data)
            size += len(data)
            if size > limits.max_line_bytes:
                skipped = size + _skip_rest_of_line(stream)
                yield UnreadableRecord(Location(name, line_number), FieldError("line", _too_long(skipped, limits)))
                seen_any = True
                line_number += 1
                partial, size = [], 0
            continue
        block = b"".join([*partial, data[: newline + 1]])
        partial, size = [data[newline + 1 :]], len(data) - newline - 1
        seen_any = seen_any or bool(block.strip())
        yield RawText(Location(name, line_number), block)
        line_number += block.count(b"\n")
    if size:
        block = b"".join(partial)
        seen_any = seen_any or bool(block.strip())
        yield RawText(Location(name, line_number), block)
    if not seen_any:
        yield UnreadableRecord(Location(name, 0), FieldError("file", "empty file, no records"))


def parsed(unit: Unit, limits: Limits) -> Iterator[RawRecord | UnreadableRecord]:
    """A unit as parsed documents: a line or document parsed (repaired where the store needs it), a
    `.json` file written as JSON lines read line by line; what is parsed already passes through."""
    if not isinstance(unit, RawText):
        yield unit
    elif not unit.document:
        yield from _parsed_lines(unit, limits)
    else:
        value, error, repairs = _parse_repaired(unit.data)
        if error is not None and "after document" in error:
            # Named .json but written as JSON lines: read it line by line instead.
            for lines in _read_lines(b"", io.BytesIO(unit.data), unit.location.file, limits):
                yield from parsed(lines, limits)
        elif error is not None:
            yield UnreadableRecord(unit.location, FieldError("json", error))
        else:
            yield RawRecord(unit.location, value, tuple(repairs))


def _parsed_lines(unit: RawText, limits: Limits) -> Iterator[RawRecord | UnreadableRecord]:
    name, first = unit.location.file, unit.location.line
    lines = unit.data.split(b"\n")
    last = len(lines) - 1  # a block ends with a newline, so its last piece is empty unless the file was cut
    for offset, line in enumerate(lines):
        # JSON parsers skip surrounding white space: only a short line is copied to see if it is blank.
        if len(line) < 256 and not line.strip():
            continue
        yield _parsed_line(Location(name, first + offset), line, limits, truncated=offset == last)


def _parsed_line(location: Location, line: bytes, limits: Limits, *, truncated: bool) -> RawRecord | UnreadableRecord:
    if len(line) > limits.max_line_bytes:
        return UnreadableRecord(location, FieldError("line", _too_long(len(line) + 1, limits)))
    if (crowded := _too_many_values(line, limits)) is not None:
        return UnreadableRecord(location, FieldError("line", crowded))
    value, error, repairs = _parse_repaired(line)
    if error is None:
        return RawRecord(location, value, tuple(repairs))
    if truncated:
        # Only the last line can lack its newline: the writer was cut off mid-record.
        error = f"truncated last line (file ends mid-record): {error}"
    return UnreadableRecord(location, FieldError("json", error))


def _skip_rest_of_line(stream) -> int:
    """Read past the rest of an oversized line, a chunk at a time; returns the bytes skipped."""
    skipped = 0
    while chunk := stream.readline(_SKIP_CHUNK):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _too_many_values(data: bytes, limits: Limits) -> str | None:
    """Why `data` is not parsed, when it holds more JSON values than the limit (counted by their
    separators, at memchr speed, before anything is built)."""
    if (len(data) + 1) // 2 <= limits.max_values:
        return None  # a value takes two bytes ("0," or "[]") but the last: too short to hold too many
    values = data.count(b",") + data.count(b"{") + data.count(b"[") + 1
    if values <= limits.max_values:
        return None
    return (
        f"about {values:,} JSON values, more than the {limits.max_values:,}-value limit; not parsed "
        "(if it is a real record, raise the limit: TRAJSITE_IMPORT_MAX_JSON_VALUES, --max-json-values on the "
        "command line)"
    )


def _too_long(size: int, limits: Limits) -> str:
    return (
        f"line of {size:,} bytes is longer than the {limits.max_line_bytes:,}-byte limit; skipped "
        "(if it is a real record, raise the limit: TRAJSITE_IMPORT_MAX_LINE_BYTES, --max-line-bytes on the "
        "command line)"
    )


def _parse(data: bytes) -> tuple[Any, str | None]:
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as fast_error:
        # The stdlib parser accepts NaN/Infinity (validation names the field holding one) and lone
        # surrogates (repaired below), both of which orjson refuses.
        try:
            return json.loads(data), None
        except UnicodeDecodeError as error:
            return None, f"not valid UTF-8 (byte {error.start}: {data[error.start : error.start + 1]!r})"
        except (json.JSONDecodeError, RecursionError):
            return None, f"invalid JSON: {fast_error}"


def _parse_repaired(data: bytes) -> tuple[Any, str | None, list[tuple[str, FieldError]]]:
    """Like `_parse`, plus the repairs made: (path, warning) for each string with a lone surrogate."""
    try:
        return orjson.loads(data), None, []
    except orjson.JSONDecodeError:
        value, error = _parse(data)
    if error is not None:
        return None, error, []
    repairs: list[tuple[str, FieldError]] = []
    return _repaired(value, "", repairs), None, repairs


def _repaired(value: Any, path: str, repairs: list[tuple[str, FieldError]]) -> Any:
    """The value with lone surrogates replaced by U+FFFD and integers past 64 bits made floats."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        repairs.append((path, FieldError(path or "record", "invalid unicode (lone surrogate) replaced with U+FFFD")))
        return _SURROGATE.sub(_REPLACEMENT, value)
    if isinstance(value, list):
        return [_repaired(item, f"{path}[{index}]", repairs) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {
            _repaired(key, f"{path}.{key}" if path else str(key), repairs): _repaired(
                item, f"{path}.{key}" if path else str(key), repairs
            )
            for key, item in value.items()
        }
    if type(value) is int and not _INT_RANGE[0] <= value < _INT_RANGE[1]:
        return float(value)
    return value


def repairs_within(repairs: tuple[tuple[str, FieldError], ...], head: str) -> tuple[FieldError, ...]:
    """The repairs inside the value at path `head` ("" for the whole document), named relative to it."""
    found = []
    for path, error in repairs:
        if not head or path == head or path.startswith(head + ".") or path.startswith(head + "["):
            inner = path[len(head) :].lstrip(".") or "record"
            found.append(FieldError(inner, error.reason))
    return tuple(found)
