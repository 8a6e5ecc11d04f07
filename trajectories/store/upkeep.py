"""Keeping the annotations table quick to read while people edit it.

Every edit commits its rows as a fragment of their own, and every later lookup of the table (the
edit path reads the rows it changes, merge-insert joins on the key) opens each fragment: with 236
one-row fragments beside a million-row one, a lookup took 59 ms instead of 3 ms, and an edit 220 ms.
So once enough small fragments pile up they are merged into one, off the request path. Only small
fragments are touched (deletions are not materialised, large fragments not rewritten), so the
projections of every process follow the change by reading the merged rows alone (`placed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import commits

log = logging.getLogger(__name__)

# Fragments below this many rows are merged; the merged ones stop being small once they reach it.
SMALL_ROWS = 1_024
# Small fragments tolerated before they are merged.
SMALL_FRAGMENTS = 32


def small_fragments(dataset) -> int:
    return sum(1 for fragment in dataset.get_fragments() if fragment.metadata.physical_rows < SMALL_ROWS)


# A merge gives way quickly: edits are what people wait for, and the next edit asks for one again.
FOLD_DEADLINE_SECONDS = 2.0


def fold_small_fragments(newest: Callable[[], Any], *, at_least: int = SMALL_FRAGMENTS) -> bool:
    """Merge the small fragments of the table's newest version (`newest()`) into fewer when there are
    `at_least` of them; whether it did. Never raises: it runs off the request path. A merge that loses
    to a concurrent writer is tried again on the version after, for a short while (an edit of a row
    inside them wins, as it should): the edits made meanwhile found this merge under way and started
    none of their own."""
    try:
        return commits.retrying(
            lambda: _fold(newest(), at_least),
            action="merging small annotation fragments",
            deadline_seconds=FOLD_DEADLINE_SECONDS,
        )
    except Exception as error:  # other writers for too long, a full or read-only disk: the next edit tries again
        log.info("small annotation fragments not merged this time: %s", error)
        return False


def _fold(dataset, at_least: int) -> bool:
    if small_fragments(dataset) < at_least:
        return False
    metrics = dataset.optimize.compact_files(target_rows_per_fragment=SMALL_ROWS, materialize_deletions=False)
    log.info("merged %s small annotation fragments into %s", metrics.fragments_removed, metrics.fragments_added)
    return metrics.fragments_removed > 0  # small ones between large ones are not adjacent: nothing merged
