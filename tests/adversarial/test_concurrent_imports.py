"""Imports running at the same time into one store, as separate processes (issue: 40,000 rows for 30,000 ids)."""

from __future__ import annotations

import re
import subprocess
import sys

import orjson
import pytest

from tests.conftest import BASE_RECORD

from .conftest import ROOT, site_env

pytestmark = pytest.mark.adversarial


def _dump(path, ids) -> str:
    path.write_bytes(b"".join(orjson.dumps({**BASE_RECORD, "trajectory_id": f"c{i:05d}"}) + b"\n" for i in ids))
    return str(path)


def _run_at_once(env, files) -> list[tuple[int, int, int, str]]:
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    processes = [
        subprocess.Popen(
            [*manage, "import_trajectories", path, "--batch-size", "100", "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in files
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        found = re.search(r"(\d[\d,]*) imported, \d+ updated, (\d[\d,]*) duplicates skipped", out)
        imported, duplicates = (int(found.group(i).replace(",", "")) for i in (1, 2)) if found else (-1, -1)
        results.append((process.returncode, imported, duplicates, err[-2000:]))
    return results


def _stored_ids(env) -> list[str]:
    from trajectories.store import TrajectoryStore

    table = TrajectoryStore(uri=env["TRAJSITE_DATA_DIR"])._table("trajectories").to_lance()
    return table.to_table(columns=["trajectory_id"]).column(0).to_pylist()


def test_overlapping_imports_store_each_id_once_and_count_what_they_wrote(tmp_path):
    env = site_env(tmp_path)
    files = [_dump(tmp_path / f"part{k}.jsonl", range(k * 1000, k * 1000 + 3000)) for k in range(3)]
    results = _run_at_once(env, files)
    assert [code for code, *_ in results] == [0, 0, 0], [err for *_, err in results]
    ids = _stored_ids(env)
    assert len(ids) == len(set(ids)) == 5000
    assert sum(imported for _, imported, _, _ in results) == 5000
    assert all(imported + duplicates == 3000 for _, imported, duplicates, _ in results)


def test_disjoint_imports_all_finish_and_report_their_own_rows(tmp_path):
    env = site_env(tmp_path)
    files = [_dump(tmp_path / f"own{k}.jsonl", range(k * 1000, k * 1000 + 1000)) for k in range(5)]
    results = _run_at_once(env, files)
    assert [(code, imported) for code, imported, _, _ in results] == [(0, 1000)] * 5, [e for *_, e in results]
    assert len(set(_stored_ids(env))) == len(_stored_ids(env)) == 5000
