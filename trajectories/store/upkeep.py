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
import random
import time
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


def fold_small_fragments(newest: Callable[[], Any], *, at_least: int = SMALL_FRAGMENTS, attempts: int = 3) -> bool:
    """Merge the small fragments of the table's newest version (`newest()`) into fewer when there are
    `at_least` of them; whether it did. A merge that loses to a concurrent writer is tried again on
    the version after (an edit of a row inside them wins, as it should): the edits made meanwhile found
    this merge under way and started none of their own."""
    for _ in range(attempts):
        dataset = newest()
        if small_fragments(dataset) < at_least:
            return False
        try:
            metrics = dataset.optimize.compact_files(target_rows_per_fragment=SMALL_ROWS, materialize_deletions=False)
        except Exception as error:  # a commit conflict with an edit, or the store refusing
            log.info("small annotation fragments not merged this time: %s", error)
            if not commits.is_conflict(error):
                return False  # a full or read-only disk: the next edit tries again
            time.sleep(random.uniform(0.05, 0.2))  # let the edit that won finish its burst
            continue
        log.info("merged %s small annotation fragments into %s", metrics.fragments_removed, metrics.fragments_added)
        return metrics.fragments_removed > 0  # small ones between large ones are not adjacent: nothing merged
    return False
