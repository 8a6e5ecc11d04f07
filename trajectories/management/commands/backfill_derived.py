"""manage.py backfill_derived — fill the columns a store made by an older trajsite lacks."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from trajectories.signals import trajectories_changed
from trajectories.store import get_store


class Command(BaseCommand):
    help = (
        "Compute the search text, the answered flag and the embedding of rows stored before trajsite kept "
        "them (they read as empty: content search and similar miss those rows), then build the full-text "
        "index. Rewrites those rows, a batch at a time; safe beside imports and edits."
    )

    def handle(self, *args, **options) -> None:
        store = get_store()
        started = time.monotonic()
        filled = store.backfill_derived(progress=self._progress)
        if not filled:
            self.stdout.write("every row has its derived columns")
        else:
            self.stdout.write(f"filled {filled:,} rows in {time.monotonic() - started:.1f} s; indexing…")
        store.refresh_indexes()
        trajectories_changed.send(sender=self.__class__)
        self.stdout.write(f"done in {time.monotonic() - started:.1f} s")

    def _progress(self, done: int, total: int) -> None:
        if done == total or done % 50_000 < 2_000:
            self.stderr.write(f"filled {done:,} of {total:,}")
