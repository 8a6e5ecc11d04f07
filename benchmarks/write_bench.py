"""Write benchmark: what annotation edits, bulk changes and deletes cost now that every write is a
compare-and-retry commit, alone and racing each other.

    python benchmarks/write_bench.py --size 100000

Imports N generated trajectories into a fresh store (in var/bench/write-N, replaced each run), then
times, in-process, through the same services the pages and API use: one edit, a PATCH through DRF,
eight threads adding tags to one trajectory, bulk changes of 10k and 100k rows, and a delete.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import percentile, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    folder = args.workdir / f"write-{args.size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {
        "TRAJSITE_DATA_DIR": str(folder / "lancedb"),
        "TRAJSITE_VAR_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "ALLOWED_HOSTS": "testserver",
        "TRAJSITE_CACHE": "0",
    }
    os.environ.update(env)
    _import(args.workdir, args.size, env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    import django

    django.setup()
    _run(args.repeat, args.size)


def _import(workdir: Path, size: int, env: dict) -> None:
    data = workdir / f"generated-{size}-seed7.jsonl"
    if not data.exists():
        print(f"generating {data.name} ...", flush=True)
        subprocess.run([*MANAGE, "generate_trajectories", "--count", str(size), "--out", str(data)], check=True)
    full = {**os.environ, **env}
    subprocess.run([*MANAGE, "migrate", "-v0"], env=full, check=True)
    print(f"importing {size:,} trajectories ...", flush=True)
    subprocess.run([*MANAGE, "import_trajectories", str(data), "--no-progress"], env=full, check=True)
    subprocess.run([*MANAGE, "optimize_store"], env=full, check=True, capture_output=True)


def _run(repeat: int, size: int) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from trajectories import services
    from trajectories.query import TrajectoryQuery
    from trajectories.store import AnnotationChange, get_store

    store = get_store()
    ids = store.matching_ids(query=TrajectoryQuery())
    user = get_user_model().objects.create_superuser(username="bench", password="pw-bench-123")
    client = APIClient()
    client.force_authenticate(user)
    rows = []

    def timed(label: str, count: int, call) -> None:
        times = []
        for index in range(repeat):
            started = time.perf_counter()
            call(index)
            times.append((time.perf_counter() - started) * 1000)
        rows.append((label, f"{count:,}", f"{statistics.median(times):.1f}", f"{percentile(times, 0.95):.1f}"))

    store.page(query=TrajectoryQuery())  # the projection, built once
    timed(
        "annotate one (notes)",
        1,
        lambda i: services.annotate(trajectory_ids=[ids[i]], change=AnnotationChange(notes=f"n{i}"), user=user),
    )
    timed(
        "PATCH through DRF (add_tags)",
        1,
        lambda i: client.patch(f"/api/trajectories/{ids[1000 + i]}/", {"add_tags": [f"t{i}"]}, format="json"),
    )

    def racing(_index: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: services.annotate(
                        trajectory_ids=[ids[5]], change=AnnotationChange(add_tags=(f"race{_index}-{n}",)), user=user
                    ),
                    range(8),
                )
            )

    timed("8 threads add a tag to one row", 8, racing)
    tags = store.annotations(trajectory_ids=[ids[5]])[ids[5]]["tags"]
    kept = len([tag for tag in tags if tag.startswith("race")])
    rows.append(("  racing tags kept", f"{kept:,} of {8 * repeat:,}", "", ""))
    for count in (10_000, min(100_000, size)):
        started = time.perf_counter()
        services.annotate(trajectory_ids=ids[:count], change=AnnotationChange(add_tags=("bulk",)), user=user)
        seconds = time.perf_counter() - started
        rows.append((f"bulk add_tags on {count:,} rows", f"{count:,}", f"{seconds * 1000:.0f}", "(once)"))
    started = time.perf_counter()
    services.delete(trajectory_ids=ids[-1000:])
    rows.append(("delete 1,000 by id", "1,000", f"{(time.perf_counter() - started) * 1000:.0f}", "(once)"))
    print(f"store of {size:,} trajectories; machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print_table(("write", "rows", "p50 ms", "p95 ms"), rows)


if __name__ == "__main__":
    main()
