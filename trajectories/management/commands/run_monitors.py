"""manage.py run_monitors — ask the enabled monitors of one import's rows, or of every row."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trajectories import monitoring


class Command(BaseCommand):
    help = "Tag the rows the enabled monitors match (monitor:<name>): of one import, or of every row (--all)."

    def add_arguments(self, parser) -> None:
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--import", dest="import_id", help="the import id (shown on its job page)")
        scope.add_argument("--all", action="store_true", help="every stored row (after switching a monitor on)")

    def handle(self, *args, **options) -> None:
        tagged = monitoring.run(import_id=None if options["all"] else options["import_id"])
        if not tagged:
            raise CommandError("no monitor is enabled: switch one on at /trajectories/monitors/")
        for name, count in tagged.items():
            self.stdout.write(f"{name}: {count:,} rows tagged monitor:{name}")
