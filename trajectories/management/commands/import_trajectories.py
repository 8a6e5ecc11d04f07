"""manage.py import_trajectories PATH... — batch import of trajectory dumps (see README)."""

from __future__ import annotations

import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trajectories import priority
from trajectories.importing import adapters
from trajectories.importing.errors import ErrorSink
from trajectories.importing.jobs import (
    ImportInterrupted,
    claim,
    missing_sources,
    options_of,
    reap,
    run_job,
    start_job,
)
from trajectories.importing.mapping import Mapping, MappingFileError
from trajectories.importing.pipeline import ON_DUPLICATE_CHOICES, ImportOptions, configured_limits
from trajectories.importing.progress import ProgressDisplay, describe
from trajectories.models import ImportJob


class Command(BaseCommand):
    help = "Import trajectories from JSONL/JSON files (optionally .gz), directories, or - for stdin."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="*", help="files, directories, or - for standard input")
        parser.add_argument(
            "--resume",
            type=int,
            metavar="JOB",
            help="run an interrupted or failed import job again, with its files and options "
            "(what it wrote before is skipped as duplicates)",
        )
        parser.add_argument(
            "--format",
            default=adapters.AUTO,
            choices=adapters.FORMAT_CHOICES[:-1],
            help="record shape; 'auto' recognises each record (default)",
        )
        parser.add_argument("--mapping", help="YAML/JSON file mapping canonical fields to paths in the record")
        parser.add_argument(
            "--on-duplicate",
            default="skip",
            choices=ON_DUPLICATE_CHOICES,
            help="what to do with a trajectory_id already stored (default: skip)",
        )
        parser.add_argument("--training-id", help="training_id for records that lack one")
        parser.add_argument("--agent-name", help="agent_name for records that lack one")
        parser.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.TRAJSITE_IMPORT_BATCH_SIZE,
            help="rows per store write (default: %(default)s)",
        )
        parser.add_argument(
            "--max-line-bytes",
            type=int,
            default=settings.TRAJSITE_IMPORT_MAX_LINE_BYTES,
            help="longest JSONL line read; longer ones are reported and skipped (default: %(default)s)",
        )
        parser.add_argument(
            "--max-document-bytes",
            type=int,
            default=settings.TRAJSITE_IMPORT_MAX_DOCUMENT_BYTES,
            help="largest .json document read whole; larger ones are reported and skipped (default: %(default)s)",
        )
        parser.add_argument(
            "--max-json-values",
            type=int,
            default=settings.TRAJSITE_IMPORT_MAX_JSON_VALUES,
            help="most JSON values a line or document may hold before it is parsed (default: %(default)s)",
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="processes that parse and validate (default: TRAJSITE_IMPORT_WORKERS, one per core, for "
            "imports over TRAJSITE_IMPORT_PARALLEL_BYTES; 0: all in this process)",
        )
        parser.add_argument("--max-errors", type=int, default=20, help="rejections printed (all are counted)")
        parser.add_argument("--error-report", type=Path, help="write every rejection and warning to this file")
        parser.add_argument("--no-progress", action="store_true", help="no progress output")

    def handle(self, *args, **options) -> None:
        job, import_options = self._job(options)
        priority.lower_this_thread(settings.TRAJSITE_IMPORT_NICE)  # its worker processes inherit it
        errors = ErrorSink(keep=options["max_errors"], report_path=options["error_report"])
        display = None
        if not options["no_progress"]:
            display = ProgressDisplay(self.stderr._out, interactive=self.stderr.isatty())
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            progress = run_job(
                job=job,
                options=import_options,
                errors=errors,
                error_report=options["error_report"],
                on_progress=display,
            )
        except ImportInterrupted as stopped:
            raise CommandError(f"import #{job.pk} interrupted ({stopped}); resume it with --resume {job.pk}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            errors.close()
            if display is not None:
                display.close()
        self._print_errors(errors)
        self._print_summary(progress, job, dry_run=import_options.dry_run)
        if errors.rejected:
            raise CommandError(f"{errors.rejected:,} records rejected (import #{job.pk}); see the lines above")

    def _job(self, options) -> tuple[ImportJob, ImportOptions]:
        if options["resume"] is not None:
            if options["paths"]:
                raise CommandError("--resume takes the job's own files; give no paths")
            return _resumable(options["resume"])
        if not options["paths"]:
            raise CommandError("give the files or directories to import (or --resume JOB)")
        for name in ("batch_size", "max_line_bytes", "max_document_bytes", "max_json_values"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["workers"] is not None and not 0 <= options["workers"] <= 64:
            raise CommandError("--workers must be between 0 and 64")
        import_options = ImportOptions(
            format_name=options["format"],
            mapping=_load_mapping(options["mapping"]),
            on_duplicate=options["on_duplicate"],
            training_id=options["training_id"],
            agent_name=options["agent_name"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
            workers=options["workers"],
            limits=configured_limits(
                max_line_bytes=options["max_line_bytes"],
                max_document_bytes=options["max_document_bytes"],
                max_values=options["max_json_values"],
            ),
        )
        return start_job(paths=options["paths"], options=import_options), import_options

    def _print_errors(self, errors: ErrorSink) -> None:
        for line in errors.first:
            self.stderr.write(line)
        if errors.rejected > len(errors.first):
            self.stderr.write(f"... {errors.rejected - len(errors.first):,} more rejected records not shown")
        for line in errors.first_warnings:
            self.stderr.write(line)

    def _print_summary(self, progress, job, *, dry_run: bool) -> None:
        for file, places in progress.found.items():
            said = [what if path == "(all)" else f"{path}: {what}" for path, what in places.items()]
            self.stdout.write(f"{file}: {'; '.join(said)}")
        if dry_run:
            self.stdout.write(
                f"dry run: {progress.valid:,} valid, {progress.rejected:,} rejected "
                f"of {progress.records:,} records; nothing written"
            )
            return
        self.stdout.write(
            f"import #{job.pk}: {progress.imported:,} imported, {progress.updated:,} updated, "
            f"{progress.duplicates:,} duplicates skipped, {progress.rejected:,} rejected, "
            f"{progress.warnings:,} warnings in {progress.seconds:.2f} s ({progress.records_per_second:,.0f} records/s)"
        )
        self.stdout.write(describe(progress))


def _interrupt(signum, frame) -> None:
    raise ImportInterrupted(signal.Signals(signum).name)


def _resumable(job_id: int) -> tuple[ImportJob, ImportOptions]:
    reap()
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        raise CommandError(f"no import job #{job_id}")
    if not job.is_resumable:
        raise CommandError(f"import #{job_id} is {job.get_status_display()}; only failed or interrupted jobs resume")
    missing = missing_sources(job)
    if missing:
        raise CommandError(f"import #{job_id} cannot be resumed: {', '.join(missing)} cannot be read again")
    if not claim(job.pk, status=job.status):
        raise CommandError(f"import #{job_id} was resumed or discarded by someone else just now")
    job.refresh_from_db()
    return job, options_of(job)


def _load_mapping(path: str | None) -> Mapping | None:
    if path is None:
        return None
    try:
        return Mapping.load(path)
    except (OSError, MappingFileError) as error:
        raise CommandError(f"--mapping: {error}") from error
