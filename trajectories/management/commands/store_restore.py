"""manage.py store_restore --tag NAME | --version N [--yes] — put the store back as it was."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trajectories.signals import trajectories_changed
from trajectories.store import get_store
from trajectories.store.snapshots import SnapshotError


class Command(BaseCommand):
    help = (
        "Make a snapshot (or a version of the trajectories table, with the annotations of that moment) the "
        "newest state of the store. Shows what would change; --yes does it, tagging the current state first."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version` is ours (a store version), not Django's "print the version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--tag", help="a snapshot made with store_snapshot")
        group.add_argument("--version", type=int, help="a version of the trajectories table")
        parser.add_argument("--yes", action="store_true", help="restore (without it, only say what would change)")

    def handle(self, *args, **options) -> None:
        store = get_store()
        try:
            plan = store.restore_plan(tag=options["tag"], version=options["version"])
        except SnapshotError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"restoring {plan.target}:")
        for line in plan.describe():
            self.stdout.write(f"  {line}")
        self.stdout.write("  imports and annotation edits made since then are undone (the current state is tagged)")
        if not options["yes"]:
            self.stdout.write("nothing changed: run again with --yes to restore")
            return
        try:
            done = store.restore(plan=plan)
        except SnapshotError as error:
            raise CommandError(str(error)) from None
        trajectories_changed.send(sender=self.__class__)
        for line in done:
            self.stdout.write(f"done: {line}")
        self.stdout.write("the state before is kept as a snapshot: store_snapshot --list")
