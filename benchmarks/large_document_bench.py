"""Large-document benchmark: one `.json` results file of about 2 GB against the same records as JSONL.

    python benchmarks/large_document_bench.py               # ~2 GB (about 230k records, generated once)
    python benchmarks/large_document_bench.py --gigabytes 0.5

The document is shaped like a results file (`{"info": {...}, "tasks": [...], "simulations": [...]}`), too
large to read whole, so the importer streams it. Prints, for each file, seconds, records/s and the import
peak RSS of the import with its worker processes: the target is the same memory bound as JSONL (1.5 GB).
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
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.processes import run_measured  # noqa: E402
from benchmarks.tables import print_table  # noqa: E402
from trajectories.demo import DemoShape, generate  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
SUMMARY = re.compile(r"([\d,]+) imported, .* in ([\d.]+) s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    document, lines, count = _files(args.gigabytes, args.workdir)
    rows = []
    for label, path in (("JSONL, one record per line", lines), ("one .json document (streamed)", document)):
        imported, seconds, peak = _import(path, args.workdir)
        rows.append(
            (label, f"{path.stat().st_size / 1e9:.2f}", f"{imported:,}", f"{seconds:.1f}",
             f"{imported / seconds:,.0f}", f"{peak:,.0f}")
        )  # fmt: skip
    print(f"machine: {os.cpu_count()} cores; {count:,} records")
    print_table(("file", "GB", "imported", "import s", "records/s", "peak RSS MB (with workers)"), rows)


def _files(gigabytes: float, workdir: Path) -> tuple[Path, Path, int]:
    count = int(gigabytes * 1e9 / 8_700)
    document = workdir / f"results-{count}.json"
    lines = workdir / f"results-{count}.jsonl"
    if not document.exists() or not lines.exists():
        print(f"generating {count:,} records ...", file=sys.stderr)
        with open(document, "wb") as whole, open(lines, "wb") as each:
            whole.write(b'{"info": {"agent_info": {"llm": "bench-model"}, "run_name": "bench"}, "tasks": [')
            whole.write(b",".join(orjson.dumps({"id": index, "prompt": "task"}) for index in range(100)))
            whole.write(b'], "simulations": [')
            for index, record in enumerate(generate(DemoShape(count=count, seed=3))):
                record["messages"] = record.pop("steps")
                encoded = orjson.dumps(record)
                whole.write((b"," if index else b"") + encoded)
                each.write(encoded + b"\n")
            whole.write(b"]}")
    return document, lines, count


def _import(path: Path, workdir: Path) -> tuple[int, float, float]:
    scratch = Path(tempfile.mkdtemp(prefix="trajsite-large-", dir=workdir))
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(scratch / "lancedb"),
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "TRAJSITE_VAR_DIR": str(scratch),
    }
    try:
        subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
        print(f"importing {path.name} ...", file=sys.stderr)
        started = time.perf_counter()
        finished = run_measured([*MANAGE, "import_trajectories", str(path), "--no-progress"], env)
        match = SUMMARY.search(finished.stdout)
        if finished.returncode != 0 or match is None:
            raise SystemExit(f"import failed:\n{finished.stdout}\n{finished.stderr}")
        seconds = float(match.group(2)) or time.perf_counter() - started
        return int(match.group(1).replace(",", "")), seconds, finished.all_peak_mb
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
