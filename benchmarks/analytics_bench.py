"""Analytics benchmark: stats per grouping key and GRPO group lists, server-side and uncached.

    python benchmarks/analytics_bench.py --size 1000000

Uses the store query_bench.py builds (var/bench/store-N). Each question is a whole API request made
through Django's test client with the cache off. `cold` is the first request after the projection is
built (it builds the group index and the sort orders it needs: off the request path in a server,
where they are warmed after each build); p50/p95 over repeated requests after it. Targets of the
training-steps issue: stats of a run or any filtered set <= 100 ms; a group list page <= 50 ms; one
data_id across training <= 50 ms; which questions got worse between two ranges <= 200 ms; compare of
two 40-step trajectories <= 50 ms (pages are timed too: the same targets).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

RUN = "training_id=grpo-qwen2.5-7b-math"
AGENT = "agent_name=qwen2.5-7b-instruct"
CHANGES = "/api/questions/changes/"
PAIR = "ids=bench-compare-a&ids=bench-compare-b"
QUESTION = "data_id=q00017&by=iteration_id"
QUESTIONS = [
    # (label, URL, target ms for p95)
    ("stats, every row, by iteration", "/api/stats/?by=iteration_id", 100),
    ("stats, one run, by iteration", f"/api/stats/?{RUN}&by=iteration_id", 100),
    ("stats, agent + reward >= 0.5, by agent", f"/api/stats/?{AGENT}&reward_min=0.5&by=agent_name", 100),
    ("stats, every row, by tool", "/api/stats/?by=tools", 100),
    ("stats, failures, by category", "/api/stats/?is_success=false&by=category", 100),
    ("stats, every row, by data_id", "/api/stats/?by=data_id", 100),
    ("one data_id across training", "/api/stats/?data_id=q00017&by=iteration_id", 50),
    ("groups, page 1", "/api/groups/", 50),
    ("groups of one run, zero signal", f"/api/groups/?{RUN}&zero_signal=true", 50),
    ("groups, by -reward_std, page 50", "/api/groups/?ordering=-reward_std&page=50", 50),
    ("groups, iterations 400-450, pass@4", "/api/groups/?iteration_id_min=400&iteration_id_max=450&k=4", 50),
    ("questions worse: iterations <=100 vs >=400", f"{CHANGES}?a.iteration_id_max=100&b.iteration_id_min=400", 200),
    ("questions worse: two agents", f"{CHANGES}?a.{AGENT}&b.agent_name={{other_agent}}", 200),
    ("compare two 40-step trajectories (API)", f"/api/trajectories/compare/?{PAIR}", 50),
    ("page: stats of one run by iteration", f"/trajectories/stats/?{RUN}&by=iteration_id", 100),
    ("page: one data_id across training, by run", f"/trajectories/stats/?{QUESTION}&series=training_id", 50),
    ("page: groups, page 1", "/trajectories/groups/", 50),
    ("page: one group (8 samples)", "{group}", 50),
    ("page: compare two 40-step trajectories", f"/trajectories/compare/?{PAIR}", 50),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    data_dir = args.workdir / f"store-{args.size}" / "lancedb"
    if not data_dir.exists():
        raise SystemExit(f"{data_dir} is missing: run benchmarks/query_bench.py --size {args.size} first")
    os.environ.update(
        {
            "TRAJSITE_DATA_DIR": str(data_dir),
            "TRAJSITE_VAR_DIR": str(args.workdir),
            "DATABASE_URL": f"sqlite:///{args.workdir / 'analytics-bench.sqlite3'}",
            "ALLOWED_HOSTS": "testserver",
            "TRAJSITE_CACHE": "0",  # the uncached path is what this measures
        }
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trajsite.settings")
    _add_compared(args.workdir)
    import django

    django.setup()
    _run(args.repeat)


def _settle() -> None:
    """Wait for what a server builds after a projection, in the background (sort orders, analytics)."""
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("trajsite-"):
            thread.join()


def _answers(body: dict) -> int:
    return body["count"] if "count" in body else len(body.get("results", body.get("rows", [])))


def _add_compared(workdir: Path) -> None:
    """Two 40-step trajectories that share their first tool calls, for the compare questions (once)."""
    import subprocess

    import orjson

    path = workdir / "compare-pair.jsonl"
    if path.exists():
        return
    lines = []
    for name, twist in (("bench-compare-a", 10), ("bench-compare-b", 14)):
        steps = [{"role": "user", "content": "Find the bug."}]
        for index in range(19):
            command = f"grep -n bug file{index}.py" if index < twist else f"python -m pytest -x tests/t{index}.py"
            steps.append(
                {
                    "role": "assistant",
                    "content": f"step {index}",
                    "tool_calls": [{"id": f"c{index}", "name": "bash", "arguments": {"command": command}}],
                }
            )
            output = "\n".join(f"line {n}" for n in range(30))
            steps.append({"role": "tool", "tool_call_id": f"c{index}", "content": output})
        steps.append({"role": "assistant", "content": "Fixed."})
        lines.append(orjson.dumps({"trajectory_id": name, "data_id": "bench", "training_id": "bench", "steps": steps}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], check=True)
    subprocess.run([*manage, "import_trajectories", str(path), "--no-progress"], check=True, stdout=subprocess.DEVNULL)


def _run(repeat: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from trajectories.store import get_store
    from trajectories.store.analytics import group_index

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    started = time.perf_counter()
    projection = get_store().engine.current()
    built = time.perf_counter() - started
    started = time.perf_counter()
    index = group_index(projection)
    indexed = time.perf_counter() - started
    _settle()
    print(
        f"{projection.rows:,} trajectories in {index.count:,} groups; projection {built:.2f} s, "
        f"group index {indexed:.2f} s (built once per projection, in the background in a server)",
        file=sys.stderr,
    )
    first = client.get(f"/api/groups/?{RUN}&iteration_id_min=400&page_size=1").json()["results"][0]
    group = "/trajectories/group/?" + urlencode({key: first[key] for key in ("training_id", "iteration_id", "data_id")})
    agents = [item["value"] for item in client.get("/api/trajectories/facets/").json()["agent_name"]]
    other_agent = next(agent for agent in agents if f"agent_name={agent}" != AGENT)
    rows = []
    for label, url, target in QUESTIONS:
        url = url.replace("{group}", group).replace("{other_agent}", other_agent)
        started = time.perf_counter()
        response = client.get(url)
        cold = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        if response["Content-Type"].startswith("application/json"):
            body = response.json()
            answers = f"{_answers(body):,}"
        else:
            answers = f"{len(response.content) // 1024:,} KB"
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        p95 = percentile(times, 0.95)
        rows.append(
            (
                label,
                answers,
                f"{cold:.1f}",
                f"{statistics.median(times):.1f}",
                f"{p95:.1f}",
                f"<= {target}",
                "yes" if p95 <= target else "NO",
            )
        )
    print(machine_reference())
    print(f"machine: {os.cpu_count()} cores; {projection.rows:,} trajectories; Django test client, no cache")
    print_table(("question", "results", "cold ms", "p50 ms", "p95 ms", "target", "met"), rows)


if __name__ == "__main__":
    main()
