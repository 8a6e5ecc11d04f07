"""manage.py export_trajectories — the rows a list URL selects, in its order, as a dataset file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict

from trajectories import exporting, reads
from trajectories.query import QueryError

_BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Export trajectories as canonical JSONL (re-imports losslessly), SFT chat JSONL, preference pairs "
        "from GRPO groups, Parquet or CSV. Rows are chosen and ordered by list parameters, e.g. "
        "--where 'agent_name=a&is_success=false&ordering=-reward' (the list page's query string)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("out", help="the file to write ('-' for standard output)")
        parser.add_argument("--as", dest="fmt", default="jsonl", choices=sorted(exporting.FORMATS))
        parser.add_argument("--where", default="", help="list parameters as a query string (default: every row)")
        parser.add_argument(
            "--min-gap", type=float, default=exporting.DEFAULT_MIN_GAP, help="pairs: least reward gap (%(default)s)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress output")

    def handle(self, *args, **options) -> None:
        params = QueryDict(options["where"], mutable=True)
        params[exporting.FORMAT_VAR] = options["fmt"]
        params[exporting.MIN_GAP_VAR] = str(options["min_gap"])
        try:
            fmt, query, min_gap = exporting.parse_export(params)
        except exporting.ExportError as error:
            raise CommandError(f"--where: {error.parameter}: {error.message}") from None
        try:
            reads.count(query=query)  # a refused question fails here, before any file is made
        except QueryError as error:
            raise CommandError(f"--where: {error.parameter}: {error.message}") from None
        to_stdout = options["out"] == "-"
        progress = None if options["no_progress"] or to_stdout else _Progress(self.stderr, sys.stderr.isatty())
        started = time.monotonic()
        target = Path(options["out"])
        partial = target.with_name(target.name + ".partial")
        written = 0
        out = sys.stdout.buffer if to_stdout else partial.open("wb")
        try:
            for chunk in exporting.export(fmt, query=query, min_gap=min_gap, progress=progress):
                out.write(chunk)
                written += len(chunk)
        except BaseException:
            if not to_stdout:
                out.close()
                partial.unlink(missing_ok=True)  # never leave half a dataset under the asked name
            raise
        if not to_stdout:
            out.close()
            partial.replace(target)
        done = progress.done if progress else None
        seconds = time.monotonic() - started
        count = f"{done:,} {'pairs' if fmt.pairs else 'trajectories'}, " if done is not None else ""
        if not to_stdout:
            self.stderr.write(f"{options['out']}: {count}{written / 1e6:,.1f} MB as {fmt.label} in {seconds:.1f} s")


class _Progress:
    """A bar on a terminal, a line every 10 s otherwise; `done` is the last count seen."""

    def __init__(self, stream, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive
        self.done = 0
        self.started = self.last_line = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        now = time.monotonic()
        rate = done / max(now - self.started, 1e-9)
        if self.interactive:
            filled = int(_BAR_WIDTH * done / total) if total else _BAR_WIDTH
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {done:,} of {total:,}, {rate:,.0f}/s", ending="")
            if done >= total:
                self.stream.write("")
        elif now - self.last_line >= 10 or done >= total:
            self.last_line = now
            self.stream.write(f"exporting: {done:,} of {total:,}, {rate:,.0f}/s")
