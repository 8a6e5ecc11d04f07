"""Both web workers of a site sharing their projection as mapped files, while imports and edits land:
every list answer equals what a projection built afresh from the store says."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.http import QueryDict

from tests.conftest import BASE_RECORD
from trajectories.query import parse_query
from trajectories.store import TrajectoryStore

from .conftest import imported

pytestmark = pytest.mark.adversarial
API = "/api/trajectories/"
# Every projection is shared, however small; rebuilt on the spot, so a test waits for no thread.
SITE_ENV = {"TRAJSITE_SHARED_PROJECTION_ROWS": "1", "TRAJSITE_BACKGROUND_BUILD_ROWS": "1000000"}
_ORDERINGS = ("-reward", "iteration_id,-exec_time", "trajectory_id", "-created_at")


def _records(prefix: str, count: int) -> list[dict]:
    return [
        {**BASE_RECORD, "trajectory_id": f"{prefix}{i:03d}", "iteration_id": i % 9, "reward": (i * 13 % 17) / 16,
         "exec_time": float(i % 5), "training_id": "共享" if i % 2 else "run-a", "created_at": 1_700_000_000 + i}
        for i in range(count)
    ]  # fmt: skip


def _listed(site, ordering: str) -> list[tuple[str, list]]:
    rows = site.request("GET", f"{API}?ordering={ordering}&page_size=500").json()["results"]
    return [(row["trajectory_id"], sorted(row["tags"])) for row in rows]


def _fresh(site, ordering: str) -> list[tuple[str, list]]:
    """The same list from a projection of the store's own, built in this process, shared with nobody."""
    store = TrajectoryStore(uri=site.env["TRAJSITE_DATA_DIR"])
    rows = store.page(query=parse_query(QueryDict(f"ordering={ordering}&page_size=500"))).rows
    return [(row["trajectory_id"], sorted(row["tags"])) for row in rows]


def test_two_workers_share_projections_through_imports_and_edits(site):
    imported(site, "first.jsonl", _records("a", 120))
    stop = threading.Event()
    answers: list[int] = []

    def read() -> None:
        n = 0
        while not stop.is_set():
            answers.append(site.request("GET", f"{API}?ordering={_ORDERINGS[n % 4]}&page_size=50").status)
            n += 1

    def edit(n: int) -> int:
        return site.request("PATCH", f"{API}a{n:03d}/", {"add_tags": [f"t{n}"]}).status

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for batch in range(3):  # three imports: three new layouts while workers read and edit
            with ThreadPoolExecutor(4) as pool:
                edits = list(pool.map(edit, range(batch * 20, batch * 20 + 20)))
            assert edits == [200] * 20
            imported(site, f"more-{batch}.jsonl", _records(f"b{batch}", 40))
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert answers and set(answers) == {200}
    for ordering in _ORDERINGS:
        expected = _fresh(site, ordering)
        assert len(expected) == 240
        for _ in range(4):  # new connections: both workers answer
            assert _listed(site, ordering) == expected
    shared = Path(site.env["TRAJSITE_VAR_DIR"]) / "projections"
    layouts = [path for path in shared.iterdir() if (path / "manifest.json").exists()]
    assert 1 <= len(layouts) <= 3
    assert not list(shared.glob(".writing-*"))
