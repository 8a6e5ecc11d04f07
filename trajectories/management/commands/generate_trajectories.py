"""manage.py generate_trajectories --count N --out FILE — realistic canonical JSONL."""

from __future__ import annotations

import gzip
import sys

from django.core.management.base import BaseCommand, CommandError

from trajectories.demo import DemoShape, write_jsonl


class Command(BaseCommand):
    help = "Write generated GRPO-style trajectories as canonical JSONL (.gz when the name ends so)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, required=True, help="how many trajectories")
        parser.add_argument("--out", required=True, help="output file, or - for standard output")
        parser.add_argument("--group-size", type=int, default=8, help="samples per question per iteration")
        parser.add_argument("--questions", type=int, default=16, help="questions per iteration and run")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, **options) -> None:
        if options["count"] < 0 or options["group_size"] < 1 or options["questions"] < 1:
            raise CommandError("--count must be >= 0; --group-size and --questions >= 1")
        shape = DemoShape(
            count=options["count"],
            group_size=options["group_size"],
            questions_per_iteration=options["questions"],
            seed=options["seed"],
        )
        out = options["out"]
        if out == "-":
            written = write_jsonl(sys.stdout.buffer, shape)
        else:
            opener = gzip.open if out.endswith(".gz") else open
            with opener(out, "wb") as stream:
                written = write_jsonl(stream, shape)
        self.stderr.write(f"wrote {written:,} trajectories to {out}")
