"""What following an import batch costs a web process: the new version's projection, its sort orders
and its search hits, carried over from the previous version or built anew.

    python benchmarks/append_bench.py                    # the 1M store of query_bench.py, 5,000 rows appended
    python benchmarks/append_bench.py --size 100000 --rows 2000

Serves the store query_bench.py builds (var/bench/store-N), snapshotted first and restored after. The
previous version's projection is loaded with its sort orders and the words of load_bench.py searched;
then `import_trajectories` appends `--rows` rows in another process, and the new version is followed
both ways: every sort order merged vs sorted again, every word's hits in the new fragments alone vs
over every row (equal results checked). Prints one table, alone on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load_bench import WORDS  # noqa: E402
from benchmarks.tables import machine_reference, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
ORDERS = [("created_at", True), ("reward", True), ("reward", False), ("step_count", False), ("exec_time", True),
          ("iteration_id", False), ("iteration_id", True), ("trajectory_id", False)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="the query_bench store to use")
    parser.add_argument("--rows", type=int, default=5_000, help="rows the import appends")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    data_dir = args.workdir / f"store-{args.size}" / "lancedb"
    source = args.workdir / "load-import-100000.jsonl"
    if not data_dir.exists() or not source.exists():
        raise SystemExit("run benchmarks/query_bench.py and benchmarks/load_bench.py first (the store, its import)")
    print(machine_reference())
    run = tempfile.mkdtemp(prefix="append-bench-", dir=args.workdir)
    env = {**os.environ, "TRAJSITE_DATA_DIR": str(data_dir), "TRAJSITE_VAR_DIR": run,
           "TRAJSITE_PROJECTION_DIR": "", "DATABASE_URL": f"sqlite:///{run}/site.sqlite3"}  # fmt: skip
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    tag = f"append-before-{int(time.time())}"
    subprocess.run([*MANAGE, "store_snapshot", "--tag", tag], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        _measure(env, source, args.rows, Path(run))
    finally:
        restored = subprocess.run(
            [*MANAGE, "store_restore", "--tag", tag, "--yes"], env=env, capture_output=True, text=True
        )
        print("store restored to its state before the run" if restored.returncode == 0 else restored.stderr)


def _measure(env: dict, source: Path, rows: int, run: Path) -> None:
    import django

    django.setup()
    import numpy as np

    from trajectories.query import parse_query
    from trajectories.store import textsearch
    from trajectories.store.projection import Projection
    from trajectories.store.repository import TrajectoryStore
    from trajectories.textquery import parse_text

    store = TrajectoryStore(uri=env["TRAJSITE_DATA_DIR"])
    before = store.engine.current()
    for name, descending in ORDERS:
        before.order(name, descending)
    terms = [term for word in WORDS for term in parse_text(word, None).required if term.indexed]
    for word in WORDS:
        store.page(query=parse_query({"q": word}))
    batch = run / "batch.jsonl"
    with source.open("rb") as lines, batch.open("wb") as out:
        out.writelines(islice(lines, rows))
    subprocess.run([*MANAGE, "import_trajectories", str(batch), "--no-progress"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    dataset = TrajectoryStore(uri=env["TRAJSITE_DATA_DIR"]).engine._open_tables()[0].to_lance()
    table = []
    started = time.perf_counter()
    appended = before.appended(dataset)
    table.append(
        ["the new rows read and appended to the columns", f"{(time.perf_counter() - started) * 1000:,.0f}", ""]
    )
    assert appended is not None, "the import did not only append"
    merged_ms = sorted_ms = 0.0
    for name, descending in ORDERS:
        started = time.perf_counter()
        merged = appended._merged_order(name, descending, before.order(name, descending))
        merged_ms += time.perf_counter() - started
        started = time.perf_counter()
        full = appended._built_order(name, descending)
        sorted_ms += time.perf_counter() - started
        assert merged is not None and np.array_equal(merged, full), (name, descending)
    table.append([f"{len(ORDERS)} sort orders, merged", f"{merged_ms * 1000:,.0f}", "identical"])
    table.append([f"{len(ORDERS)} sort orders, sorted again", f"{sorted_ms * 1000:,.0f}", ""])
    fresh = Projection(**{**appended.__dict__, "cache": {}})  # the same rows, nothing carried
    started = time.perf_counter()
    textsearch.warm(appended)
    carried_ms = time.perf_counter() - started
    started = time.perf_counter()
    for term in terms:
        textsearch._term_hits(fresh, term)
    full_ms = time.perf_counter() - started
    same = all(
        np.array_equal(
            np.sort(appended.cache[textsearch.TERMS][term][0]), np.sort(fresh.cache[textsearch.TERMS][term][0])
        )
        for term in terms
    )
    table.append(
        [
            f"{len(terms)} words' hits, new fragments alone",
            f"{carried_ms * 1000:,.0f}",
            "same rows" if same else "DIFFER",
        ]
    )
    table.append([f"{len(terms)} words' hits, over every row", f"{full_ms * 1000:,.0f}", ""])
    unindexed = textsearch.index_state(dataset)["unindexed"]
    print(f"\n{before.rows:,} rows, {rows:,} appended ({unindexed:,} rows not in the full-text index)")
    print_table(["following the new version", "ms", "result"], table)


if __name__ == "__main__":
    main()
