"""The store's disk full mid-import, and the store read-only: a clear failure, nothing written before
lost or corrupted, and a rerun after the fault completes exactly. A small tmpfs is the disk (needs
mount rights: skipped where the machine does not give them)."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from io import StringIO
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command

from tests.conftest import BASE_RECORD
from trajectories.models import ImportJob
from trajectories.query import TrajectoryQuery
from trajectories.store import AnnotationChange, get_store, reset_store

pytestmark = [pytest.mark.adversarial, pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        reset_store()
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def _dump(path: Path, count: int, prefix: str = "f") -> Path:
    # ~40 KB of incompressible text a record: the disk fills after a few hundred.
    def record(i: int) -> dict:
        steps = [{"role": "tool", "content": secrets.token_hex(20_000)}]
        return {**BASE_RECORD, "trajectory_id": f"{prefix}{i:05d}", "steps": steps}

    path.write_bytes(b"".join(orjson.dumps(record(i)) + b"\n" for i in range(count)))
    return path


def _import(path: Path, *args: str) -> tuple[str, Exception | None]:
    out, err = StringIO(), StringIO()
    try:
        call_command(
            "import_trajectories", str(path), "--no-progress", "--batch-size", "100", *args, stdout=out, stderr=err
        )
    except Exception as error:
        return err.getvalue(), error
    return err.getvalue(), None


def _ids() -> list[str]:
    store = get_store()
    store.sync(force=True)
    return store.matching_ids(query=TrajectoryQuery())


def test_a_full_disk_fails_clearly_keeps_earlier_batches_and_a_rerun_completes(settings, tmp_path):
    dump = _dump(tmp_path / "big.jsonl", 1500)
    with _tmpfs(tmp_path / "disk", "40m") as disk:
        settings.TRAJSITE_DATA_DIR = str(disk / "lancedb")
        reset_store()
        _, error = _import(dump)
        assert error is not None, "the import cannot fit"
        job = ImportJob.objects.latest("pk")
        assert job.status == "failed" and "disk is full" in job.failure, job.failure
        stored = _ids()
        assert 0 < len(stored) < 1500 and len(stored) == len(set(stored)), "earlier batches stay readable"
        assert get_store().get(trajectory_id=stored[0])["steps"], "and whole"
        _remount(disk, "size=400m")
        _, error = _import(dump)
        assert error is None
        ids = _ids()
        assert len(ids) == len(set(ids)) == 1500


def test_a_read_only_store_refuses_writes_clearly_and_keeps_answering(settings, tmp_path, staff_client):
    with _tmpfs(tmp_path / "disk", "64m") as disk:
        settings.TRAJSITE_DATA_DIR = str(disk / "lancedb")
        reset_store()
        _, error = _import(_dump(tmp_path / "first.jsonl", 50, prefix="r"))
        assert error is None
        _remount(disk, "ro")
        reset_store()
        _, error = _import(_dump(tmp_path / "second.jsonl", 20, prefix="s"))
        assert error is not None
        assert "read-only" in ImportJob.objects.latest("pk").failure
        answer = staff_client.patch("/api/trajectories/r00001/", {"category": "x"}, content_type="application/json")
        assert answer.status_code == 503 and b"read-only" in answer.content
        assert staff_client.get("/api/trajectories/").json()["count"] == 50, "reads go on"
        _remount(disk, "rw")
        reset_store()
        assert sorted(_ids()) == [f"r{i:05d}" for i in range(50)], "nothing half-written"
        get_store().annotate(trajectory_ids=["r00001"], change=AnnotationChange(category="after"), user="u")
        _, error = _import(tmp_path / "second.jsonl")
        assert error is None and len(_ids()) == 70
