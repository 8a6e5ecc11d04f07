"""`/api/imports/`: an upload is queued for the import workers, followed by its id, refused with reasons."""

from __future__ import annotations

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from trajectories.importing import worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_posted_dump_is_queued_then_imported_by_the_worker(staff_client, store, record, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    rows = [{**record(trajectory_id=f"api{i}"), "training_id": None} for i in range(4)]
    body = b"".join(orjson.dumps(row) + b"\n" for row in rows) + b"{broken\n"
    answer = staff_client.post(
        "/api/imports/", {"files": [SimpleUploadedFile("run.jsonl", body)], "training_id": "from-api"}
    )
    assert answer.status_code == 202, answer.content
    job = answer.json()
    assert (job["status"], job["origin"], job["files"]) == ("queued", "api", ["run.jsonl"])
    while worker.run_once() is not None:
        pass
    done = staff_client.get(f"/api/imports/{job['id']}/").json()
    assert (done["status"], done["imported"], done["rejected"]) == ("partial", 4, 1)
    assert "invalid JSON" in done["first_errors"][0]
    assert store.get(trajectory_id="api2")["training_id"] == "from-api", "the form's default applies"
    assert not worker.upload_folder(job["id"]).exists()
    assert [item["id"] for item in staff_client.get("/api/imports/").json()] == [job["id"]]


def test_a_refused_upload_says_why_and_queues_nothing(staff_client, store, client):
    answer = staff_client.post(
        "/api/imports/", {"files": [SimpleUploadedFile("a.exe", b"x")], "on_duplicate": "update", "format": "nope"}
    )
    assert answer.status_code == 400
    errors = " ".join(answer.json()["errors"])
    assert "a.exe: not a .jsonl" in errors and "'nope' is not one of" in errors and "permission" in errors
    assert staff_client.get("/api/imports/").json() == []
    client.logout()
    assert client.post("/api/imports/", {}).status_code in (401, 403)
