"""Scale benchmark: list latency and web-process memory as the store grows (1M, 10M trajectories).

    python benchmarks/scale_bench.py --sizes 1000000,10000000

The projection holds no steps, so each store is written with short steps (one message) straight from
vectorised columns, in 1M-row commits through the store's own insert (the dedupe is in the commit):
about 15 s per million here, where the importer would take ~100 minutes for 10M. The columns the
projection holds have a realistic shape: ids of 45 characters, 8 training runs of 2,000 iterations,
100k questions, GRPO groups of 8, one to four of 12 tools, rewards with 5% nulls.

Each size is measured twice with two web processes started one after the other and both alive when
their memory is read: each holding a projection of its own (TRAJSITE_PROJECTION_DIR=""), then the
second mapping what the first shared (mapped.py). Per process: the projection's build and its warming
(sort orders, analytics); RSS counts every mapped page each process touched, PSS splits shared pages
between the processes that map them (so PSS summed is what the machine holds), USS is private memory.
Then p50/p95 of list pages answered by the store (filter + sort + count + the page's rows, no Redis),
each repeat with other values (no cached mask): in the first process with its own projection, in the
second with the mapped one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

_BATCH = 1_000_000
_TOOLS = np.array(
    ["search", "python", "browser", "bash", "calculator", "read_file", "write_file", "sql", "grep", "http",
     "memory", "finish"]
)  # fmt: skip
_RUNS = 8
_ITERATIONS = 2_000
_QUESTIONS = 100_000
# Each repeat asks with other values ({n}: the repeat's number), so no answer comes from a cached mask.
_QUERIES = (
    ("no filter, page n", "page={n}"),
    ("one run, page 1", "training_id=run-{run}-grpo-qwen2.5-7b"),
    ("one run, -reward, page 50", "training_id=run-{run}-grpo-qwen2.5-7b&ordering=-reward&page=50"),
    ("four filters", "training_id=run-{run}-grpo-qwen2.5-7b&iteration_id_min={n}0&iteration_id_max={n}50"
                     "&reward_max=0.5&tool=python"),
    ("one question", "data_id=q000{n}17"),
    ("tool + two sort keys", "tool={tool}&ordering=-iteration_id,reward"),
    ("two sort keys, page n", "ordering=sample_id,-reward&page={n}"),
    ("sort exec_time, deep page", "ordering=exec_time&page={deep}"),
    ("search (substring of ids)", "search=i{n}:q0004"),
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # a web process: measure this size
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.workdir, args.repeat)), flush=True)
        sys.stdin.readline()  # stay alive (holding the projection) until both processes are measured
        return
    print(machine_reference())
    results = []
    for size in (int(text) for text in args.sizes.split(",")):
        written = _store(size, args.workdir)
        for shared in (False, True):
            results.append({**_pair(size, args, shared=shared), "written": written, "shared": shared})
    _print(results)
    print(machine_reference())


def _pair(size: int, args, *, shared: bool) -> dict:
    """Two web processes of one machine, one after the other, both alive when their memory is read:
    each with a projection of its own, or the second mapping what the first shared."""
    import psutil

    projections = args.workdir / f"scale-{size}" / "projections"
    shutil.rmtree(projections, ignore_errors=True)
    env = {**os.environ, "TRAJSITE_PROJECTION_DIR": str(projections) if shared else ""}
    command = [sys.executable, __file__, "--measure", str(size), "--repeat", str(args.repeat),
               "--workdir", str(args.workdir)]  # fmt: skip
    children, measured = [], []
    try:
        for _ in range(2):
            child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            children.append(child)
            measured.append(json.loads(child.stdout.readline()))
        memory = [psutil.Process(child.pid).memory_full_info() for child in children]
    finally:
        for child in children:
            child.communicate("done\n", timeout=60)
    first, second = measured
    return {
        "size": first["size"],
        "first": first,
        "second": second,
        "rss_mb": [info.rss / 1e6 for info in memory],
        "pss_mb": [info.pss / 1e6 for info in memory],
        "uss_mb": [info.uss / 1e6 for info in memory],
    }


def _environ(size: int, workdir: Path) -> None:
    os.environ["TRAJSITE_DATA_DIR"] = str(workdir / f"scale-{size}" / "lancedb")
    os.environ["TRAJSITE_VAR_DIR"] = str(workdir / f"scale-{size}")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / f'scale-{size}' / 'db.sqlite3'}"
    os.environ["TRAJSITE_CACHE"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")


def _store(size: int, workdir: Path) -> float | None:
    """Seconds taken to write the store of `size` rows (None: it was there already)."""
    _environ(size, workdir)
    if (workdir / f"scale-{size}" / "complete").exists():
        return None
    import django

    django.setup()
    from trajectories.store import get_store

    store = get_store()
    started = time.perf_counter()
    for start in range(store.count(), size, _BATCH):
        stop = min(size, start + _BATCH)
        store.insert_new(trajectories=_rows(start, stop))
        print(f"  {stop:,} of {size:,} written, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    store.optimize(keep_versions=__import__("datetime").timedelta(0))
    (workdir / f"scale-{size}" / "complete").write_text("")
    return time.perf_counter() - started


def _rows(start: int, stop: int) -> pa.Table:
    """Rows start..stop of the synthetic store: the same rows whatever the batch size."""
    from trajectories.store.schema import TRAJECTORY_SCHEMA

    number = np.arange(start, stop, dtype=np.int64)
    rng = np.random.default_rng(start)
    count = len(number)
    sample = number % 8  # a GRPO group: 8 samples of one question at one iteration of one run
    group = number // 8
    run = group % _RUNS
    iteration = (group // _RUNS) % _ITERATIONS
    question = (group * 7919) % _QUESTIONS
    runs = np.char.add(np.char.add("run-", run.astype(str)), "-grpo-qwen2.5-7b")
    data_ids = np.char.add("q", np.char.zfill(question.astype(str), 6))
    parts = zip(runs.tolist(), iteration.tolist(), data_ids.tolist(), sample.tolist(), number.tolist(), strict=True)
    ids = [f"{r}:i{i}:{q}:s{s}:{n:010d}" for r, i, q, s, n in parts]
    tool_count = rng.integers(1, 5, count)
    picks = rng.integers(0, len(_TOOLS), (count, 4))
    tools = [list(dict.fromkeys(_TOOLS[row[:n]].tolist())) for row, n in zip(picks, tool_count, strict=True)]
    reward = rng.random(count)
    reward_nulls = rng.random(count) < 0.05
    steps = rng.integers(2, 40, count).astype(np.int32)
    created = 1_750_000_000_000_000 + number * 1_000_000
    columns = {
        "trajectory_id": pa.array(ids),
        "data_id": pa.array(data_ids),
        "training_id": pa.array(runs),
        "agent_name": pa.array(np.where(run < 4, "qwen2.5-7b-instruct", "llama-3.1-8b-instruct")),
        "epoch_id": pa.array(iteration // 500),
        "iteration_id": pa.array(iteration),
        "sample_id": pa.array(sample),
        "reward": pa.array(reward, mask=reward_nulls),
        "toolcall_reward": pa.array(rng.random(count) * 0.2),
        "res_reward": pa.array(np.round(reward), mask=reward_nulls),
        "exec_time": pa.array(rng.gamma(2.0, 15.0, count)),
        "step_count": pa.array(steps),
        "tool_call_count": pa.array((steps // 2).astype(np.int32)),
        "tools": pa.array(tools, pa.list_(pa.string())),
        "final_answer": pa.array(np.where(reward > 0.5, "The answer is 42.", "")),
        "steps": pa.array(['[{"role": "assistant", "content": "The answer is 42."}]'] * count, pa.large_string()),
        "answered": pa.array(reward > 0.5),
        "search_text": pa.array(["the answer is 42"] * count, pa.large_string()),
        "embedding": _embeddings(rng, count),
        "source_format": pa.array(["canonical"] * count),
        "source": pa.array(["scale_bench"] * count),
        "import_id": pa.array(["scale-bench"] * count),
        "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
        "imported_at": pa.array(created, pa.timestamp("us", tz="UTC")),
    }
    arrays = [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(count, f.type) for f in TRAJECTORY_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=TRAJECTORY_SCHEMA)


def _embeddings(rng: np.random.Generator, count: int) -> pa.Array:
    from trajectories.fields import VECTOR_DIM

    pool = rng.standard_normal((1_000, VECTOR_DIM)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    flat = pool[rng.integers(0, len(pool), count)].ravel()
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), VECTOR_DIM)


def _measure(size: int, workdir: Path, repeat: int) -> dict:
    _environ(size, workdir)
    import django

    django.setup()
    import psutil
    from django.http import QueryDict

    from trajectories.query import parse_query
    from trajectories.store import analytics, get_store

    process = psutil.Process()
    store = get_store()
    store.count()
    before = process.memory_info().rss
    started = time.perf_counter()
    projection = store.engine.current()
    build = time.perf_counter() - started
    built = process.memory_info().rss
    started = time.perf_counter()
    projection.warm()
    analytics.warm(projection)
    warm = time.perf_counter() - started
    warmed = process.memory_info().rss
    latencies = {}
    for label, text in _QUERIES:
        store.page(query=parse_query(QueryDict(_asked(text, repeat))))  # a sort order not warmed is built
        times = []
        for n in range(repeat):
            query = parse_query(QueryDict(_asked(text, n)))
            started = time.perf_counter()
            store.page(query=query)
            times.append((time.perf_counter() - started) * 1000)
        latencies[label] = (percentile(times, 0.5), percentile(times, 0.95))
    return {
        "size": projection.rows,
        "build": build,
        "warm": warm,
        "base_mb": before / 1e6,
        "built_mb": built / 1e6,
        "warm_mb": warmed / 1e6,
        "latencies": latencies,
    }


def _asked(text: str, n: int) -> str:
    return text.format(n=n + 1, run=n % _RUNS, tool=_TOOLS[n % len(_TOOLS)], deep=1 + n * 997 % 19_000)


def _print(results: list[dict]) -> None:
    print()
    print_table(
        ["trajectories", "projections", "store written", "1st process: built + warmed", "2nd process: built + warmed",
         "RSS 1st / 2nd", "PSS 1st / 2nd", "PSS both", "private (USS) both"],
        [
            [f"{r['size']:,}", "shared (mapped)" if r["shared"] else "one per process",
             "(there)" if r["written"] is None else f"{r['written']:.0f} s",
             f"{r['first']['build']:.1f} + {r['first']['warm']:.1f} s",
             f"{r['second']['build']:.1f} + {r['second']['warm']:.1f} s",
             " / ".join(f"{mb:,.0f}" for mb in r["rss_mb"]) + " MB",
             " / ".join(f"{mb:,.0f}" for mb in r["pss_mb"]) + " MB",
             f"{sum(r['pss_mb']):,.0f} MB", f"{sum(r['uss_mb']):,.0f} MB"]
            for r in results
        ],
    )  # fmt: skip
    print()
    header = ["list page (store, no cache), p50 / p95 ms"] + [
        f"{r['size']:,} {'mapped (2nd)' if r['shared'] else 'own (1st)'}" for r in results
    ]
    latencies = [r["second"]["latencies"] if r["shared"] else r["first"]["latencies"] for r in results]
    rows = [[label, *(f"{at[label][0]:.1f} / {at[label][1]:.1f}" for at in latencies)] for label, _ in _QUERIES]
    print_table(header, rows)


if __name__ == "__main__":
    main()
