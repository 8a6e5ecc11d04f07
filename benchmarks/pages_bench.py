"""Page benchmark: server-side render time of the staff pages, uncached (no Redis), in-process.

    python benchmarks/pages_bench.py --size 1000000
    python benchmarks/pages_bench.py --size 1000000 --writes   # also: the worst request while another
                                                               # process imports 10k rows, deletes
                                                               # them, and runs optimize_store

Uses the store that query_bench.py builds (var/bench/store-N); adds two long trajectories once
(40 steps; 500 steps with a 5 MB observation) to time the detail page on them. The first table is the
questions of the fast-pages issue with their targets (p50 <= 15 ms, p95 <= 25 ms; the trajectory page
<= 10 ms); with --writes, the second is every request made while the other process wrote, until this
process answered from the new version (target: none waits more than 50 ms). --writes leaves the store
as it found it (the rows it adds are deleted and compacted away).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
LONG_IDS = ("bench-40-steps", "bench-500-steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--writes", action="store_true", help="also time requests while another process writes")
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
    client = _run(args.repeat)
    if args.writes:
        _run_during_writes(client, args.workdir, env)


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
    _settle()
    pages = [
        # The questions of the fast-pages issue, with targets: p50 <= 15 ms, p95 <= 25 ms.
        ("Q1 list, no filter", "/trajectories/"),
        ("Q2 agent + reward >= 0.5, by -reward", QUESTION_2),
        ("Q3 same, page 200", f"{QUESTION_2}&page=200"),
        ("Q4 search on data_id", "/trajectories/?search=q00017"),
        ("Q5 category = timeout, by exec_time", "/trajectories/?category=timeout&ordering=exec_time"),
        ("Q6 trajectory page (target <= 10 ms)", "/trajectories/" + _typical_id() + "/"),
        ("list, four filters, sorted, page 2",
         "/trajectories/?training_id=grpo-qwen2.5-7b-math&iteration_id_min=100&iteration_id_max=150"
         "&reward_max=0.5&is_success=false&ordering=-exec_time&page=2"),
        ("list, 200 rows", "/trajectories/?page_size=200"),
        ("detail, 40 steps", f"/trajectories/{LONG_IDS[0]}/"),
        ("detail, 500 steps + 5 MB step (first 50)", f"/trajectories/{LONG_IDS[1]}/"),
        ("detail, next 50 steps (fragment)", f"/trajectories/{LONG_IDS[1]}/steps/?steps_from=50"),
        ("overview", "/"),
    ]  # fmt: skip
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
    print(machine_reference())
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
    return client


def _settle() -> None:
    """Wait for the sort orders and analytics a server builds after a projection (in the background):
    the pages are timed as a server that has been up a minute answers them."""
    import threading

    started = time.perf_counter()
    for thread in threading.enumerate():
        if thread.name.startswith("trajsite-"):
            thread.join()
    print(f"background warming finished after {time.perf_counter() - started:.1f} s more", file=sys.stderr)


QUESTION_2 = "/trajectories/?agent_name=qwen2.5-7b-instruct&reward_min=0.5&ordering=-reward"
DURING = ("/trajectories/", QUESTION_2, f"{QUESTION_2}&page=200", "/trajectories/?search=q00017",
          "/trajectories/?category=timeout&ordering=exec_time")  # fmt: skip


def _typical_id() -> str:
    from trajectories.query import TrajectoryQuery
    from trajectories.store import get_store

    return get_store().page(query=TrajectoryQuery(page=7, page_size=1)).rows[0]["trajectory_id"]


def _run_during_writes(client, workdir: Path, env: dict) -> None:
    """Requests (the five list questions in turn) while another process imports 10k new rows, deletes
    them, and compacts the store: each phase until this process answers from the version it wrote."""
    source = workdir / "generated-10000-seed9.jsonl"
    if not source.exists():
        subprocess.run([*MANAGE, "generate_trajectories", "--count", "10000", "--seed", "9", "--out", str(source)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    run_env = {**os.environ, **env}
    rows = []
    imported = _phase(
        client, "import 10k rows", [*MANAGE, "import_trajectories", str(source), "--no-progress"], run_env
    )
    rows.append(imported[0])
    job = re.search(r"import #(\d+)", imported[1]).group(1)
    delete = (
        "from trajectories.query import TrajectoryQuery; from trajectories.store import get_store; "
        "store = get_store(); "
        f"store.delete(trajectory_ids=store.matching_ids(query=TrajectoryQuery.where(import_id='{job}')))"
    )
    rows.append(_phase(client, "delete those 10k rows", [*MANAGE, "shell", "-c", delete], run_env)[0])
    rows.append(_phase(client, "optimize_store", [*MANAGE, "optimize_store", "--keep-minutes", "1"], run_env)[0])
    print("\nwhile another process writes (target: no request over 50 ms)")
    header = ("writer", "writer s", "requests", "p50 ms", "p95 ms", "max ms", "new version served after s")
    print_table(header, rows)


def _phase(client, label: str, command: list[str], env: dict) -> tuple[tuple, str]:
    from trajectories.store import get_store

    store = get_store()
    started = time.perf_counter()
    writer = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    times: list[float] = []
    finished_at = None
    turn = 0
    while True:
        if finished_at is None and writer.poll() is not None:
            finished_at = time.perf_counter()
        if finished_at is not None and store.engine.peek() is not None:
            break
        began = time.perf_counter()
        response = client.get(DURING[turn % len(DURING)])
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.status_code
        turn += 1
    output, errors = writer.communicate()
    if writer.returncode != 0:
        raise SystemExit(f"{label} failed:\n{output}\n{errors}")
    caught_up = time.perf_counter() - finished_at
    row = (
        label,
        f"{finished_at - started:.1f}",
        str(len(times)),
        f"{statistics.median(times):.1f}",
        f"{percentile(times, 0.95):.1f}",
        f"{max(times):.1f}",
        f"{caught_up:.1f}",
    )
    return row, output


if __name__ == "__main__":
    main()
