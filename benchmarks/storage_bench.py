"""Object storage benchmark: the same imports and questions on a local disk and on S3, side by side.

    python benchmarks/storage_bench.py --size 20000                   # real dumps copied to 20k rows
    python benchmarks/storage_bench.py --size 20000 --generated       # the demo generator's shape
    python benchmarks/storage_bench.py --endpoint http://host:9000    # an S3 server of your own
                                                                      # (bucket from --bucket, keys
                                                                      # from AWS_* in the environment)

Without --endpoint it starts moto's S3 server on loopback (the one the tests use): a Python server,
slower per request than real S3 in one region, so S3 figures here are an upper bound on latency and
a lower bound on throughput. Reads are uncached (no Redis) and in this process: what a web worker
does on a cache miss. Each store is imported by `manage.py import_trajectories` in its own process.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.search_bench import realistic_source  # noqa: E402
from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--generated", action="store_true", help="the demo generator's records, not real dumps")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--bucket", default="trajsite-test")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = _source(args)
    print(machine_reference())
    if args.endpoint:
        _bench(args, source, args.endpoint, f"s3://{args.bucket}/bench-{int(time.time())}")
        return
    from tests.s3 import running_s3

    with running_s3(args.workdir / "moto.log") as server:
        os.environ.update(server.env)
        _bench(args, source, server.endpoint, server.fresh_uri())


def _source(args) -> Path:
    if not args.generated:
        return realistic_source(args.size, args.workdir)
    path = args.workdir / f"generated-{args.size}.jsonl"
    if not path.exists():
        subprocess.run([*MANAGE, "generate_trajectories", "--count", str(args.size), "--out", str(path)], check=True)
    return path


def _bench(args, source: Path, endpoint: str, s3_uri: str) -> None:
    if args.endpoint:
        os.environ.setdefault("AWS_ENDPOINT", endpoint)
        os.environ.setdefault("AWS_ALLOW_HTTP", "true")
    local_uri = tempfile.mkdtemp(prefix="storage-bench-", dir=args.workdir)
    stores = {"local disk": local_uri, "S3": s3_uri}
    imports = {name: _import(uri, source, args.workdir) for name, uri in stores.items()}
    os.environ.update({"TRAJSITE_CACHE": "0", "DATABASE_URL": f"sqlite:///{args.workdir / 'storage-bench.sqlite3'}"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    import django

    django.setup()
    results = {name: _questions(uri, args.repeat) for name, uri in stores.items()}
    print(
        f"\n{args.size:,} {'generated' if args.generated else 'real-dump'} trajectories ({source.name}); S3: {endpoint}"
    )
    print_table(
        ["import", *stores],
        [["wall seconds", *(f"{imports[name]:.1f}" for name in stores)],
         ["trajectories/s", *(f"{args.size / imports[name]:,.0f}" for name in stores)]],
    )  # fmt: skip
    print()
    names = list(next(iter(results.values())))
    header = ["question (uncached, in-process)"] + [f"{name} {p}" for name in stores for p in ("p50 ms", "p95 ms")]
    rows = []
    for question in names:
        cells = [question]
        for name in stores:
            times = results[name][question]
            cells += [f"{percentile(times, 0.5):.1f}", f"{percentile(times, 0.95):.1f}"]
        rows.append(cells)
    print_table(header, rows)


def _import(uri: str, source: Path, workdir: Path) -> float:
    env = {**os.environ, "TRAJSITE_DATA_DIR": uri, "DATABASE_URL": f"sqlite:///{workdir / 'storage-import.sqlite3'}"}
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    started = time.perf_counter()
    subprocess.run([*MANAGE, "import_trajectories", str(source), "--no-progress"], env=env, check=True)
    return time.perf_counter() - started


def _questions(uri: str, repeat: int) -> dict[str, list[float]]:
    from django.conf import settings

    from trajectories.query import TrajectoryQuery, parse_query
    from trajectories.store import AnnotationChange, TrajectoryStore, reset_store, version_check_seconds

    settings.TRAJSITE_DATA_DIR = uri
    reset_store()
    times: dict[str, list[float]] = {}

    def timed(name: str, call) -> None:
        started = time.perf_counter()
        call()
        times.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    # As a web server would: with the version-check interval of its store kind (0 locally, 1 s on S3).
    store = TrajectoryStore(uri=uri, version_check_seconds=version_check_seconds(uri))
    timed("open and build the projection (cold)", lambda: store.engine.current())
    ids = store.matching_ids(query=TrajectoryQuery())
    rng = random.Random(7)
    questions = {
        "list page (varying pages)": lambda: store.page(query=TrajectoryQuery(page=rng.randint(1, 50))),
        "filtered list (reward >= 0.5)": lambda: store.page(query=parse_query({"reward_min": "0.5"})),
        "sorted by -reward": lambda: store.page(query=parse_query({"ordering": "-reward"})),
        "detail (one trajectory with steps)": lambda: store.get(trajectory_id=rng.choice(ids)),
        "content search (q=error)": lambda: store.page(query=parse_query({"q": "error"})),
        "stats by iteration": lambda: store.stats_by(query=TrajectoryQuery(), by="iteration_id"),
        "version check (another server wrote?)": lambda: store.sync(force=True),
    }
    for name, call in questions.items():
        for _ in range(repeat):
            timed(name, call)
    for number in range(min(repeat, 10)):
        change = AnnotationChange(add_tags=(f"bench-{number}",))
        timed("annotate one trajectory", lambda change=change: store.annotate(
            trajectory_ids=[rng.choice(ids)], change=change, user="bench"))  # fmt: skip
    from datetime import timedelta

    timed("optimize (compact, index, prune)", lambda: store.optimize(keep_versions=timedelta(minutes=60)))
    return times


if __name__ == "__main__":
    main()
