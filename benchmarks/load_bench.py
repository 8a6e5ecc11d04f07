"""Load and fault benchmark: many people using a served site at once while a large import runs.

    python benchmarks/load_bench.py                      # 50 clients, 5 minutes, 1M store, 100k import
    python benchmarks/load_bench.py --faults             # also: SIGKILL a web worker at 1/3 of the
                                                         # run, restart Redis at 2/3
    python benchmarks/load_bench.py --clients 10 --seconds 60 --import-size 10000   # a quick look
    python benchmarks/load_bench.py --realistic --size 200000   # real agent dumps copied to 200k rows

Serves the store that query_bench.py builds (var/bench/store-N) with gunicorn (trajsite/gunicorn.conf.py)
and an import worker, on a Redis of its own (so restarting it disturbs nothing else). The store is
snapshotted first and restored after (`store_snapshot` / `store_restore`), so the run leaves it as
it was. Each client loops: a request of a random kind with random parameters (list, list page,
trajectory, stats, search, groups, annotate), then a pause of 0.5-2 s, as a person does. Requests
whose `Server-Timing` shows store time missed the cache. Afterwards every acknowledged annotation
and every imported id is checked. Prints per-kind latency, errors, misses, and the web workers'
memory over time.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.search_bench import realistic_source, realistic_store  # noqa: E402
from benchmarks.tables import machine_reference, percentile, print_table  # noqa: E402

MANAGE = [sys.executable, str(ROOT / "manage.py")]
WORDS = ["error", "Traceback", "KeyError", "权限不足", "timeout", '"Permission denied"', "answer", "错误", "retry"]
ORDERINGS = ["-created_at", "-reward", "reward", "step_count", "-exec_time", "iteration_id", "-iteration_id"]
NO_EDITS = False
UNIQUE_TAGS = False
CLIENTS = 1
LAST_ITERATION = 200
_USED: dict[int, set[tuple[str, str]]] = {}
TAGS = [
    "reviewed", "bad-tool-call", "reward-hacking", "good-example", "loops", "wrong-answer", "needs-look",
    "format-error", "timeout", "hallucinated-tool", "gave-up", "partial", "lucky", "verbose", "off-task",
    "unsafe", "duplicate-question", "env-bug", "grader-bug", "keep",
]  # fmt: skip
WARM_SECONDS = 60
KINDS = {"list": 30, "list page": 10, "detail": 20, "stats": 8, "search": 15, "groups": 5, "annotate": 12}


@dataclass
class Done:
    kind: str
    started: float
    ms: float
    status: int
    missed: bool


@dataclass
class Shared:
    done: list[Done] = field(default_factory=list)
    annotated: list[tuple[str, str]] = field(default_factory=list)
    # (RSS, PSS, PSS anonymous, PSS file-backed) per worker
    memory: list[tuple[float, list[tuple[int, int, int, int]]]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    refused: list[tuple[int, str, bytes]] = field(default_factory=list)  # the first non-2xx answers
    processes: dict[str, int | None] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds each used, as last seen
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="the query_bench store to serve")
    parser.add_argument(
        "--realistic", action="store_true",
        help="serve real dumps copied to --size rows (search_bench.py's store, built if missing), "
        "and import real dumps too",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--import-size", type=int, default=100_000, help="0: no import during the load")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--no-edits", action="store_true", help="no annotate requests (reads only)")
    parser.add_argument("--unique-tags", action="store_true", help="every edit a new tag (worst case)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    global NO_EDITS, UNIQUE_TAGS, CLIENTS
    NO_EDITS, UNIQUE_TAGS, CLIENTS = args.no_edits, args.unique_tags, args.clients
    if args.realistic:
        data_dir = realistic_store(args.size, args.workdir)
    else:
        data_dir = args.workdir / f"store-{args.size}" / "lancedb"
    if not data_dir.exists():
        raise SystemExit(f"{data_dir} is missing: run benchmarks/query_bench.py --size {args.size} first")
    print(machine_reference())
    run = tempfile.mkdtemp(prefix="load-bench-", dir=args.workdir)
    redis_port = _free_port()
    env = {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(data_dir),
        "TRAJSITE_VAR_DIR": run,
        "DATABASE_URL": f"sqlite:///{run}/site.sqlite3",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CACHE_KEY_PREFIX": "load",
        "WEB_CONCURRENCY": str(args.web_workers),
        "TRAJSITE_THREADS": str(args.threads),
        "TRAJSITE_BIND": f"127.0.0.1:{_free_port()}",
        "TRAJSITE_ACCESS_LOG": os.devnull,
        "LOG_LEVEL": os.environ.get("LOAD_LOG_LEVEL", "WARNING"),
    }
    redis = _start_redis(redis_port, run)
    source = _import_source(args.workdir, args.import_size, realistic=args.realistic) if args.import_size else None
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    token = _staff_token(env)
    tag = f"load-before-{int(time.time())}"
    subprocess.run([*MANAGE, "store_snapshot", "--tag", tag], env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "trajsite/gunicorn.conf.py", "trajsite.wsgi"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(f"{run}/gunicorn.log", "w"),  # noqa: SIM115
    )  # fmt: skip
    worker = subprocess.Popen([*MANAGE, "import_worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shared = Shared()
    try:
        site = Site(env["TRAJSITE_BIND"], token)
        server.bind, server.token = (site.host, site.port), site.token
        ready_after = _until_ready(site, args.web_workers)
        print(f"every web worker ready (projection built, sort orders and analytics warmed) after {ready_after:.1f} s")
        ids, runs = _sample(site)
        print(f"asking of {len(ids)} sampled ids, {len(runs)} runs, iterations 0-{LAST_ITERATION}")
        importing = _start_import(env, source, shared) if source else None
        processes = {"web workers": server.pid, "import": importing.pid if importing else None,
                     "clients (this process)": os.getpid(), "Redis": redis.pid}  # fmt: skip
        before = shared.cpu = _cpu_seconds(processes)
        shared.processes = processes
        _load(site, args, shared, ids, runs, server, redis_port, run)
        used = {name: seconds - before.get(name, 0.0) for name, seconds in shared.cpu.items()}
        import_seconds = _wait(importing, shared) if importing else 0.0
        _report(args, shared, import_seconds)
        _cpu_table(used, args.seconds)
        _verify(site, shared, env, args.import_size)
    finally:
        server.terminate()
        worker.terminate()
        server.wait(timeout=60)
        worker.wait(timeout=60)
        restored = subprocess.run(
            [*MANAGE, "store_restore", "--tag", tag, "--yes"], env=env, capture_output=True, text=True
        )
        print("store restored to its state before the run" if restored.returncode == 0 else restored.stderr)
        _stop_redis(redis)


class Site:
    def __init__(self, bind: str, credentials: str) -> None:
        self.host, port = bind.split(":")
        self.port = int(port)
        self.token, self.session = credentials.split()
        self.local = threading.local()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, dict]:
        """One request on this thread's keep-alive connection. A reused connection the server closed
        while idle is opened again once, as browsers do (the request never reached the server)."""
        reused = getattr(self.local, "connection", None) is not None
        try:
            return self._send(method, path, body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
            return self._send(method, path, body)

    def _send(self, method: str, path: str, body: dict | None) -> tuple[int, bytes, dict]:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        if not path.startswith("/api/"):
            # Pages know sessions only; the API gets none (with one, DRF would ask a PATCH for a CSRF token).
            headers["Cookie"] = f"sessionid={self.session}"
        try:
            connection.request(method, path, body=orjson.dumps(body) if body is not None else None, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.read(), dict(answer.getheaders())
        except (OSError, http.client.HTTPException):
            self.local.connection = None
            connection.close()
            raise


def _load(site: Site, args, shared: Shared, ids: list[str], runs: list[str], server, redis_port: int, run: str) -> None:
    started = shared.started = time.monotonic()
    stop = threading.Event()
    clients = [
        threading.Thread(target=_client, args=(site, shared, ids, runs, stop, number), daemon=True)
        for number in range(args.clients)
    ]
    sampler = threading.Thread(target=_sample_memory, args=(server.pid, shared, stop, started), daemon=True)
    sampler.start()
    for client in clients:
        client.start()
        time.sleep(1.0 / args.clients)  # arrive over a second, not at once
    faults = [(args.seconds / 3, "kill a web worker"), (2 * args.seconds / 3, "restart Redis")] if args.faults else []
    while time.monotonic() - started < args.seconds:
        if faults and time.monotonic() - started >= faults[0][0]:
            _, what = faults.pop(0)
            _fault(what, server, redis_port, run)
            with shared.lock:
                shared.events.append((time.monotonic(), what))
        time.sleep(0.2)
    stop.set()
    for client in clients:
        client.join(timeout=180)


def _client(site: Site, shared: Shared, ids: list[str], runs: list[str], stop: threading.Event, number: int) -> None:
    rng = random.Random(number)
    kinds = [kind for kind in KINDS if not (NO_EDITS and kind == "annotate")]
    weights = [KINDS[kind] for kind in kinds]
    count = 0
    while not stop.is_set():
        kind = rng.choices(kinds, weights)[0]
        method, path, body = _request(kind, rng, ids, runs, number, count)
        count += 1
        started = time.monotonic()
        try:
            status, answer, headers = site.request(method, path, body)
        except (OSError, http.client.HTTPException) as error:
            status, answer, headers = 599, str(error).encode(), {}
        elapsed = (time.monotonic() - started) * 1000
        timing = headers.get("Server-Timing", "")
        store = re.search(r"store;dur=([\d.]+)", timing)
        with shared.lock:
            shared.done.append(Done(kind, started, elapsed, status, bool(store and float(store.group(1)) > 0)))
            if kind == "annotate" and status == 200:
                shared.annotated.append((path.split("/")[3], body["add_tags"][0]))
            if status >= 300 and len(shared.refused) < 10:
                shared.refused.append((status, path, answer[:300]))
        stop.wait(rng.uniform(0.5, 2.0))


def _request(kind: str, rng: random.Random, ids: list[str], runs: list[str], client: int, count: int):
    filters = {}
    if rng.random() < 0.6:
        filters["training_id"] = rng.choice(runs)
    if rng.random() < 0.4:
        low = rng.randint(0, max(0, LAST_ITERATION - 20))
        filters.update(iteration_id_min=low, iteration_id_max=low + rng.randint(0, 20))
    if rng.random() < 0.3:
        filters["reward_min"] = round(rng.random(), 2)
    query = lambda extra: urllib.parse.urlencode({**filters, **extra})  # noqa: E731
    # Mostly the first pages, sometimes further, as people page.
    page = rng.choice([1, 1, 1, 2, 2, 3, rng.randint(1, 10)])
    if kind == "list":
        return "GET", f"/api/trajectories/?{query({'page': page, 'ordering': rng.choice(ORDERINGS)})}", None
    if kind == "list page":
        return "GET", f"/trajectories/?{query({'page': page, 'ordering': rng.choice(ORDERINGS)})}", None
    if kind == "detail":
        return "GET", f"/api/trajectories/{urllib.parse.quote(rng.choice(ids), safe='')}/", None
    if kind == "stats":
        return "GET", f"/api/stats/?{query({'by': rng.choice(['iteration_id', 'agent_name', 'data_id'])})}", None
    if kind == "search":
        return "GET", f"/api/trajectories/?{query({'q': rng.choice(WORDS)})}", None
    if kind == "groups":
        return "GET", f"/api/groups/?{query({'page': rng.choice([1, 1, 2, 3])})}", None
    if UNIQUE_TAGS:  # the worst case: every edit a tag never seen before (the projection's tag codes grow)
        target, tag = rng.choice(ids), f"load-{client}-{count}"
    else:
        # As people tag: from a small vocabulary. Each client tags its own rows with tags it has not
        # given them yet, so every acknowledged edit can be checked afterwards.
        used = _USED.setdefault(client, set())
        mine = ids[client :: max(1, CLIENTS)] or ids
        target, tag = rng.choice(mine), rng.choice(TAGS)
        for _ in range(50):
            if (target, tag) not in used:
                break
            target, tag = rng.choice(mine), rng.choice(TAGS)
        used.add((target, tag))
    return "PATCH", f"/api/trajectories/{urllib.parse.quote(target, safe='')}/", {"add_tags": [tag]}


def _fault(what: str, server, redis_port: int, run: str) -> None:
    import psutil

    if what == "kill a web worker":
        # Mid-request: a long export is asked for, and the worker serving it (the one holding its
        # connection) is killed while it streams.
        host, port = server.bind
        export = http.client.HTTPConnection(host, port, timeout=60)
        export.request("GET", "/api/trajectories/export/?as=jsonl", headers={"Authorization": f"Token {server.token}"})
        client_port = export.sock.getsockname()[1]
        time.sleep(1.0)
        serving = [
            worker for worker in psutil.Process(server.pid).children()
            if any(c.raddr and c.raddr.port == client_port for c in worker.net_connections())
        ]  # fmt: skip
        victim = serving[0] if serving else psutil.Process(server.pid).children()[0]
        victim.send_signal(signal.SIGKILL)
        try:
            answer = export.getresponse()
            answer.read()
            outcome = "completed (it was not cut)"
        except (OSError, http.client.HTTPException) as error:
            outcome = f"cut off ({type(error).__name__}), as a killed worker's request is"
        print(f"fault: SIGKILL web worker {victim.pid} while it streamed an export: {outcome}")
    else:
        print("fault: Redis restarted (shutdown, then started again empty)")
        subprocess.run(["redis-cli", "-p", str(redis_port), "shutdown", "nosave"], capture_output=True)
        time.sleep(2)
        _REDIS.append(_start_redis(redis_port, run))


def _sample_memory(master: int, shared: Shared, stop: threading.Event, started: float) -> None:
    import psutil

    while not stop.wait(5):
        try:
            # PSS splits the pages the workers share (mapped projections) between them: summed, it is
            # what the machine holds; RSS counts a shared page in every worker that touched it.
            workers = [(child.memory_info().rss, *_pss(child.pid)) for child in psutil.Process(master).children()]
        except (psutil.Error, OSError):
            continue
        cpu = _cpu_seconds(shared.processes)  # sampled as it goes: the import may end before the load
        with shared.lock:
            shared.memory.append((time.monotonic() - started, workers))
            shared.cpu = {**shared.cpu, **{name: max(value, shared.cpu.get(name, 0.0)) for name, value in cpu.items()}}


def _pss(pid: int) -> tuple[int, int, int]:
    """PSS, and its parts: anonymous (the heap: what a leak grows) and file-backed (mapped projections,
    which grow with the rows the import adds and which the kernel may drop under pressure)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0]) * 1024
    return fields["Pss"], fields.get("Pss_Anon", 0), fields.get("Pss_File", 0)


def _report(args, shared: Shared, import_seconds: float) -> None:
    done = shared.done
    print(f"\n{args.clients} clients for {args.seconds} s, {args.web_workers} gunicorn workers x {args.threads} "
          f"threads; a {args.import_size:,}-trajectory import ran from the start ({import_seconds:.0f} s)")  # fmt: skip
    _latency_table(done)
    # What a worker pays once (each search word's first index query, ~2 s at 1M for a word in every
    # row; a sort order first asked for) is a large share of a short run: the rest shown apart.
    later = [d for d in done if d.started >= shared.started + WARM_SECONDS]
    if later and len(later) < len(done):
        print(f"\nthe same, for requests started after the first {WARM_SECONDS} s:")
        _latency_table(later)
    for status, path, answer in shared.refused:
        print(f"  {status} {path}: {answer.decode(errors='replace')}")
    for moment, what in shared.events:
        window = [d for d in done if moment <= d.started < moment + 10]
        failed = sum(1 for d in window if d.status >= 500)
        print(f"at {moment - shared.started:.0f} s, '{what}': {len(window)} requests in the next 10 s, {failed} failed")
    if shared.memory:
        print("\nweb workers' memory (RSS / PSS, MB) every 30 s:")
        shown = [sample for index, sample in enumerate(shared.memory) if index % 6 == 0] + [shared.memory[-1]]
        print_table(["second", *(f"worker {n}" for n in range(len(shown[0][1]))), "PSS, all workers",
                     "of it anonymous / file-backed"],
                    [[f"{t:.0f}", *(f"{rss / 1e6:.0f} / {pss / 1e6:.0f}" for rss, pss, *_ in workers),
                      f"{sum(w[1] for w in workers) / 1e6:.0f}",
                      f"{sum(w[2] for w in workers) / 1e6:.0f} / {sum(w[3] for w in workers) / 1e6:.0f}"]
                     for t, workers in shown])  # fmt: skip
        for name, index in (("RSS", 0), ("PSS", 1), ("PSS anonymous (heap)", 2), ("PSS file-backed (mapped)", 3)):
            last = [sum(worker[index] for worker in w) for t, w in shared.memory if t >= args.seconds - 180]
            if last:
                print(f"last 3 minutes, all workers' {name}: min {min(last) / 1e6:.0f} MB, max {max(last) / 1e6:.0f} "
                      f"MB, first {last[0] / 1e6:.0f} MB, last {last[-1] / 1e6:.0f} MB")  # fmt: skip


def _latency_table(done: list[Done]) -> None:
    rows = []
    for kind in [*KINDS, "all"]:
        chosen = [d for d in done if kind in ("all", d.kind)]
        if not chosen:
            continue
        times = [d.ms for d in chosen]
        errors = sum(1 for d in chosen if d.status >= 500 or d.status == 599)
        other = sum(1 for d in chosen if 300 <= d.status < 500)  # a redirect (to the login) measures nothing
        missed = f"{100 * sum(d.missed for d in chosen) / len(chosen):.0f}%"
        rows.append([
            kind, f"{len(chosen):,}", str(errors), str(other), missed,
            f"{percentile(times, 0.5):.0f}", f"{percentile(times, 0.95):.0f}", f"{percentile(times, 0.99):.0f}",
            f"{max(times):.0f}",
        ])  # fmt: skip
    print_table(
        ["requests", "count", "5xx/failed", "3xx/4xx", "cache misses", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows
    )


def _verify(site: Site, shared: Shared, env: dict, import_size: int) -> None:
    missing = []
    by_id: dict[str, set[str]] = {}
    for trajectory_id, tag in shared.annotated:
        by_id.setdefault(trajectory_id, set()).add(tag)
    unreadable = []
    for quoted, tags in by_id.items():
        for _ in range(5):  # a read refused (a worker being replaced) is not a missing edit: asked again
            status, body, _ = site.request("GET", f"/api/trajectories/{quoted}/")
            if status == 200:
                break
            time.sleep(1.0)
        if status != 200:
            unreadable.append((quoted, status))
            continue
        missing += sorted(tags - set(orjson.loads(body)["tags"]))
    print(f"acknowledged annotations: {len(shared.annotated):,}, missing afterwards: {len(missing)}, "
          f"trajectories that could not be read back: {len(unreadable)} {unreadable[:3]}")  # fmt: skip
    check = (
        "from trajectories.store import get_store\n"
        "from trajectories.query import parse_query\n"
        "ids = get_store().matching_ids(query=parse_query({'training_id': 'load-import'}))\n"
        "print(len(ids), len(set(ids)))\n"
    )
    found = subprocess.run([*MANAGE, "shell", "-c", check], env=env, capture_output=True, text=True, check=True)
    stored, unique = map(int, found.stdout.split()[-2:])
    print(f"imported during the load: {stored:,} stored, {unique:,} unique ids, of {import_size:,}")


def _cpu_seconds(processes: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far; a web server counts its workers."""
    import psutil

    used = {}
    for name, pid in processes.items():
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            if name == "web workers":
                members = process.children()
            elif pid == os.getpid():  # its children are the servers, counted apart
                members = [process]
            else:
                members = [process, *process.children(recursive=True)]
            used[name] = sum(sum(member.cpu_times()[:2]) for member in members)
        except psutil.Error:
            continue
    return used


def _cpu_table(used: dict[str, float], seconds: int) -> None:
    cores = os.cpu_count() or 1
    print(f"\nCPU during the load ({cores} cores x {seconds} s = {cores * seconds} core-seconds):")
    rows = [[name, f"{value:,.0f}", f"{100 * value / (cores * seconds):.0f}%"] for name, value in used.items()]
    print_table(["process", "CPU seconds (sampled every 5 s)", "share of the machine"], rows)


def _start_import(env: dict, source: Path, shared: Shared) -> subprocess.Popen:
    with shared.lock:
        shared.events.append((time.monotonic(), "import started"))
    command = [*MANAGE, "import_trajectories", str(source), "--no-progress"]
    importing = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finished() -> None:
        while importing.poll() is None:
            time.sleep(1)
        with shared.lock:
            shared.events.append((time.monotonic(), "import finished"))

    threading.Thread(target=finished, daemon=True).start()
    return importing


def _wait(importing: subprocess.Popen, shared: Shared) -> float:
    started = next(moment for moment, what in shared.events if what == "import started")
    _, err = importing.communicate()
    if importing.returncode != 0:
        print(f"the import failed: {err[-2000:]}")
    time.sleep(1.5)  # the watcher notes the end
    ended = [moment for moment, what in shared.events if what == "import finished"]
    return (ended[0] if ended else time.monotonic()) - started


def _import_source(workdir: Path, size: int, *, realistic: bool) -> Path:
    """`size` generated (or real, copied) trajectories under ids and a run of their own (the
    generator's ids repeat, as do the copies' of the served store)."""
    path = workdir / f"load-import-{size}{'-realistic' if realistic else ''}.jsonl"
    if path.exists():
        return path
    raw = workdir / f"load-import-{size}.raw.jsonl"
    if realistic:
        shutil.copyfile(realistic_source(size, workdir), raw)
    else:
        command = [*MANAGE, "generate_trajectories", "--count", str(size), "--out", str(raw), "--seed", "99"]
        subprocess.run(command, check=True)
    with raw.open("rb") as source, path.open("wb") as out:
        for line in source:
            record = orjson.loads(line)
            record["trajectory_id"] = "load-" + record["trajectory_id"]
            record["training_id"] = "load-import"
            out.write(orjson.dumps(record) + b"\n")
    raw.unlink()
    return path


def _sample(site: Site) -> tuple[list[str], list[str]]:
    ids = []
    for page in (1, 50, 500, 5000):
        status, body, _ = site.request("GET", f"/api/trajectories/?page={page}&page_size=100")
        if status == 200:
            ids += [urllib.parse.unquote(row["trajectory_id"]) for row in orjson.loads(body)["results"]]
    _, body, _ = site.request("GET", "/api/stats/?by=training_id")
    runs = [row["key"] for row in orjson.loads(body)["results"] if row.get("key")] or ["run-a"]
    # Iteration ranges within the store's (the generated one's reach 2,604, the real dumps' copies 49).
    global LAST_ITERATION
    _, body, _ = site.request("GET", "/api/stats/?by=iteration_id")
    LAST_ITERATION = max((row["key"] for row in orjson.loads(body)["results"] if row.get("key") is not None), default=0)
    return ids, runs


def _until_ready(site: Site, workers: int) -> float:
    started = time.monotonic()
    in_a_row = 0
    # A new connection each time: a kept-alive one always reaches the same worker.
    while in_a_row < 10 * workers:
        try:
            connection = http.client.HTTPConnection(site.host, site.port, timeout=10)
            connection.request("GET", "/readyz", headers={"Connection": "close"})
            status = connection.getresponse().status
            connection.close()
        except (OSError, http.client.HTTPException):
            status = 0
        in_a_row = in_a_row + 1 if status == 200 else 0
        time.sleep(0.25)
        if time.monotonic() - started > 900:
            raise SystemExit("the site did not become ready in 15 minutes")
    return time.monotonic() - started


def _staff_token(env: dict) -> str:
    """An API token and a logged-in session of one staff user, as "token session-key": the API takes
    the token, pages the session cookie (without it a page answers a redirect to the login)."""
    script = (
        "from importlib import import_module\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY\n"
        "from django.contrib.auth.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        "user, _ = User.objects.get_or_create(username='load', defaults={'is_staff': True, 'is_superuser': True})\n"
        "session = import_module(settings.SESSION_ENGINE).SessionStore()\n"
        "session[SESSION_KEY], session[HASH_SESSION_KEY] = str(user.pk), user.get_session_auth_hash()\n"
        "session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]\n"
        "session.create()\n"
        "print(Token.objects.get_or_create(user=user)[0].key, session.session_key)\n"
    )
    made = subprocess.run([*MANAGE, "shell", "-c", script], env=env, capture_output=True, text=True, check=True)
    return " ".join(made.stdout.split()[-2:])


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_redis(port: int, run: str) -> subprocess.Popen:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", run],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return process
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")


_REDIS: list[subprocess.Popen] = []  # restarted ones


def _stop_redis(process: subprocess.Popen) -> None:
    for each in [process, *_REDIS]:
        each.terminate()
        each.wait(timeout=30)


if __name__ == "__main__":
    main()
