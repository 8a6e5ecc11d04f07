"""manage.py load_demo — generate demo trajectories and import them (used by `make run`)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from trajectories import reads
from trajectories.demo import DemoShape, write_jsonl
from trajectories.importing.errors import ErrorSink
from trajectories.importing.jobs import run_job, start_job
from trajectories.importing.pipeline import ImportOptions


class Command(BaseCommand):
    help = "Generate demo trajectories and import them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=5000)
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the store has trajectories")

    def handle(self, *args, **options) -> None:
        if options["if_empty"] and reads.total():
            self.stdout.write("store is not empty; demo data not loaded")
            return
        path = settings.VAR_DIR / "demo.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as stream:
            write_jsonl(stream, DemoShape(count=options["count"]))
        options_ = ImportOptions()
        job = start_job(paths=[str(path)], options=options_)
        errors = ErrorSink()
        progress = run_job(job=job, options=options_, errors=errors)
        errors.close()
        self.stdout.write(f"demo data: {progress.imported:,} trajectories imported from {path}")
