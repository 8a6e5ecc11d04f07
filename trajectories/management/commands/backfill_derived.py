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
        "index. Writes only those columns' files; run it while no import runs."
    )

    def handle(self, *args, **options) -> None:
        store = get_store()
        started = time.monotonic()
        filled = store.backfill_derived()
        if not filled:
            self.stdout.write("every derived column is filled already")
        else:
            self.stdout.write(f"filled {', '.join(filled)} in {time.monotonic() - started:.1f} s; indexing…")
        store.refresh_indexes()
        trajectories_changed.send(sender=self.__class__)
        self.stdout.write(f"done in {time.monotonic() - started:.1f} s")
