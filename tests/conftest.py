"""Shared fixtures: a real LanceDB in a temp dir per test, staff logins, and a record factory."""

from __future__ import annotations

import copy
import os
import threading
from io import StringIO
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command

from trajectories.query import TrajectoryQuery
from trajectories.store import get_store, reset_store

DATA = Path(__file__).parent / "data"
REALDATA = DATA / "realdata"

BASE_RECORD = {
    "trajectory_id": "run-a:e0:i3:q7:s1",
    "data_id": "q7",
    "training_id": "run-a",
    "agent_name": "agent-x",
    "epoch_id": 0,
    "iteration_id": 3,
    "sample_id": 1,
    "reward": 0.75,
    "toolcall_reward": 0.5,
    "res_reward": 1.0,
    "exec_time": 12.5,
    "steps": [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "What is 6 * 7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "name": "calculator", "arguments": {"expression": "6*7"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "The answer is 42."},
    ],
    "analysis": {"is_success": True, "category": "correct", "root_cause": ""},
    "tags": ["arith"],
    "created_at": "2026-01-02T03:04:05Z",
}


def all_rows(store, **query) -> list[dict]:
    """Every stored trajectory's summary row (small test stores only), newest first."""
    return store.page(query=TrajectoryQuery(page_size=1000, **query)).rows


@pytest.fixture
def record():
    """A fresh canonical record; tests change what they need."""

    def make(**overrides) -> dict:
        made = copy.deepcopy(BASE_RECORD)
        made.update(overrides)
        return made

    return make


def pytest_configure(config) -> None:
    # Imports run in this process here: lowering its priority would slow the whole suite on a busy machine.
    from django.conf import settings

    settings.TRAJSITE_IMPORT_NICE = 0


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with none of this suite's keys in Redis (its own database and prefix)."""
    from django.core.cache import cache as redis_cache

    from trajectories import cache

    redis_cache.delete_pattern("*")
    cache.reset_process_state()
    yield


@pytest.fixture
def store(settings, tmp_path):
    settings.TRAJSITE_DATA_DIR = str(tmp_path / "lancedb")
    reset_store()
    yield get_store()
    reset_store()


@pytest.fixture
def write_jsonl(tmp_path):
    def write(records, name: str = "dump.jsonl") -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in records))
        return path

    return write


@pytest.fixture
def run_import(store):
    """Runs `manage.py import_trajectories` and returns (stdout, stderr, error or None)."""

    def run(*args):
        out, err = StringIO(), StringIO()
        error = None
        try:
            call_command("import_trajectories", *map(str, args), "--no-progress", stdout=out, stderr=err)
        except Exception as raised:
            error = raised
        return out.getvalue(), err.getvalue(), error

    return run


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="staff", password="pw-staff-123", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def import_worker(store):
    """An import worker serving the queue from a thread, as `manage.py import_worker` does."""
    from trajectories.importing import worker

    stop = threading.Event()
    thread = threading.Thread(target=worker.serve, kwargs={"stop": stop, "poll": 0.1}, name="test-import-worker")
    thread.start()
    yield
    stop.set()
    thread.join(timeout=60)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on loopback; the process environment points LanceDB at it."""
    from tests.s3 import running_s3

    with running_s3(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        saved = {name: os.environ.get(name) for name in server.env}
        os.environ.update(server.env)
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def s3_store(settings, s3_server):
    """The store on the S3 server, under a prefix of its own."""
    settings.TRAJSITE_DATA_DIR = s3_server.fresh_uri()
    reset_store()
    yield get_store()
    reset_store()
