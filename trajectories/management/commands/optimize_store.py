"""manage.py optimize_store — compact fragments, update indexes, prune old versions safely."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trajectories.signals import trajectories_changed
from trajectories.store import get_store


class Command(BaseCommand):
    help = "Compact the trajectory store, fold new rows into its indexes, and prune old versions."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--keep-minutes",
            type=int,
            default=settings.TRAJSITE_KEEP_VERSIONS_MINUTES,
            help="never prune versions younger than this, so running readers keep their snapshot "
            "(default: %(default)s)",
        )

    def handle(self, *args, **options) -> None:
        if options["keep_minutes"] < 1:
            raise CommandError("--keep-minutes must be at least 1: a running reader may use the version before")
        store = get_store()
        self._print("before", store.stats())
        after = store.optimize(keep_versions=timedelta(minutes=options["keep_minutes"]))
        trajectories_changed.send(sender=self.__class__)
        self._print("after", after)

    def _print(self, label: str, stats) -> None:
        for table in stats:
            indexes = ", ".join(table.indexes) or "none"
            self.stdout.write(
                f"{label}: {table.name}: {table.rows:,} rows in {table.fragments} fragments "
                f"({table.small_fragments} small), version {table.version}, indexes: {indexes}"
            )
