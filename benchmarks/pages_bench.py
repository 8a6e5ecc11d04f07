"""Page benchmark: server-side render time of the staff pages, uncached (no Redis), in-process.

    python benchmarks/pages_bench.py --size 1000000

Uses the store that query_bench.py builds (var/bench/store-N); adds two long trajectories once
(40 steps; 500 steps with a 5 MB observation) to time the detail page on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import percentile, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
LONG_IDS = ("bench-40-steps", "bench-500-steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    data_dir = args.workdir / f"store-{args.size}" / "lancedb"
    if not data_dir.exists():
        raise SystemExit(f"{data_dir} is missing: run benchmarks/query_bench.py --size {args.size} first")
    env = {
        "TRAJSITE_DATA_DIR": str(data_dir),
        "TRAJSITE_VAR_DIR": str(args.workdir),
        "DATABASE_URL": f"sqlite:///{args.workdir / 'pages-bench.sqlite3'}",
        "ALLOWED_HOSTS": "testserver",
        "TRAJSITE_CACHE": "0",  # the uncached path is what this measures
    }
    os.environ.update(env)
    _add_long_trajectories(args.workdir, env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    import django

    django.setup()
    _run(args.repeat)


def _add_long_trajectories(workdir: Path, env: dict) -> None:
    path = workdir / "long-trajectories.jsonl"
    if not path.exists():
        lines = []
        for trajectory_id, count in zip(LONG_IDS, (40, 500), strict=True):
            steps = []
            for index in range(count // 2):
                steps.append(
                    {
                        "role": "assistant",
                        "content": f"step {index}: looking again",
                        "tool_calls": [{"id": f"c{index}", "name": "bash", "arguments": {"command": "ls -la"}}],
                    }
                )
                observation = (
                    "x" * 5_000_000 if index == 3 and count == 500 else "\n".join(f"line {n}" for n in range(40))
                )
                steps.append({"role": "tool", "tool_call_id": f"c{index}", "content": observation})
            lines.append(
                orjson.dumps(
                    {
                        "trajectory_id": trajectory_id,
                        "data_id": "bench",
                        "steps": steps,
                        "training_id": "bench",
                        "agent_name": "bench",
                        "iteration_id": 0,
                    }
                )
            )
        path.write_bytes(b"\n".join(lines) + b"\n")
    run_env = {**os.environ, **env}
    subprocess.run([*MANAGE, "migrate", "-v0"], env=run_env, check=True)
    subprocess.run(
        [*MANAGE, "import_trajectories", str(path), "--no-progress"], env=run_env, check=True, stdout=subprocess.DEVNULL
    )


def _run(repeat: int) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from trajectories.store import get_store

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    started = time.perf_counter()
    projection = get_store().engine.current()
    print(
        f"{projection.rows:,} trajectories; projection built in {time.perf_counter() - started:.2f} s", file=sys.stderr
    )
    pages = [
        ("list, 50 rows, default", "/trajectories/"),
        ("list, one filter", "/trajectories/?agent_name=qwen2.5-7b-instruct"),
        (
            "list, four filters, sorted, page 2",
            "/trajectories/?training_id=grpo-qwen2.5-7b-math&iteration_id_min=100&iteration_id_max=150"
            "&reward_max=0.5&is_success=false&ordering=-exec_time&page=2",
        ),
        ("list, 200 rows", "/trajectories/?page_size=200"),
        ("detail, 40 steps", f"/trajectories/{LONG_IDS[0]}/"),
        ("detail, 500 steps + 5 MB step (first 50)", f"/trajectories/{LONG_IDS[1]}/"),
        ("detail, next 50 steps (fragment)", f"/trajectories/{LONG_IDS[1]}/steps/?steps_from=50"),
        ("overview", "/"),
    ]
    rows = []
    for label, url in pages:
        started = time.perf_counter()
        response = client.get(url)
        cold = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        rows.append((label, len(response.content), cold, times))
    print(f"machine: {os.cpu_count()} cores; {projection.rows:,} trajectories; Django test client, no cache")
    header = ("page", "HTML KB", "cold ms", "p50 ms", "p95 ms")
    lines = [header] + [
        (
            label,
            f"{size / 1024:,.0f}",
            f"{cold:.1f}",
            f"{statistics.median(times):.1f}",
            f"{percentile(times, 0.95):.1f}",
        )
        for label, size, cold, times in rows
    ]
    print_table(lines[0], lines[1:])


if __name__ == "__main__":
    main()
