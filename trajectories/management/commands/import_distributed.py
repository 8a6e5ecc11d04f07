"""manage.py import_distributed PATH... [--address ray://...] [--workers N] — import on Ray."""

from __future__ import annotations

import functools

from django.core.management.base import BaseCommand, CommandError

from trajectories.importing.adapters import AUTO, FORMAT_CHOICES
from trajectories.importing.errors import ErrorSink
from trajectories.importing.jobs import run_job, start_job
from trajectories.importing.pipeline import ImportOptions, configured_limits
from trajectories.importing.progress import describe


class Command(BaseCommand):
    help = (
        "Import files on a Ray cluster: each file is read, validated and written as staged fragments by "
        "its own task; the store gets them in one commit (ids already stored are skipped). Needs "
        "requirements-distributed.txt."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", help="files or directories (local to every Ray node)")
        parser.add_argument("--address", help="a Ray cluster (ray://head:10001 or auto); default: a local one")
        parser.add_argument("--workers", type=int, default=2, help="processes of a local cluster (default: 2)")
        parser.add_argument("--format", default=AUTO, choices=FORMAT_CHOICES)
        parser.add_argument("--training-id")
        parser.add_argument("--agent-name")
        parser.add_argument("--max-errors", type=int, default=20)

    def handle(self, *args, **options) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise CommandError("Ray is not installed: pip install -r requirements-distributed.txt") from None
        from trajectories.importing.distributed import run_distributed

        import_options = ImportOptions(
            format_name=options["format"],
            training_id=options["training_id"],
            agent_name=options["agent_name"],
            limits=configured_limits(),
        )
        job = start_job(paths=options["paths"], options=import_options)
        errors = ErrorSink(keep=options["max_errors"])
        runner = functools.partial(run_distributed, address=options["address"], workers=options["workers"])
        try:
            progress = run_job(job=job, options=import_options, errors=errors, runner=runner)
        finally:
            errors.close()
        for line in errors.first + errors.first_warnings:
            self.stderr.write(line)
        self.stdout.write(f"import #{job.pk} on Ray: {describe(progress)} in {progress.seconds:.1f} s")
        if errors.rejected:
            raise CommandError(f"{errors.rejected:,} records rejected (import #{job.pk}); see the lines above")
