"""Import benchmark: end to end from generated .jsonl files, each import in its own process.

    python benchmarks/import_bench.py                 # 10k and 100k
    python benchmarks/import_bench.py --sizes 1000000 # 1M (about 8.7 GB of JSONL, generated once)
    python benchmarks/import_bench.py --mixed         # also files in the shapes real dumps have

Prints a table: records/s, MB/s, peak RSS of the import process and of it with its workers,
fragments left. With --mixed, each
size is also imported from a mixed-shape file (benchmarks/mixed.py: OpenAI string arguments, Responses
items, content parts, wrapper lines, unknown fields, 5% invalid records), and for every file the same
run prints its floor: one process that only reads, parses, keeps the canonical fields and appends
5,000-row batches (no validation, no dedupe), and the importer's speed as a multiple of it.
Generated files are cached under var/bench/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.processes import run_measured  # noqa: E402
from benchmarks.tables import print_table  # noqa: E402
from trajectories.store.repository import TrajectoryStore  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
SUMMARY = re.compile(
    r"([\d,]+) imported, ([\d,]+) updated, ([\d,]+) duplicates skipped, ([\d,]+) rejected.* in ([\d.]+) s"
)


@dataclass
class Row:
    scenario: str
    records: int
    megabytes: float
    import_seconds: float
    wall_seconds: float
    peak_rss_mb: float
    all_peak_rss_mb: float
    fragments: int
    imported: int
    duplicates: int

    @property
    def records_per_second(self) -> float:
        return self.records / self.import_seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.megabytes / self.import_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated record counts")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--mixed", action="store_true", help="also import mixed-shape files, with floors")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    floors: list[tuple[str, int, float, float]] = []
    for size in (int(text) for text in args.sizes.split(",")):
        rows.extend(_bench_size(size, args.workdir))
        if args.mixed:
            mixed = _mixed_file(size, args.workdir)
            rows.append(_fresh_import(f"{size // 1000}k mixed shapes into empty store", mixed, args.workdir))
            floors.append(_floor_row(f"{size // 1000}k mixed shapes", mixed, rows[-1], args.workdir))
            plain = _generated(size, args.workdir, seed=7)
            floors.append(_floor_row(f"{size // 1000}k generated", plain, rows[-4], args.workdir))
    _print_table(rows)
    if floors:
        _print_floors(floors)


def _bench_size(size: int, workdir: Path) -> list[Row]:
    first = _generated(size, workdir, seed=7)
    second = _generated(size, workdir, seed=8)
    scratch, env = _scratch_site(workdir)
    try:
        return [
            _import(f"{size // 1000}k into empty store", first, size, env),
            _import(f"{size // 1000}k more into {size // 1000}k", second, size, env),
            _import(f"{size // 1000}k again (all duplicates)", first, size, env),
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _mixed_file(size: int, workdir: Path) -> Path:
    from benchmarks.mixed import write_mixed

    path = workdir / f"mixed-{size}.jsonl"
    if not path.exists():
        print(f"generating {path.name} ...", file=sys.stderr)
        partial = path.with_suffix(".partial")
        write_mixed(partial, size)
        partial.rename(path)
    return path


def _scratch_site(workdir: Path) -> tuple[Path, dict]:
    """A fresh store and database for one scenario: its folder, and the environment that points there."""
    scratch = Path(tempfile.mkdtemp(prefix="trajsite-bench-", dir=workdir))
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(scratch / "lancedb"),
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "TRAJSITE_VAR_DIR": str(scratch),
    }
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    return scratch, env


def _fresh_import(scenario: str, path: Path, workdir: Path) -> Row:
    scratch, env = _scratch_site(workdir)
    try:
        return _import(scenario, path, _records_in(path), env, allow_rejected=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _records_in(path: Path) -> int:
    import orjson

    with open(path, "rb") as stream:
        return sum(len(value["trajectories"]) if "trajectories" in value else 1 for value in map(orjson.loads, stream))


def _floor_row(label: str, path: Path, imported: Row, workdir: Path) -> tuple[str, int, float, float]:
    """The floor of `path`, measured now (in this process, alone), beside the importer's figure."""
    from benchmarks.mixed import floor

    scratch = Path(tempfile.mkdtemp(prefix="trajsite-floor-", dir=workdir))
    try:
        written, seconds = floor(path, TrajectoryStore(uri=str(scratch / "lancedb")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return label, written, written / seconds, imported.records_per_second


def _print_floors(floors: list[tuple[str, int, float, float]]) -> None:
    header = ("file", "records", "floor records/s", "importer records/s", "importer / floor")
    lines = [
        (label, f"{records:,}", f"{floor_rate:,.0f}", f"{rate:,.0f}", f"{rate / floor_rate:.2f}x")
        for label, records, floor_rate, rate in floors
    ]
    print("\nfloor: read + orjson + canonical fields + re-serialised steps + 5,000-row appends, one process")
    print_table(header, lines)


def _generated(size: int, workdir: Path, *, seed: int) -> Path:
    path = workdir / f"generated-{size}-seed{seed}.jsonl"
    if not path.exists():
        print(f"generating {path.name} ...", file=sys.stderr)
        partial = path.with_suffix(".partial")
        subprocess.run(
            [*MANAGE, "generate_trajectories", "--count", str(size), "--seed", str(seed), "--out", str(partial)],
            check=True,
        )
        partial.rename(path)
    return path


def _import(scenario: str, path: Path, size: int, env: dict, *, allow_rejected: bool = False) -> Row:
    print(f"running: {scenario} ...", file=sys.stderr)
    started = time.perf_counter()
    finished = run_measured([*MANAGE, "import_trajectories", str(path), "--no-progress"], env)
    wall = time.perf_counter() - started
    match = SUMMARY.search(finished.stdout)
    if (finished.returncode != 0 and not allow_rejected) or match is None:
        raise SystemExit(f"import failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
    imported, _updated, duplicates, _rejected, seconds = (float(g.replace(",", "")) for g in match.groups())
    fragments = TrajectoryStore(uri=env["TRAJSITE_DATA_DIR"]).stats()[0].fragments
    return Row(
        scenario,
        size,
        path.stat().st_size / 1e6,
        seconds,
        wall,
        finished.own_peak_mb,
        finished.all_peak_mb,
        fragments,
        int(imported),
        int(duplicates),
    )


def _print_table(rows: list[Row]) -> None:
    header = (
        "scenario",
        "records",
        "MB",
        "import s",
        "wall s",
        "records/s",
        "MB/s",
        "peak RSS MB (importer)",
        "peak RSS MB (with workers)",
        "fragments",
        "imported",
        "duplicates",
    )
    lines = [header] + [
        (
            row.scenario,
            f"{row.records:,}",
            f"{row.megabytes:,.0f}",
            f"{row.import_seconds:.1f}",
            f"{row.wall_seconds:.1f}",
            f"{row.records_per_second:,.0f}",
            f"{row.megabytes_per_second:,.0f}",
            f"{row.peak_rss_mb:,.0f}",
            f"{row.all_peak_rss_mb:,.0f}",
            str(row.fragments),
            f"{row.imported:,}",
            f"{row.duplicates:,}",
        )
        for row in rows
    ]
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print_table(lines[0], lines[1:])


if __name__ == "__main__":
    main()
