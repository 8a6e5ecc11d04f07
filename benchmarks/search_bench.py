"""Content search, similar, clusters, export and monitors: server-side, uncached.

    python benchmarks/search_bench.py --size 1000000                  # the generated store
    python benchmarks/search_bench.py --realistic 100000              # real agent dumps, replicated

`--size` uses the store query_bench.py builds (var/bench/store-N: generated data, whose small
vocabulary puts the common words in every row: the worst case for a word index). `--realistic N`
builds var/bench/realistic-N from the real trajectories in ../shared/realdata (imported, exported
canonically, then copied N times over with new ids and iterations), so words occur as often as in
real dumps. Each search is a whole API request (Django test client, Redis cache off) made with the
projection's per-term answers and masks dropped first: `uncached` is what a new question costs;
`again` is the same question asked twice in a row (the per-term answers are kept per projection).
Targets (issue 13): search with filters p50 <= 100 ms, p95 <= 300 ms, Chinese included; similar <=
50 ms; clusters of 10k trajectories <= 10 s; monitors add <= 20% to import time; JSONL export >=
20,000 trajectories/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
GENERATED = [
    # (label, API query string)
    ("rare word", "q=KeyError"),
    ("rare word + run + reward >= 0.5", "q=KeyError&training_id=grpo-qwen2.5-7b-math&reward_min=0.5"),
    ("phrase", 'q="Permission denied"'),
    ("phrase, failures, by -reward", 'q="Permission denied"&is_success=false&ordering=-reward'),
    ("Chinese word", "q=权限不足"),
    ("Chinese word + iterations 100-200", "q=超时&iteration_id_min=100&iteration_id_max=200"),
    ("Chinese + English words", "q=问题 Traceback"),
    ("word - excluded word", "q=Traceback -KeyError"),
    ("common word (every row)", "q=error"),
    ("common word + agent, page 20", "q=error&agent_name=qwen2.5-7b-instruct&page=20"),
    ("prefix within a run's iteration", "q=Perm*&training_id=grpo-qwen2.5-7b-math&iteration_id=300"),
    ("regex within failures of an iteration", "regex=Errno 1[0-9]&iteration_id=300&is_success=false"),
]
REALISTIC = [
    ("rare word", "q=traceback"),
    ("word + reward >= 0.5", "q=refund&reward_min=0.5"),
    ("phrase", 'q="No such file"'),
    ("phrase, by -reward", 'q="def test"&ordering=-reward'),
    ("Chinese word", "q=权限不足"),
    ("Chinese word + iterations", "q=超时&iteration_id_min=10&iteration_id_max=40"),
    ("common word", "q=the"),
    ("two words", "q=user reservation"),
    ("regex within one iteration", "regex=[Ee]rror: .*&iteration_id=7"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--realistic", type=int, default=0, help="use real dumps copied to this many rows")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--skip", default="", help="comma-separated sections to skip: search,similar,clusters,export,monitors"
    )
    args = parser.parse_args()
    print(machine_reference())
    if args.realistic:
        data_dir, db = realistic_store(args.realistic, args.workdir), args.workdir / "realistic.sqlite3"
        questions = REALISTIC
    else:
        from benchmarks.query_bench import _store

        data_dir, db = _store(args.size, args.workdir), args.workdir / f"store-{args.size}" / "db.sqlite3"
        questions = GENERATED
    os.environ.update(
        TRAJSITE_DATA_DIR=str(data_dir), TRAJSITE_VAR_DIR=str(args.workdir), DATABASE_URL=f"sqlite:///{db}",
        ALLOWED_HOSTS="testserver", TRAJSITE_CACHE="0",
    )  # fmt: skip
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    skip = set(filter(None, args.skip.split(",")))
    client = _client()
    store = _ready_store()
    if "search" not in skip:
        _search(client, store, questions, args.repeat)
    if "similar" not in skip:
        _similar(client, store, args.repeat)
    if "clusters" not in skip:
        _clusters(store)
    if "export" not in skip:
        _export()
    if "monitors" not in skip:
        _monitors(args.workdir)


def _client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    return client


def _ready_store():
    from trajectories.store import get_store

    store = get_store()
    state = store.text_index_state()
    if not state["exists"] or state["unindexed"]:
        started = time.perf_counter()
        store.refresh_indexes()
        print(f"full-text index built/refreshed in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    projection = store.engine.current()
    print(f"projection of {projection.rows:,} rows in {time.perf_counter() - started:.1f} s")
    return store


def _forget(store) -> None:
    """Drop what a projection keeps of earlier questions (per-term answers, masks)."""
    projection = store.engine.current()
    projection.cache.pop("text_terms", None)
    projection.cache.pop("masks", None)


def _timed(client, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return elapsed, response.json()


def _search(client, store, questions, repeat: int) -> None:
    rows = []
    for label, params in questions:
        url = f"/api/trajectories/?{params}"
        uncached = []
        for _ in range(repeat):
            _forget(store)
            elapsed, body = _timed(client, url)
            uncached.append(elapsed)
        again = [_timed(client, url)[0] for _ in range(repeat)]
        rows.append((label, f"{body['count']:,}", f"{statistics.median(uncached):.1f}",
                     f"{percentile(uncached, 0.95):.1f}", f"{statistics.median(again):.1f}"))  # fmt: skip
    print("\nContent search (API request; target p50 <= 100 ms, p95 <= 300 ms uncached)")
    print_table(("question", "matches", "uncached p50 ms", "uncached p95 ms", "again p50 ms"), rows)
    _fold_in(client, store)


def _fold_in(client, store) -> None:
    """New rows are found at once (LanceDB scans what the index has not folded in): the cost of 2,000
    unindexed rows, then after the fold that every import ends with."""
    import orjson

    from trajectories.importing.batches import BatchBuilder
    from trajectories.importing.validation import Defaults, validate

    template = store.records(trajectory_ids=[store.page(query=_query({})).rows[0]["trajectory_id"]])
    base = next(iter(template))
    builder = BatchBuilder(on_duplicate="skip")
    for index in range(2_000):
        record = {
            "trajectory_id": f"bench-unindexed-{index}",
            "data_id": "bench-unindexed",
            "steps": [*orjson.loads(base["steps"]), {"role": "tool", "content": f"bench-marker 权限不足 {index}"}],
        }
        builder.add(validate(record, source="bench", source_format="canonical", defaults=Defaults()), location=None)
    store.upsert(trajectories=builder.build().trajectories)
    url = "/api/trajectories/?q=权限不足&data_id=bench-unindexed"
    _settled(store)
    _forget(store)
    before, body = _timed(client, url)
    started = time.perf_counter()
    store.refresh_indexes()
    fold = time.perf_counter() - started
    _settled(store)
    _forget(store)
    after, again = _timed(client, url)
    print(f"\n2,000 unindexed rows: search {before:.0f} ms ({body['count']} found); fold-in {fold:.2f} s; "
          f"search after it {after:.0f} ms ({again['count']} found)")  # fmt: skip
    from trajectories.query import TrajectoryQuery

    store.delete(trajectory_ids=store.matching_ids(query=TrajectoryQuery.where(data_id="bench-unindexed")))
    store.refresh_indexes()


def _settled(store, timeout: float = 300) -> None:
    """Wait until the projection serving is the newest version (a large one is rebuilt in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.engine.current()
        if store.engine.peek() is not None:
            return
        time.sleep(0.5)
    raise RuntimeError("the projection did not catch up")


def _query(params: dict):
    from trajectories.query import parse_query

    return parse_query(params)


def _similar(client, store, repeat: int) -> None:
    from trajectories.links import id_path

    rows = store.page(query=_query({"page_size": "20"})).rows
    ids = [row["trajectory_id"] for row in rows]
    started = time.perf_counter()
    store.similar(trajectory_id=ids[0], query=_query({}), k=10)
    load = (time.perf_counter() - started) * 1000
    table = []
    for label, params in (
        ("every row", ""),
        ("failures of one run", "training_id=grpo-qwen2.5-7b-math&is_success=false"),
    ):
        times = [_timed(client, f"/api/trajectories/{id_path(tid)}/similar/?{params}")[0] for tid in ids[:repeat]]
        table.append((label, f"{statistics.median(times):.1f}", f"{percentile(times, 0.95):.1f}"))
    print(f"\nSimilar (API request, k=10; target <= 50 ms); the first call read the embeddings: {load:.0f} ms")
    print_table(("among", "p50 ms", "p95 ms"), table)


def _clusters(store) -> None:
    rows = []
    for label, params in (
        (
            "failures of iterations 400-450",
            {"is_success": "false", "iteration_id_min": "400", "iteration_id_max": "450"},
        ),
        ("failures, one run", {"is_success": "false", "training_id": "grpo-qwen2.5-7b-math"}),
    ):
        query = _query(params)
        started = time.perf_counter()
        found = store.clusters(query=query, k=8)
        elapsed = time.perf_counter() - started
        rows.append((label, f"{found['matching']:,}", f"{found['considered']:,}", f"{elapsed:.2f}"))
    print("\nFailure clusters, k=8 (target: 10k trajectories <= 10 s)")
    print_table(("set", "matching", "clustered", "seconds"), rows)


def _export() -> None:
    from trajectories import exporting
    from trajectories.query import TrajectoryQuery

    rows = []
    for name, limit in (("jsonl", 100_000), ("sft", 50_000), ("parquet", 50_000), ("csv", 100_000)):
        query = TrajectoryQuery.where(iteration_id=exporting_iterations(limit))
        count = written = 0

        def progress(done, total):
            nonlocal count
            count = done

        started = time.perf_counter()
        for chunk in exporting.export(exporting.FORMATS[name], query=query, progress=progress):
            written += len(chunk)
        elapsed = time.perf_counter() - started
        rows.append((name, f"{count:,}", f"{written / 1e6:,.0f}", f"{count / elapsed:,.0f}"))
    print("\nExport, streamed (target: JSONL >= 20,000 trajectories/s)")
    print_table(("format", "trajectories", "MB", "trajectories/s"), rows)


def exporting_iterations(limit: int):
    """Iterations whose rows add up to about `limit` (a range filter, so the export is a real list)."""
    from trajectories.query import NumberMatch, TrajectoryQuery
    from trajectories.reads import stats

    total, last = 0, 0
    for point in stats(query=TrajectoryQuery(), by="iteration_id"):
        if point["key"] is None:
            continue
        total += point["count"]
        last = point["key"]
        if total >= limit:
            break
    return NumberMatch(maximum=last)


def _monitors(workdir: Path) -> None:
    """The same 20,000 generated rows imported into a fresh store with no monitor on, then with the
    four shipped ones and a word monitor on (each time the best of two)."""
    source = workdir / "monitor-bench.jsonl"
    if not source.exists():
        subprocess.run([*MANAGE, "generate_trajectories", "--count", "20000", "--out", str(source)], check=True)
    times = {}
    for label, enable in (("no monitor", False), ("5 monitors", True)):
        best = None
        for _ in range(2):
            best = min(filter(None, (best, _import_with_monitors(source, enable))))
        times[label] = best
    overhead = times["5 monitors"] / times["no monitor"] - 1
    print("\nMonitors at import (20,000 rows; target: <= 20% more time)")
    print_table(("monitors", "import s"), [(label, f"{seconds:.1f}") for label, seconds in times.items()])
    print(f"overhead: {overhead:+.0%}")


def _import_with_monitors(source: Path, enable: bool) -> float:
    folder = Path(tempfile.mkdtemp(prefix="trajsite-monitor-bench-"))
    env = {**os.environ, "TRAJSITE_DATA_DIR": str(folder / "lancedb"), "DATABASE_URL": f"sqlite:///{folder / 'db'}"}
    try:
        subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
        if enable:
            script = ("from trajectories.models import Monitor; Monitor.objects.update(enabled=True); "
                      "Monitor.objects.create(name='perm', query='q=\"Permission denied\"')")  # fmt: skip
            subprocess.run([*MANAGE, "shell", "-c", script], env=env, check=True)
        started = time.perf_counter()
        subprocess.run([*MANAGE, "import_trajectories", str(source), "--no-progress"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def realistic_store(size: int, workdir: Path, *, runs: int = 1) -> Path:
    """Real dumps copied to `size` rows (`realistic_source`), imported once into a local store."""
    data_dir = workdir / _named("realistic", size, runs) / "lancedb"
    if data_dir.exists():
        return data_dir
    source = realistic_source(size, workdir, runs=runs)
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{workdir / 'realistic.sqlite3'}",
    }
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    subprocess.run([*MANAGE, "import_trajectories", str(source), "--no-progress"], env=env, check=True)
    subprocess.run([*MANAGE, "optimize_store"], env=env, check=True)
    return data_dir


def _named(stem: str, size: int, runs: int) -> str:
    return f"{stem}-{size}" if runs == 1 else f"{stem}-{size}-{runs}runs"


def realistic_source(size: int, workdir: Path, *, runs: int = 1) -> Path:
    """Real dumps (nemo-gym, tau-bench, SWE-agent) imported once, exported canonically and copied
    `size` times over into a JSONL file: new ids, iterations and samples, the text as it was. With
    `runs`, the copies are that many training runs, one after the other (as runs are dumped)."""
    import orjson

    source = workdir / (_named("realistic", size, runs) + ".jsonl")
    if source.exists():
        return source
    realdata = ROOT.parent / "shared" / "realdata"
    seed_dir = workdir / "realistic-seed"
    seed_env = {**os.environ, "TRAJSITE_DATA_DIR": str(seed_dir / "lancedb"),
                "DATABASE_URL": f"sqlite:///{seed_dir / 'db.sqlite3'}"}  # fmt: skip
    seed = workdir / "realistic-seed.jsonl"
    if not seed.exists():
        shutil.rmtree(seed_dir, ignore_errors=True)
        seed_dir.mkdir(parents=True)
        subprocess.run([*MANAGE, "migrate", "-v0"], env=seed_env, check=True)
        subprocess.run([*MANAGE, "import_trajectories", str(realdata), "--no-progress"], env=seed_env)
        subprocess.run([*MANAGE, "export_trajectories", str(seed), "--no-progress"], env=seed_env, check=True)
    records = [orjson.loads(line) for line in seed.read_bytes().splitlines()]
    chinese = ["错误：权限不足，无法写入缓存目录", "工具调用超时，请稍后重试", "模型回答错误，奖励为零"]
    with source.open("wb") as out:
        for index in range(size):
            record = dict(records[index % len(records)])
            copy = index // len(records)
            record["trajectory_id"] = f"{record['trajectory_id']}#{copy}"
            record["iteration_id"] = copy % 50
            record["sample_id"] = index % 8
            record["training_id"] = record.get("training_id") or "realistic"
            if runs > 1:
                record["training_id"] += f"-run{index * runs // size}"
            if index % 10 == 0:  # a Chinese-speaking user's share of the prompts and tool output
                record["steps"] = [*record["steps"], {"role": "tool", "content": chinese[index % 3]}]
            out.write(orjson.dumps(record) + b"\n")
    return source


if __name__ == "__main__":
    main()
