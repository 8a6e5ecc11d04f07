"""Trajectories out as datasets: canonical JSONL (re-imports as it was), SFT chat, preference pairs,
Parquet and CSV. Every format is a generator of byte chunks over records read in batches, so an
export of a million rows streams and never holds the set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from django.http import StreamingHttpResponse
from django.utils import timezone

from trajectories import fields, reads
from trajectories import query as q
from trajectories.query import TrajectoryQuery


def to_canonical(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record (with steps and annotations) as one canonical trajectory object."""
    canonical = _canonical(record)
    steps = record["steps"]
    canonical["steps"] = orjson.loads(steps) if isinstance(steps, str | bytes) else steps
    return canonical


_EXPORTED = fields.EXPORTED


def _canonical(record: dict[str, Any], *, steps: Any = None, iso_dates: bool = True) -> dict[str, Any]:
    """The canonical object of a record; `iso_dates=False` leaves `created_at` a datetime for orjson,
    which writes the same ISO-8601 text itself, faster (the JSONL export)."""
    get = record.get
    metadata = orjson.loads(record["metadata"]) if get("metadata") else None
    canonical: dict[str, Any] = {name: get(name) for name in _EXPORTED}
    canonical["steps"] = steps
    analysis = {"is_success": get("is_success"), "category": get("category"), "root_cause": get("root_cause")}
    if metadata and isinstance(extra := metadata.pop("analysis", None), dict):
        analysis.update(extra)
    canonical["analysis"] = analysis
    canonical["is_bookmarked"] = bool(get("is_bookmarked"))
    canonical["tags"] = list(get("tags") or ())
    if get("notes"):
        canonical["notes"] = record["notes"]
    created = get("created_at")
    canonical["created_at"] = created.isoformat() if iso_dates and isinstance(created, datetime) else created
    if metadata:
        for key, value in metadata.items():
            canonical.setdefault(key, value)
    return canonical


def jsonl_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Canonical JSONL. The stored steps are JSON already: written as they are, not parsed again."""
    for record in records:
        steps = record["steps"]
        raw = orjson.Fragment(steps if isinstance(steps, bytes | str) else orjson.dumps(steps))
        yield orjson.dumps(_canonical(record, steps=raw, iso_dates=False), option=orjson.OPT_APPEND_NEWLINE)


# --- SFT chat ---------------------------------------------------------------------------------


def chat_messages(steps: list[Any]) -> list[dict[str, Any]]:
    """Steps as OpenAI chat messages: tool calls as `{"type": "function", "function": {name,
    arguments as JSON text}}`, results as `role: tool` with their call's id, text content as text."""
    messages = []
    for step in steps:
        if type(step) is not dict:
            continue
        role = step.get("role") if type(step.get("role")) is str else "user"
        message: dict[str, Any] = {"role": role, "content": _text_content(step.get("content"))}
        calls = [
            _openai_call(call, index) for index, call in enumerate(step.get("tool_calls") or []) if type(call) is dict
        ]
        if calls:
            message["tool_calls"] = calls
        if role == "tool":
            message["tool_call_id"] = step.get("tool_call_id")
            if type(step.get("name")) is str:
                message["name"] = step["name"]
        messages.append(message)
    return messages


def _openai_call(call: dict, index: int) -> dict[str, Any]:
    arguments = call.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {"id": call.get("id") or f"call_{index}", "type": "function",
            "function": {"name": call.get("name"), "arguments": arguments}}  # fmt: skip


def _text_content(content: Any) -> str | None:
    if content is None or type(content) is str:
        return content
    if type(content) is list:
        texts = [part.get("text") for part in content if type(part) is dict and type(part.get("text")) is str]
        return "\n".join(texts) if texts else orjson.dumps(content).decode()
    return orjson.dumps(content).decode()


def sft_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield orjson.dumps({"messages": chat_messages(_steps(record))}) + b"\n"


def _steps(record: dict[str, Any]) -> list[Any]:
    steps = record["steps"]
    return orjson.loads(steps) if isinstance(steps, str | bytes) else steps


# --- preference pairs -------------------------------------------------------------------------


def split_prompt(messages: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(the prompt: every message before the first assistant message, the completion: the rest)."""
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            return messages[:index], messages[index:]
    return messages, []


def pair_lines(pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> Iterator[bytes]:
    """One line per GRPO group: its best sample chosen, its worst rejected (TRL's conversational
    preference format), with the shared prompt taken from the chosen sample."""
    for worst, best in pairs:
        prompt, chosen = split_prompt(chat_messages(_steps(best)))
        _, rejected = split_prompt(chat_messages(_steps(worst)))
        yield (
            orjson.dumps(
                {
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "chosen_reward": best.get("reward"),
                    "rejected_reward": worst.get("reward"),
                    "data_id": best.get("data_id"),
                    "training_id": best.get("training_id"),
                    "iteration_id": best.get("iteration_id"),
                    "chosen_id": best["trajectory_id"],
                    "rejected_id": worst["trajectory_id"],
                }
            )
            + b"\n"
        )


# --- Parquet and CSV --------------------------------------------------------------------------

_TABLE_FIELDS = tuple(
    field for field in fields.FIELDS if not field.internal and field.name not in ("updated_at", "updated_by")
)
PARQUET_SCHEMA = pa.schema([field.arrow_field().with_nullable(True) for field in _TABLE_FIELDS])
_PARQUET_ROWS = 2_000


class _Sink(io.RawIOBase):
    """What ParquetWriter writes into: the bytes are handed on as they come."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.pending += data
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out, self.pending = bytes(self.pending), bytearray()
        return out


def parquet_chunks(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The stored columns (steps and metadata as JSON text), a row group per 2,000 records."""
    sink = _Sink()
    writer = pq.ParquetWriter(sink, PARQUET_SCHEMA, compression="zstd")
    batch: list[dict] = []
    for record in records:
        batch.append(record)
        if len(batch) >= _PARQUET_ROWS:
            writer.write_table(_parquet_table(batch))
            batch = []
            yield sink.take()
    if batch:
        writer.write_table(_parquet_table(batch))
    writer.close()
    yield sink.take()


def _parquet_table(records: list[dict]) -> pa.Table:
    columns = {field.name: [record.get(field.name) for record in records] for field in _TABLE_FIELDS}
    columns["steps"] = [steps.decode() if isinstance(steps, bytes) else steps for steps in columns["steps"]]
    return pa.Table.from_pydict(columns, schema=PARQUET_SCHEMA)


CSV_FIELDS = (*(field.name for field in fields.SUMMARY), "final_answer")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell; text a spreadsheet would run as a formula is quoted (trajectory text is untrusted)."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = "|".join(str(item) for item in value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The metadata of each record (no steps): one header line, then a line per record."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for count, record in enumerate(records, start=1):
        writer.writerow([spreadsheet_cell(record.get(name)) for name in CSV_FIELDS])
        if count % 500 == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


@dataclass(frozen=True)
class Format:
    name: str
    label: str
    extension: str
    content_type: str
    write: Callable[[Iterable[Any]], Iterator[bytes]]
    pairs: bool = False  # made of (worst, best) pairs of GRPO groups, not of single records


FORMATS = {
    item.name: item
    for item in (
        Format("jsonl", "JSONL (lossless, re-imports)", "jsonl", "application/x-ndjson", jsonl_lines),
        Format("sft", "SFT chat JSONL", "sft.jsonl", "application/x-ndjson", sft_lines),
        Format("pairs", "Preference pairs (GRPO groups)", "pairs.jsonl", "application/x-ndjson", pair_lines, True),
        Format("parquet", "Parquet", "parquet", "application/vnd.apache.parquet", parquet_chunks),
        Format("csv", "CSV (metadata)", "csv", "text/csv; charset=utf-8", csv_lines),
    )
}

DEFAULT_MIN_GAP = 0.5


def export(fmt: Format, *, query: TrajectoryQuery, min_gap: float = DEFAULT_MIN_GAP, progress=None) -> Iterator[bytes]:
    """The rows `query` matches, in its order, as `fmt`; pairs: one per GRPO group among them."""
    if fmt.pairs:
        return fmt.write(reads.group_pairs(query=query, min_gap=min_gap, progress=progress))
    return fmt.write(reads.ordered_records(query=query, progress=progress))


def filename(fmt: Format, stamp: str) -> str:
    return f"trajectories-{stamp}.{fmt.extension}"


FORMAT_VAR = "as"  # not `format`: DRF reads that one to choose a renderer
MIN_GAP_VAR = "min_gap"


class ExportError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def parse_export(params) -> tuple[Format, q.TrajectoryQuery, float]:
    """(format, the rows in list order, the pairs' minimum reward gap) from a list URL plus `as` and
    `min_gap`; paging is ignored: an export is every matching row."""
    rest = params.copy()
    name = rest.pop(FORMAT_VAR, ["jsonl"])[-1]
    gap_text = rest.pop(MIN_GAP_VAR, [str(DEFAULT_MIN_GAP)])[-1]
    for name_only in (q.PAGE_VAR, q.PAGE_SIZE_VAR, "columns"):
        rest.pop(name_only, None)
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ExportError(FORMAT_VAR, f"{name!r} is not one of {', '.join(FORMATS)}")
    try:
        min_gap = float(gap_text)
    except ValueError:
        raise ExportError(MIN_GAP_VAR, f"{gap_text!r} is not a number") from None
    if not 0 <= min_gap < float("inf"):
        raise ExportError(MIN_GAP_VAR, "must be a finite number >= 0")
    try:
        query = q.parse_query(rest)
    except q.QueryError as error:
        raise ExportError(error.parameter, error.message) from None
    return fmt, query, min_gap


def response(fmt: Format, query: q.TrajectoryQuery, min_gap: float) -> StreamingHttpResponse:
    # The rows are chosen before the first byte is sent: a question refused (a pattern over too many
    # rows) is a 400, not a download that stops half way.
    reads.count(query=query)
    response = StreamingHttpResponse(export(fmt, query=query, min_gap=min_gap), content_type=fmt.content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{filename(fmt, stamp)}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
