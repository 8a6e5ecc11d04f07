"""A distributed import's staging table: fragments written in parallel by many workers (each a
Lance fragment writer), committed once, then merged into the store in one merge-insert commit that
holds the duplicate rule inside the commit, as every other import's writes do.

Staged rows are store rows plus where they came from (`_order`: file, then position, so the first
record of an id wins, as in a single-process import) and what their record said of its annotations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import lance
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .annotations import UNSET, AnnotationChange
from .schema import KEY, TRAJECTORY_SCHEMA

ORDER = "_order"
ANNOTATION = "_annotation"
STAGED_SCHEMA = TRAJECTORY_SCHEMA.append(pa.field(ORDER, pa.int64(), nullable=False)).append(
    pa.field(ANNOTATION, pa.large_string())
)
# A file's records are numbered below this; the file's index is above it.
_FILE_SHIFT = 32
_MERGE_BATCH_ROWS = 10_000


def order_of(*, file_index: int, position: int) -> int:
    return (file_index << _FILE_SHIFT) | position


def staged(trajectories: pa.Table, *, orders: list[int], annotations: list[AnnotationChange | None]) -> pa.Table:
    """Store rows with their staging columns, in the staged schema."""
    encoded = [None if change is None else _encoded(change) for change in annotations]
    table = trajectories.append_column(STAGED_SCHEMA.field(ORDER), pa.array(orders, pa.int64()))
    return table.append_column(STAGED_SCHEMA.field(ANNOTATION), pa.array(encoded, pa.large_string()))


def _encoded(change: AnnotationChange) -> str:
    given = {name: value for name, value in asdict(change).items() if value is not UNSET and value != ()}
    return orjson.dumps(given).decode()


def decoded(text: str) -> AnnotationChange:
    values = orjson.loads(text)
    for name in ("add_tags", "remove_tags"):
        if name in values:
            values[name] = tuple(values[name])
    return AnnotationChange(**values)


def write_fragments(tables: Iterable[pa.Table], *, uri: str) -> list[str]:
    """Write `tables` as new fragments of the staging table at `uri` (not yet committed: the driver
    commits every worker's fragments at once). Returns their metadata as JSON."""
    batches = (batch for table in tables for batch in table.cast(STAGED_SCHEMA).to_batches())
    reader = pa.RecordBatchReader.from_batches(STAGED_SCHEMA, batches)
    written = lance.fragment.write_fragments(reader, uri, schema=STAGED_SCHEMA)
    return [orjson.dumps(fragment.to_json()).decode() for fragment in written]


def commit(*, uri: str, fragments: list[str]) -> int:
    """Make every worker's fragments the staging table, in one commit; returns its rows."""
    metadata = [lance.fragment.FragmentMetadata.from_json(text) for text in fragments]
    dataset = lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(STAGED_SCHEMA, metadata))
    return dataset.count_rows()


@dataclass(frozen=True)
class Kept:
    """Which staged rows are the first of their id (by `_order`), as a mask in scan order."""

    mask: np.ndarray
    staged: int

    @property
    def duplicates(self) -> int:
        return self.staged - int(self.mask.sum())


def first_of_each_id(*, uri: str) -> Kept:
    """The staged rows to merge: for an id staged more than once, the one earliest in the input.

    Reads the id and order columns only (about 50 bytes a row: 5 GB for 100 million rows)."""
    table = lance.dataset(uri).to_table(columns=[KEY, ORDER])
    positions = pa.array(np.arange(table.num_rows, dtype=np.int64))
    ordered = table.append_column("_position", positions).sort_by([(KEY, "ascending"), (ORDER, "ascending")])
    keys = ordered.column(KEY)
    first = np.ones(table.num_rows, dtype=bool)
    if table.num_rows > 1:
        same = pc.equal(keys.slice(1), keys.slice(0, table.num_rows - 1)).to_numpy(zero_copy_only=False)
        first[1:] = ~same
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[ordered.column("_position").to_numpy()[first]] = True
    return Kept(mask=mask, staged=table.num_rows)


def kept_rows(*, uri: str, kept: Kept) -> Iterator[pa.RecordBatch]:
    """The staged rows to merge, as store rows, streamed in scan order."""
    offset = 0
    columns = TRAJECTORY_SCHEMA.names
    for batch in lance.dataset(uri).to_batches(columns=columns, batch_size=_MERGE_BATCH_ROWS):
        take = kept.mask[offset : offset + batch.num_rows]
        offset += batch.num_rows
        if take.any():
            yield batch.filter(pa.array(take))


def annotated(*, uri: str, kept: Kept) -> Iterator[dict[str, Any]]:
    """{trajectory_id: change} of the kept rows whose records carried annotations, in batches."""
    offset = 0
    for batch in lance.dataset(uri).to_batches(columns=[KEY, ANNOTATION], batch_size=_MERGE_BATCH_ROWS):
        take = kept.mask[offset : offset + batch.num_rows]
        offset += batch.num_rows
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        changes = {key: decoded(text) for key, text, keep in zip(ids, texts, take, strict=True) if keep and text}
        if changes:
            yield changes
