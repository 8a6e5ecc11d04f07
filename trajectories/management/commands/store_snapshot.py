"""manage.py store_snapshot --tag NAME — name the store's current state, to restore it later."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trajectories.store import get_store
from trajectories.store.snapshots import SnapshotError


class Command(BaseCommand):
    help = "Tag the current versions of both store tables (kept by optimize_store); --list shows the tags."

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--tag", help="a name: letters, digits, '.', '_' or '-'")
        group.add_argument("--list", action="store_true", help="list the snapshots")

    def handle(self, *args, **options) -> None:
        store = get_store()
        if options["list"]:
            found = store.snapshots()
            for snapshot in found:
                versions = ", ".join(f"{table} v{version}" for table, version in snapshot.versions.items())
                self.stdout.write(f"{snapshot.tag}: {versions}")
            if not found:
                self.stdout.write("no snapshots yet (store_snapshot --tag NAME makes one)")
            return
        try:
            versions = store.snapshot(tag=options["tag"])
        except SnapshotError as error:
            raise CommandError(str(error)) from None
        shown = ", ".join(f"{table} v{version}" for table, version in versions.items())
        self.stdout.write(f"snapshot {options['tag']!r}: {shown}; restore with store_restore --tag {options['tag']}")
