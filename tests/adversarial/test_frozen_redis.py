"""A frozen Redis (SIGSTOP) must not make every page wait for it (issue: 1.0-1.5 s per logged-in page)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import BASE_RECORD

from .conftest import free_port, imported, running_site

pytestmark = pytest.mark.adversarial


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
    )
    try:
        with running_site(root, {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}) as site:
            yield site, redis
    finally:
        redis.send_signal(signal.SIGCONT)
        redis.terminate()
        redis.wait()


def _timed(browser, path: str) -> float:
    started = time.monotonic()
    answer = browser.get(path)
    assert answer.status == 200, answer.status
    return time.monotonic() - started


def test_pages_stay_fast_while_redis_is_frozen_and_sessions_survive(frozen):
    site, redis = frozen
    imported(site, "few.jsonl", [{**BASE_RECORD, "trajectory_id": f"f{i}"} for i in range(5)])
    browser = site.browser()
    for path in ("/trajectories/", "/trajectories/f1/", "/"):
        _timed(browser, path)
    redis.send_signal(signal.SIGSTOP)
    try:
        times = [_timed(browser, path) for _ in range(8) for path in ("/trajectories/", "/trajectories/f1/", "/")]
    finally:
        redis.send_signal(signal.SIGCONT)
    # Each of the two workers pays one timeout (on the data cache and the session) before it stops asking.
    slow = [seconds for seconds in times if seconds > 0.3]
    assert len(slow) <= 4, f"{len(slow)} of {len(times)} pages waited for Redis: {[round(t, 2) for t in times]}"
    assert sorted(times)[len(times) // 2] < 0.15, times
    assert browser.get("/trajectories/").status == 200, "the session (read from the database) still logs in"


def test_a_logout_during_an_outage_is_not_undone_when_redis_returns(frozen):
    site, redis = frozen
    browser = site.browser()
    assert browser.get("/trajectories/").status == 200
    session = next(cookie.value for cookie in browser.cookies if cookie.name == "sessionid")
    redis.send_signal(signal.SIGSTOP)
    try:
        for _ in range(4):  # both workers learn that Redis is down
            browser.get("/trajectories/")
        logout_page = browser.get("/admin/")
        browser.post("/admin/logout/", {}, page=logout_page)
    finally:
        redis.send_signal(signal.SIGCONT)
    time.sleep(6)  # the worker that logged out has repeated its lost delete by now, asked or not
    for _ in range(4):  # the old cookie, replayed: its session ended with the logout, in every worker
        request = urllib.request.Request(site.url + "/trajectories/", headers={"Cookie": f"sessionid={session}"})
        answer = browser._open(request)
        assert answer.status == 302 and "/admin/login/" in answer.headers["Location"]
