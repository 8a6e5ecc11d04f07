"""manage.py build_projection — write a trajectories version's shared projection (run by the web
workers, one child per new version; see trajectories/store/builder.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trajectories import priority
from trajectories.store import get_store


class Command(BaseCommand):
    help = "Write the shared projection of a trajectories version (what the web workers map)."
    requires_system_checks = []  # started for every new version: no checks, no database

    def add_arguments(self, parser) -> None:
        parser.add_argument("--table-version", type=int, required=True, help="the trajectories table version")
        parser.add_argument("--previous", type=int, help="the version served now, whose files it appends to")

    def handle(self, *args, **options) -> None:
        priority.lower_this_thread(priority.BUILD_NICE)  # and LanceDB's threads, started after
        written = get_store().write_shared_projection(version=options["table_version"], previous=options["previous"])
        if written is None:
            raise CommandError("no shared projection written (TRAJSITE_PROJECTION_DIR off, or not writable)")
        self.stdout.write(str(written))
