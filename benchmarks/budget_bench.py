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

# {run}: a run's name, {question}: a data_id, {n}: the repeat, {low}-{high}: a range of iterations; the
# runs, questions and iterations are the store's own (read once by each measuring process).
_WITHIN_RUN = (
    ("one run, page n", "training_id={run}&page={n}"),
    ("one run, -reward, page 50", "training_id={run}&ordering=-reward&page=50"),
    ("run + iterations + reward + tool", "training_id={run}&iteration_id_min={low}&iteration_id_max={high}"
                                         "&reward_max=0.5&tool={tool}"),
    ("one run, one question", "training_id={run}&data_id={question}"),
    ("one run, two sort keys", "training_id={run}&ordering=sample_id,-reward&page={n}"),
)  # fmt: skip
_ACROSS = (
    ("across runs: no filter, page n", "page={n}"),
    ("across runs: one question", "data_id={question}"),
    ("across runs: bookmarked", "is_bookmarked=true&page={n}"),
)
_BOOKMARKED = 500
_REALISTIC_RUNS = 8  # the real dumps' copies as 8 runs, one after the other
_SETTLE_SECONDS = 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--budget", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--realistic", action="store_true", help="search_bench's store of real dumps copied")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # a web process with this budget
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(_measure(args)), flush=True)
        return
    print(machine_reference())
    if args.realistic:
        from benchmarks.search_bench import realistic_store

        existed, started = _environ(args).exists(), time.perf_counter()
        realistic_store(args.size, args.workdir, runs=_REALISTIC_RUNS)
        written = None if existed else time.perf_counter() - started
    else:
        written = scale_bench._store(args.size, args.workdir)
    _environ(args)
    _prepare(args.budget)
    results = []
    for budget in (0, args.budget):
        command = [sys.executable, __file__, "--measure", str(budget), "--size", str(args.size),
                   "--repeat", str(args.repeat), "--workdir", str(args.workdir)]  # fmt: skip
        command += ["--realistic"] if args.realistic else []
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    _print(args, written, results)


def _environ(args) -> Path:
    """The environment of the store measured; its data directory."""
    if not args.realistic:
        scale_bench._environ(args.size, args.workdir)
        return args.workdir / f"scale-{args.size}" / "lancedb"
    data_dir = args.workdir / f"realistic-{args.size}-{_REALISTIC_RUNS}runs" / "lancedb"
    os.environ["TRAJSITE_DATA_DIR"] = str(data_dir)
    os.environ["TRAJSITE_VAR_DIR"] = str(data_dir.parent)
    os.environ["DATABASE_URL"] = f"sqlite:///{args.workdir / 'realistic.sqlite3'}"
    os.environ["TRAJSITE_CACHE"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    return data_dir


def _shape(store) -> dict:
    """The store's runs (largest first), some of its questions, its iterations and a tool in use, read
    from LanceDB (the whole store's projection is built by the first page timed, not here)."""
    import pyarrow.compute as pc

    dataset = store._dataset("trajectories")
    counted = pc.value_counts(dataset.to_table(columns=["training_id"]).column("training_id")).to_pylist()
    runs = [entry["values"] for entry in sorted(counted, key=lambda entry: -entry["counts"]) if entry["values"]]
    sample = dataset.to_table(columns=["data_id", "iteration_id", "tools"], limit=50_000)
    questions = pc.unique(sample.column("data_id")).to_pylist()[:100]
    top = pc.max(sample.column("iteration_id")).as_py() or 0
    tools = pc.value_counts(pc.list_flatten(sample.column("tools"))).to_pylist()
    tool = max(tools, key=lambda entry: entry["counts"])["values"] if tools else "python"
    return {"runs": runs, "questions": questions, "top": top, "tool": tool}


def _asked(text: str, shape: dict, n: int, run: str | None = None) -> str:
    low = n * 7 % (shape["top"] + 1)
    return text.format(run=run, n=n, question=shape["questions"][n % len(shape["questions"])], low=low,
                       high=low + max(shape["top"] // 40, 1), tool=shape["tool"])  # fmt: skip


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
    _environ(args)
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

    shape = _shape(store)
    runs = shape["runs"]
    loads = [page(f"training_id={run}") for run in runs]  # the whole store's build comes with the first
    latencies = {}
    for label, text in _WITHIN_RUN:  # within the two runs asked last (held in both modes if they fit)
        page(_asked(text, shape, args.repeat + 1, runs[-1]))  # a sort order not warmed is built
        times = [page(_asked(text, shape, n + 1, runs[-1 - n % min(2, len(runs))])) for n in range(args.repeat)]
        latencies[label] = (percentile(times, 0.5), percentile(times, 0.95))
    for label, text in _ACROSS:
        times = [page(_asked(text, shape, n + 1)) for n in range(args.repeat)]
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
        "runs": len(runs),
        "rows": store.count(),
        "latencies": latencies,
    }


def _print(args, written: float | None, results: list[dict]) -> None:
    names = ["whole store" if r["budget"] == 0 else f"budget {r['budget']:,} rows" for r in results]
    took = "" if written is None else f", written in {written:.0f} s"
    shape = "real dumps copied" if args.realistic else "scale_bench's shape"
    print(f"\n{results[0]['rows']:,} trajectories ({shape}), {results[0]['runs']} runs{took}")
    memory = [f"{r['start_mb']:,.0f} / {r['end_mb']:,.0f} / {r['settled_mb']:,.0f} / {r['peak_mb']:,.0f} MB"
              for r in results]  # fmt: skip
    held = [", ".join(f"{run[:24]}: {rows:,}" for run, rows in r["held"].items()) or "(all)" for r in results]
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
