"""Budget benchmark: a web process under TRAJSITE_PROJECTION_BUDGET_ROWS against one holding the whole
store, on scale_bench's store (8 training runs interleaved in every fragment: the worst layout for
finding one run's rows; real dumps, imported run by run, keep runs in fragments of their own).

    python benchmarks/budget_bench.py --size 1000000 --budget 300000

Each mode runs in a process of its own (TRAJSITE_PROJECTION_DIR="": no shared files, so memory is the
process's own), with malloc's arenas limited as in a gunicorn worker (trajsite/memory.py). Per process:
memory (RSS) at the start, after the questions, 15 s later (the warming of the runs loaded last done,
the heap trimmed) and its peak; the time to load a run not held (every run once, in turn: under the
budget each load drops the run asked least recently); p50 / p95 of list pages within the runs held,
each repeat with other values; and of lists across runs, which the budgeted process answers from
LanceDB (no filter, one question, bookmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import scale_bench  # noqa: E402
from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

_RUN = "run-{run}-grpo-qwen2.5-7b"
_WITHIN_RUN = (
    ("one run, page n", "training_id=" + _RUN + "&page={n}"),
    ("one run, -reward, page 50", "training_id=" + _RUN + "&ordering=-reward&page=50"),
    ("run + iterations + reward + tool", "training_id=" + _RUN + "&iteration_id_min={n}0&iteration_id_max={n}50"
                                         "&reward_max=0.5&tool=python"),
    ("one run, one question", "training_id=" + _RUN + "&data_id=q000{n}17"),
    ("one run, two sort keys", "training_id=" + _RUN + "&ordering=sample_id,-reward&page={n}"),
)  # fmt: skip
_ACROSS = (
    ("across runs: no filter, page n", "page={n}"),
    ("across runs: one question", "data_id=q000{n}17"),
    ("across runs: bookmarked", "is_bookmarked=true&page={n}"),
)
_BOOKMARKED = 500
_SETTLE_SECONDS = 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--budget", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # a web process with this budget
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(_measure(args)), flush=True)
        return
    print(machine_reference())
    written = scale_bench._store(args.size, args.workdir)  # sets the store's environment
    _prepare(args.budget)
    results = []
    for budget in (0, args.budget):
        command = [sys.executable, __file__, "--measure", str(budget), "--size", str(args.size),
                   "--repeat", str(args.repeat), "--workdir", str(args.workdir)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    _print(args, written, results)


def _prepare(budget: int) -> None:
    """The training_id index a budgeted store builds, and bookmarks spread over every run."""
    import django

    django.setup()
    from django.conf import settings

    from trajectories.query import TrajectoryQuery
    from trajectories.store import AnnotationChange, get_store, reset_store

    settings.TRAJSITE_PROJECTION_BUDGET_ROWS = budget
    reset_store()
    store = get_store()
    store.ensure_indexes()
    if store.count_matching(query=TrajectoryQuery.where(is_bookmarked=True)) < _BOOKMARKED:
        ids = store._dataset("trajectories").to_table(columns=["trajectory_id"], limit=_BOOKMARKED * 97)
        chosen = ids.column("trajectory_id").to_pylist()[::97]
        store.annotate(trajectory_ids=chosen, change=AnnotationChange(is_bookmarked=True), user="bench")


def _measure(args) -> dict:
    from trajsite.memory import keep_heap_small

    keep_heap_small()  # as gunicorn's workers do (trajsite/gunicorn.conf.py)
    scale_bench._environ(args.size, args.workdir)
    os.environ["TRAJSITE_PROJECTION_BUDGET_ROWS"] = str(args.measure)
    os.environ["TRAJSITE_PROJECTION_DIR"] = ""
    import django

    django.setup()
    import psutil
    from django.http import QueryDict

    from trajectories.query import parse_query
    from trajectories.store import get_store

    process = psutil.Process()
    store = get_store()
    store.count()
    start_mb = process.memory_info().rss / 1e6

    def page(text: str) -> float:
        started = time.perf_counter()
        store.page(query=parse_query(QueryDict(text)))
        return (time.perf_counter() - started) * 1000

    loads = [page(_RUN.format(run=run).join(("training_id=", ""))) for run in range(scale_bench._RUNS)]
    latencies = {}
    for label, text in _WITHIN_RUN:  # within the two runs asked last (held in both modes)
        page(text.format(n=args.repeat + 1, run=scale_bench._RUNS - 1))  # a sort order not warmed is built
        times = [page(text.format(n=n + 1, run=scale_bench._RUNS - 1 - n % 2)) for n in range(args.repeat)]
        latencies[label] = (percentile(times, 0.5), percentile(times, 0.95))
    for label, text in _ACROSS:
        times = [page(text.format(n=n + 1)) for n in range(args.repeat)]
        latencies[label] = (percentile(times, 0.5), percentile(times, 0.95))
    engine = store.engine
    end_mb = process.memory_info().rss / 1e6
    time.sleep(_SETTLE_SECONDS)  # background warming of the runs loaded last ends; the heap is trimmed
    return {
        "budget": args.measure,
        "start_mb": start_mb,
        "end_mb": end_mb,
        "settled_mb": process.memory_info().rss / 1e6,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "loads": loads,
        "held": getattr(engine, "held_runs", lambda: {})(),
        "latencies": latencies,
    }


def _print(args, written: float | None, results: list[dict]) -> None:
    names = ["whole store" if r["budget"] == 0 else f"budget {r['budget']:,} rows" for r in results]
    took = "" if written is None else f", written in {written:.0f} s"
    print(f"\n{args.size:,} trajectories, {scale_bench._RUNS} runs{took}")
    memory = [f"{r['start_mb']:,.0f} / {r['end_mb']:,.0f} / {r['settled_mb']:,.0f} / {r['peak_mb']:,.0f} MB"
              for r in results]  # fmt: skip
    held = [", ".join(f"{run[4:5]}: {rows:,}" for run, rows in r["held"].items()) or "(all)" for r in results]
    loads = [f"{percentile(r['loads'], 0.5):,.0f} / {max(r['loads']):,.0f}" for r in results]
    print_table(
        ["process", *names],
        [["RSS at start / after / 15 s later / peak", *memory], ["runs held at the end", *held],
         ["first page of each run in turn, p50 / max ms", *loads]],
    )  # fmt: skip
    print()
    labels = [label for label, _ in (*_WITHIN_RUN, *_ACROSS)]
    print_table(
        ["list page (store, no cache), p50 / p95 ms", *names],
        [[label, *(_pair(r["latencies"][label]) for r in results)] for label in labels],
    )


def _pair(pair: list[float]) -> str:
    return f"{pair[0]:.1f} / {pair[1]:.1f}"


if __name__ == "__main__":
    main()
