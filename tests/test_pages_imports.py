"""The import page: upload, background import, progress, result, report, history."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from trajectories.importing import worker
from trajectories.models import ImportJob

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(job_id: int) -> ImportJob:
    """Run the queue as the import worker would, then read the job."""
    assert ImportJob.objects.get(pk=job_id).status == "queued", "an upload is queued, not run by the web server"
    viewer = Client()
    viewer.force_login(User.objects.get(username="staff"))
    waiting = viewer.get(f"/trajectories/import/{job_id}/").content.decode()
    assert 'id="job-no-worker"' in waiting and "import_worker" in waiting, "no worker alive: the page says so"
    while worker.run_once() is not None:
        pass
    job = ImportJob.objects.get(pk=job_id)
    assert job.finished_at, "import did not finish"
    return job


def test_upload_imports_in_background_and_reports(staff_client, store, record, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    good = "\n".join([__import__("json").dumps(record(trajectory_id=f"u{i}")) for i in range(3)])
    upload = SimpleUploadedFile("../../etc/dump.jsonl", (good + "\n{broken\n").encode())
    response = staff_client.post(
        reverse("trajectories:import"), {"files": [upload], "on_duplicate": "skip", "training_id": "web-run"}
    )
    assert response.status_code == 302
    job = _wait(int(response["Location"].rstrip("/").split("/")[-1]))
    assert (job.status, job.imported, job.rejected, job.origin) == ("partial", 3, 1, "web")
    assert all(str(tmp_path / "uploads") in source for source in job.sources), "uploads stay in their folder"
    page = staff_client.get(response["Location"]).content.decode()
    assert "3</strong> imported" in page and "invalid JSON" in page and "dump.jsonl" in page
    assert f'href="/trajectories/?import_id={job.pk}" id="job-trajectories"' in page
    added = staff_client.get(f"/api/trajectories/?import_id={job.pk}").json()
    assert sorted(row["trajectory_id"] for row in added["results"]) == ["u0", "u1", "u2"]
    status = staff_client.get(reverse("trajectories:import-job-status", args=[job.pk])).json()
    assert status["finished"] and status["fraction"] == 1.0
    assert (status["records"], status["imported"], status["rejected"], status["updated"]) == (4, 3, 1, 0)
    report = staff_client.get(reverse("trajectories:import-job-report", args=[job.pk]))
    assert b"json: invalid JSON" in b"".join(report.streaming_content)
    assert store.get(trajectory_id="u1")["training_id"] == "run-a"
    history = staff_client.get(reverse("trajectories:import")).content.decode()
    assert f'href="/trajectories/import/{job.pk}/"' in history


def test_upload_refuses_unknown_types_and_oversized_files(staff_client, store, settings):
    settings.TRAJSITE_UPLOAD_MAX_BYTES = 10
    files = [SimpleUploadedFile("a.exe", b"x"), SimpleUploadedFile("b.jsonl", b"{}" * 20)]
    response = staff_client.post(reverse("trajectories:import"), {"files": files})
    body = response.content.decode()
    assert response.status_code == 400
    assert "a.exe: not a .jsonl" in body and "b.jsonl: 40 bytes is over the 10 limit" in body
    assert not ImportJob.objects.exists()
