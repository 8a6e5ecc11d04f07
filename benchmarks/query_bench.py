"""Query benchmark: list pages, counts and single trajectories, server-side and uncached (no Redis).

    python benchmarks/query_bench.py --size 100000
    python benchmarks/query_bench.py --size 1000000     # imports 1M generated trajectories once (~70 s)

For each query: `cold` is the first call after the projection is built (it may build a sort order),
then p50/p95 over repeated calls, both for the store alone (filter + sort + count + fetching the
page's rows) and for the whole DRF request (plus auth, parsing and JSON rendering).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402
from trajectories.query import SORT_FIELDS  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--filter", default="", help="added to every query (no unfiltered path answers), e.g. step_count_min=1"
    )
    args = parser.parse_args()
    data_dir = _store(args.size, args.workdir)
    os.environ["TRAJSITE_DATA_DIR"] = str(data_dir)
    os.environ["TRAJSITE_VAR_DIR"] = str(args.workdir)
    os.environ["DATABASE_URL"] = f"sqlite:///{args.workdir / 'query-bench.sqlite3'}"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["TRAJSITE_CACHE"] = "0"  # the uncached path is what this measures
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    import django

    django.setup()
    _run(args.size, args.repeat, args.filter)


def _store(size: int, workdir: Path) -> Path:
    data_dir = workdir / f"store-{size}" / "lancedb"
    if data_dir.exists():
        return data_dir
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    source = workdir / f"generated-{size}-seed7.jsonl"
    if not source.exists():
        subprocess.run([*MANAGE, "generate_trajectories", "--count", str(size), "--out", str(source)], check=True)
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(data_dir),
        "TRAJSITE_VAR_DIR": str(workdir),
        "DATABASE_URL": f"sqlite:///{workdir / f'store-{size}' / 'db.sqlite3'}",
    }
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    subprocess.run([*MANAGE, "import_trajectories", str(source), "--no-progress"], env=env, check=True)
    subprocess.run([*MANAGE, "optimize_store"], env=env, check=True)
    return data_dir


def _run(size: int, repeat: int, extra: str = "") -> None:
    import psutil
    from django.core.management import call_command
    from django.http import QueryDict
    from django.test import Client

    from trajectories.query import parse_query
    from trajectories.store import get_store

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    store = get_store()
    rss = psutil.Process().memory_info().rss
    started = time.perf_counter()
    projection = store.engine.current()
    build = time.perf_counter() - started
    grown = (psutil.Process().memory_info().rss - rss) / 1e6
    print(
        f"{projection.rows:,} trajectories; projection built in {build:.2f} s, process grew {grown:,.0f} MB",
        file=sys.stderr,
    )

    def with_extra(text: str) -> str:
        return "&".join(part for part in (text, extra) if part)

    def last_page(text: str) -> str:
        count = store.page(query=parse_query(QueryDict(with_extra(text)))).count
        return f"{text}&page={max(1, math.ceil(count / 50))}"

    one = "agent_name=qwen2.5-7b-instruct"
    four = "training_id=grpo-qwen2.5-7b-math&iteration_id_min=400&iteration_id_max=450&reward_max=0.5&is_success=false"
    queries = [
        ("no filter, page 1", ""),
        ("no filter, page 100", "page=100"),
        ("no filter, last page", last_page("ordering=-created_at")),
        ("one filter, page 1", one),
        ("one filter, page 100", f"{one}&page=100"),
        ("one filter, last page", last_page(one)),
        ("four filters, page 1", four),
        ("four filters, last page", last_page(four)),
        ("tool=search&category=wrong_tool", "tool=search&category=wrong_tool"),
        ("root_cause contains", "root_cause=python"),
        ("data_id exact", "data_id=q00017"),
        ("search (substring of ids)", "search=q00017"),
        ("trajectory_id wildcard", "trajectory_id=grpo-llama*:i17:*"),
        ("two sort keys, one filter", f"{one}&ordering=-iteration_id,reward"),
    ]
    for key in SORT_FIELDS:
        queries.append((f"sort -{key}, one filter, page 100", f"{one}&ordering=-{key}&page=100"))
        queries.append((f"sort {key}, no filter, last page", last_page(f"ordering={key}")))
    if extra:
        queries = [(f"{label} + {extra}", with_extra(text)) for label, text in queries]
    rows = [_measure(label, text, store, client, repeat, parse_query, QueryDict) for label, text in queries]
    rows.append(_measure_detail(store, client, projection, repeat))
    _print(size, build, grown, rows)


def _measure(label, text, store, client, repeat, parse_query, query_dict):
    query = parse_query(query_dict(text))
    started = time.perf_counter()
    result = store.page(query=query)
    cold = (time.perf_counter() - started) * 1000
    store_times = []
    for _ in range(repeat):
        started = time.perf_counter()
        store.page(query=query)
        store_times.append((time.perf_counter() - started) * 1000)
    api_times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get("/api/trajectories/?" + text)
        api_times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (text, response.status_code, response.content[:200])
    return (label, result.count, cold, store_times, api_times)


def _measure_detail(store, client, projection, repeat):
    import random

    rng = random.Random(1)
    ids = [projection.ids.array[rng.randrange(projection.rows)].as_py() for _ in range(repeat)]
    started = time.perf_counter()
    store.get(trajectory_id=ids[0])
    cold = (time.perf_counter() - started) * 1000
    store_times, api_times = [], []
    for trajectory_id in ids:
        started = time.perf_counter()
        record = store.get(trajectory_id=trajectory_id)
        store_times.append((time.perf_counter() - started) * 1000)
        assert record is not None
        started = time.perf_counter()
        response = client.get(f"/api/trajectories/{trajectory_id}/")
        api_times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return ("one trajectory with steps", 1, cold, store_times, api_times)


def _print(size, build, grown, rows) -> None:
    print(machine_reference())
    print(
        f"machine: {os.cpu_count()} cores; {size:,} trajectories; projection build {build:.2f} s, +{grown:,.0f} MB RSS"
    )
    header = ("query", "count", "cold ms", "store p50", "store p95", "API p50", "API p95")
    lines = [header]
    for label, count, cold, store_times, api_times in rows:
        lines.append(
            (
                label,
                f"{count:,}",
                f"{cold:.1f}",
                f"{statistics.median(store_times):.1f}",
                f"{percentile(store_times, 0.95):.1f}",
                f"{statistics.median(api_times):.1f}",
                f"{percentile(api_times, 0.95):.1f}",
            )
        )
    print_table(lines[0], lines[1:])
    worst_api = max(percentile(api_times, 0.95) for *_, api_times in rows)
    worst_cold = max(cold for _, _, cold, _, _ in rows)
    print(f"worst API p95: {worst_api:.1f} ms; worst first use: {worst_cold:.1f} ms (target: both <= 15 ms)")


if __name__ == "__main__":
    main()
