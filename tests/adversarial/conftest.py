"""A real site for adversarial tests: gunicorn (2 workers x 4 threads) on loopback, its own LanceDB,
SQLite file and Redis key prefix, staff users with API tokens, and helpers to import and inspect."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from tests.test_runs import budgeted_site, stores  # noqa: F401 - a store past its memory budget (fixtures)
from trajectories.store import TrajectoryStore

ROOT = Path(__file__).resolve().parents[2]
_USERS = """
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
deleter = User.objects.create_superuser("deleter", "", "pw-deleter-123")
editor = User.objects.create_user("editor", "", "pw-editor-123", is_staff=True)
print(Token.objects.create(user=deleter).key, Token.objects.create(user=editor).key)
"""


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)


@dataclass
class Site:
    url: str
    env: dict
    tokens: dict[str, str]
    root: Path
    urls: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen:
        """An import worker (`manage.py import_worker`) beside the site: it runs the queued uploads."""
        command = [sys.executable, str(ROOT / "manage.py"), "import_worker", "--poll", "0.2"]
        log = (self.root / f"worker-{len(self.workers)}.log").open("w")
        process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=60)
        self.workers.clear()

    def request(
        self, method: str, path: str, body=None, *, user: str = "deleter", timeout: float = 60, url: str | None = None
    ) -> Response:
        """An API request as `user` (token), to `url` (one of `urls`) or the first server."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Authorization": f"Token {self.tokens[user]}", "Content-Type": "application/json"}
        request = urllib.request.Request((url or self.url) + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return Response(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read(), dict(error.headers))

    def manage(self, *args: str, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "manage.py"), *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, **popen)

    def write(self, name: str, records) -> Path:
        path = self.root / name
        path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in records))
        return path

    def browser(
        self, username: str = "deleter", password: str = "pw-deleter-123", *, url: str | None = None
    ) -> Browser:
        """A logged-in session for the staff pages (cookies and CSRF token, no JavaScript)."""
        session = Browser(url or self.url)
        form = session.get("/admin/login/")
        session.post("/admin/login/", {"username": username, "password": password, "next": "/"}, page=form)
        return session

    def store(self) -> TrajectoryStore:
        return TrajectoryStore(uri=self.env["TRAJSITE_DATA_DIR"])

    def stored_ids(self) -> list[str]:
        table = self.store()._table("trajectories").to_lance()
        return table.to_table(columns=["trajectory_id"]).column(0).to_pylist()


class Browser:
    def __init__(self, url: str) -> None:
        self.url = url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())

    def get(self, path: str) -> Response:
        return self._open(urllib.request.Request(self.url + path))

    def post(self, path: str, fields: dict, *, page: Response | None = None, files: dict | None = None) -> Response:
        """POST a form (multipart when `files` maps a field to (name, bytes)), with the CSRF token."""
        page = page or self.get(path)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
        fields = {**fields, "csrfmiddlewaretoken": token}
        if files:
            body, kind = _multipart(fields, files)
        else:
            body, kind = urllib.parse.urlencode(fields, doseq=True).encode(), "application/x-www-form-urlencoded"
        headers = {"Content-Type": kind, "Referer": self.url + path}
        return self._open(urllib.request.Request(self.url + path, data=body, headers=headers, method="POST"))

    def _open(self, request) -> Response:
        try:
            with self.opener.open(request, timeout=60) as answer:
                return Response(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read(), dict(error.headers))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def site_env(root: Path) -> dict:
    return {
        **os.environ,
        "TRAJSITE_DATA_DIR": str(root / "lancedb"),
        "TRAJSITE_VAR_DIR": str(root / "var"),
        "DATABASE_URL": f"sqlite:///{root / 'site.sqlite3'}",
        "REDIS_URL": settings.CACHES["default"]["LOCATION"],
        "CACHE_KEY_PREFIX": f"trajsite-adversarial-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "ERROR",
    }


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    with running_site(tmp_path_factory.mktemp("site"), getattr(request.module, "SITE_ENV", {})) as started:
        yield started


@contextlib.contextmanager
def running_site(root: Path, extra_env: dict, *, servers: int = 1):
    """The site on `servers` gunicorns sharing one database, store and Redis prefix (as several
    machines would), with one import worker; `site.urls` lists them, `site.url` is the first."""
    env = {**site_env(root), **extra_env}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    made = subprocess.run([*manage, "shell", "-c", _USERS], env=env, check=True, capture_output=True, text=True)
    deleter, editor = made.stdout.split()[-2:]
    started, processes = [], []
    try:
        for number in range(servers):
            port = free_port()
            processes.append(_gunicorn(env, port, root / f"gunicorn-{number}.log"))
            started.append(f"http://127.0.0.1:{port}")
        site = Site(url=started[0], env=env, tokens={"deleter": deleter, "editor": editor}, root=root, urls=started)
        for number, process in enumerate(processes):
            _wait_until_serving(site, process, started[number], root / f"gunicorn-{number}.log")
        site.start_worker()
        yield site
    finally:
        for process in processes:
            process.terminate()
        if started:
            site.stop_workers()
        for process in processes:
            process.wait(timeout=30)


def _gunicorn(env: dict, port: int, log: Path) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    return subprocess.Popen(
        [gunicorn, "trajsite.wsgi", "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def _wait_until_serving(site: Site, server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited: {log.read_text()[-2000:]}")
        try:
            if site.request("GET", "/api/trajectories/?page_size=1", timeout=5, url=url).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("gunicorn did not start serving")


def imported(site: Site, name: str, records) -> None:
    result = site.manage("import_trajectories", str(site.write(name, records)), "--no-progress")
    assert result.returncode == 0, result.stderr
