"""Replacing stored trajectories by re-importing needs the delete permission (issue: overwrite
without delete permission)."""

from __future__ import annotations

import re
import time

import orjson
import pytest

from tests.conftest import BASE_RECORD

from .conftest import imported

pytestmark = pytest.mark.adversarial


def test_an_update_upload_needs_the_delete_permission(site):
    imported(site, "original.jsonl", [{**BASE_RECORD, "trajectory_id": "keep-me", "reward": 0.25}])
    replacement = orjson.dumps({**BASE_RECORD, "trajectory_id": "keep-me", "reward": 1.0, "steps": []}) + b"\n"
    editor = site.browser("editor", "pw-editor-123")
    form = editor.get("/trajectories/import/")
    assert b'value="update" disabled' in form.body
    refused = editor.post(
        "/trajectories/import/", {"on_duplicate": "update"}, page=form, files={"files": ("r.jsonl", replacement)}
    )
    assert refused.status == 400 and b"needs the &#x27;Can delete trajectories&#x27; permission" in refused.body
    time.sleep(0.5)
    assert site.request("GET", "/api/trajectories/keep-me/").json()["reward"] == 0.25

    deleter = site.browser()
    allowed = deleter.post(
        "/trajectories/import/", {"on_duplicate": "update"}, files={"files": ("r.jsonl", replacement)}
    )
    assert allowed.status == 302
    job = re.search(r"/import/(\d+)/", allowed.headers["Location"]).group(1)
    deadline = time.monotonic() + 30
    while b"Succeeded" not in deleter.get(f"/trajectories/import/{job}/").body and time.monotonic() < deadline:
        time.sleep(0.1)
    assert site.request("GET", "/api/trajectories/keep-me/").json()["reward"] == 1.0
