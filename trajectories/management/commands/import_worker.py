"""manage.py import_worker — run queued imports (web and API uploads) until stopped."""

from __future__ import annotations

import threading

from django.core.management.base import BaseCommand

from trajectories.importing import worker
from trajectories.importing.jobs import ImportInterrupted


class Command(BaseCommand):
    help = "Run queued imports: web and API uploads, and imports cut short by a stopped worker."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run what is queued now, then exit")
        parser.add_argument(
            "--poll", type=float, default=worker.POLL_SECONDS, help="seconds between looks (default: %(default)s)"
        )

    def handle(self, *args, **options) -> None:
        worker.interrupt_on_sigterm()
        stop = threading.Event()
        self.stderr.write(f"import worker: waiting for queued imports (every {options['poll']:g} s)")
        try:
            worker.serve(stop=stop, poll=options["poll"], once=options["once"])
        except (ImportInterrupted, KeyboardInterrupt):
            self.stderr.write("import worker: stopped; a running import is queued again for the next worker")
