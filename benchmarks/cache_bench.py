"""Cache benchmark: cached reads in-process, then load from a second process (wrk) against gunicorn.

    python benchmarks/cache_bench.py --size 1000000 [--servers 2x4,4x4,3x1] [--seconds 15]
    python benchmarks/cache_bench.py --size 1000000 --servers 2x4 --varied   # every request a new question

With --varied, every request asks a different question (random agent, lowest reward, sort key and page;
half API, half list page), so the cache rarely answers: a team browsing different runs. The target of
the fast-pages issue for it: >= 100 requests/s on 2 workers x 4 threads, 10 clients p95 <= 150 ms.

Needs the store that query_bench.py builds (var/bench/store-N) and a Redis (REDIS_URL, default the
local one, database 14 with its own key prefix). Installs Debian's wrk when it is missing. Every load
run is bounded in time and only targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.tables import percentile  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
PATHS = [
    "/trajectories/",
    "/trajectories/?agent_name=qwen2.5-7b-instruct",
    "/trajectories/?ordering=-reward&page=3",
    "/trajectories/?training_id=grpo-qwen2.5-7b-math&iteration_id_min=400&iteration_id_max=450&is_success=false",
    "/api/trajectories/?agent_name=llama3.1-8b-instruct&reward_min=0.5",
    "/api/trajectories/?ordering=exec_time&page=100",
    "/api/trajectories/?tool=search&category=wrong_tool",
    "/api/trajectories/facets/",
    "/",
]
WRK_SCRIPT = """
local paths = {%(paths)s}
local index = 0
request = function()
  index = index %% #paths + 1
  return wrk.format("GET", paths[index], {["Cookie"] = "%(cookie)s"})
end
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT p50=%%.3f p95=%%.3f p99=%%.3f max=%%.3f requests=%%d errors=%%d non2xx=%%d seconds=%%.3f\\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration / 1e6))
end
"""

VARIED_SCRIPT = """
local agents = {%(agents)s}
local sorts = {"reward", "-reward", "exec_time", "-exec_time", "-created_at", "step_count", "-iteration_id",
               "data_id", "-tool_call_count", "category"}
math.randomseed(%(seed)d)
request = function()
  local query = string.format("agent_name=%%s&reward_min=%%.2f&ordering=%%s&page=%%d",
    agents[math.random(#agents)], math.random(0, 99) / 100, sorts[math.random(#sorts)], math.random(1, 40))
  local prefix = math.random() < 0.5 and "/api/trajectories/?" or "/trajectories/?"
  return wrk.format("GET", prefix .. query, {["Cookie"] = "%(cookie)s"})
end
""" + WRK_SCRIPT.split("end\n", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--servers", default="2x4,4x4,3x1", help="gunicorn WORKERSxTHREADS, comma-separated")
    parser.add_argument("--connections", default="10,50")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--varied", action="store_true", help="every request a different question")
    args = parser.parse_args()
    data_dir = args.workdir / f"store-{args.size}" / "lancedb"
    if not data_dir.exists():
        raise SystemExit(f"{data_dir} is missing: run benchmarks/query_bench.py --size {args.size} first")
    scratch = Path(tempfile.mkdtemp(prefix="cache-bench-", dir=args.workdir))
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(data_dir),
        "TRAJSITE_VAR_DIR": str(scratch),
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "ALLOWED_HOSTS": "127.0.0.1,testserver",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CACHE_KEY_PREFIX": "trajsite-bench",
        "DJANGO_SETTINGS_MODULE": "trajsite.settings",
    }
    os.environ.update(env)
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    import django

    django.setup()
    cookie = _session_cookie()
    in_process = _in_process(cookie)
    load = []
    try:
        for server in args.servers.split(","):
            workers, threads = (int(part) for part in server.split("x"))
            connections = [int(c) for c in args.connections.split(",")]
            load.extend(_load(workers, threads, connections, args.seconds, env, _script(cookie, varied=args.varied)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _print(args.size, in_process, load)


def _session_cookie() -> str:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _in_process(cookie: str) -> list[tuple[str, float, float]]:
    from django.core.cache import cache as redis_cache
    from django.http import QueryDict
    from django.test import Client

    from trajectories import reads
    from trajectories.query import parse_query

    redis_cache.delete_pattern("*")
    client = Client(HTTP_COOKIE=cookie)
    query = parse_query(QueryDict("agent_name=qwen2.5-7b-instruct&ordering=-reward&page=3"))
    rows = []
    for label, call in (
        ("reads.page() hit (filtered, sorted, page 3)", lambda: reads.page(query=query)),
        ("API list request, cache hit", lambda: client.get("/api/trajectories/?agent_name=qwen2.5-7b-instruct")),
        ("list page request, cache hit", lambda: client.get("/trajectories/?agent_name=qwen2.5-7b-instruct")),
    ):
        call()
        times = []
        for _ in range(200):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        rows.append((label, statistics.median(times), percentile(times, 0.95)))
    return rows


def _script(cookie: str, *, varied: bool) -> str:
    if not varied:
        return WRK_SCRIPT % {"paths": ", ".join(f'"{path}"' for path in PATHS), "cookie": cookie}
    from trajectories.store import get_store

    # Agents with enough rows that every page asked for exists (the pages benchmark adds a tiny one).
    agents = [value for value, count in get_store().facets()["agent_name"] if value is not None and count >= 10_000]
    return VARIED_SCRIPT % {"agents": ", ".join(f'"{agent}"' for agent in agents), "cookie": cookie, "seed": 7}


def _load(workers: int, threads: int, connections: list[int], seconds: int, env: dict, script_text: str) -> list[dict]:
    wrk = _wrk()
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "trajsite.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        _wait_until_serving(port, re.search(r'"Cookie"\] = "([^"]+)"', script_text).group(1))
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text(script_text)
        # Warm every worker's projection and the cache before measuring.
        subprocess.run(
            [wrk, "-t2", "-c8", "-d20s", "-s", str(script), f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        results = []
        for count in connections:
            print(f"load: {workers} workers, {count} connections, {seconds} s ...", file=sys.stderr)
            output = subprocess.run(
                [
                    wrk,
                    "-t2",
                    f"-c{count}",
                    f"-d{seconds}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds + 60,
            ).stdout
            values = dict(re.findall(r"(\w+)=([\d.]+)", output.split("RESULT", 1)[1]))
            results.append(
                {"workers": f"{workers} × {threads}", "connections": count, **{k: float(v) for k, v in values.items()}}
            )
        return results
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("wrk")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(port: int, cookie: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/trajectories/", headers={"Cookie": cookie})
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("gunicorn did not start serving")


def _print(size: int, in_process, load) -> None:
    print(f"machine: {os.cpu_count()} cores; {size:,} trajectories; Redis on loopback")
    print("| in-process, warm cache | p50 ms | p95 ms |")
    print("|---|---|---|")
    for label, p50, p95 in in_process:
        print(f"| {label} | {p50:.2f} | {p95:.2f} |")
    print()
    columns = (
        "gunicorn workers × threads",
        "wrk connections",
        "requests/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "requests",
        "errors",
        "non-2xx",
    )
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in load:
        rate = row["requests"] / row["seconds"]
        print(
            f"| {row['workers']} | {row['connections']} | {rate:,.0f} | {row['p50']:.1f} | {row['p95']:.1f} | "
            f"{row['p99']:.1f} | {row['max']:.1f} | {row['requests']:,.0f} | {row['errors']:.0f} "
            f"| {row['non2xx']:.0f} |"
        )


if __name__ == "__main__":
    main()
