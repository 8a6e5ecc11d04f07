"""Cached pages are filled in per user: trajectory content must never be mistaken for the
placeholders (issue: an id equal to the CSRF placeholder was rendered as the viewer's token)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = [pytest.mark.adversarial, pytest.mark.django_db]
PLACEHOLDER_LIKE = [
    "csrf-sentinel-6f1c2b",
    "name-sentinel-9a7d3e",
    "<trajsite:csrf-token>",
    "<trajsite:user-name>",
    "&lt;trajsite:csrf-token&gt;",
]


def test_placeholder_text_in_trajectories_stays_text(store, record, write_jsonl, run_import, django_user_model):
    steps = [{"role": "assistant", "content": text} for text in PLACEHOLDER_LIKE]
    run_import(write_jsonl([record(trajectory_id=text, steps=steps) for text in PLACEHOLDER_LIKE[:2]]))
    client = Client(enforce_csrf_checks=True)
    for name in ("alice", "bob"):
        user = django_user_model.objects.create_user(username=name, password=f"pw-{name}-123", is_staff=True)
        client.force_login(user)
        for path in ("/trajectories/csrf-sentinel-6f1c2b/", "/trajectories/", "/trajectories/name-sentinel-9a7d3e/"):
            body = client.get(path).content.decode()
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
            assert body.count(token) == body.count('name="csrfmiddlewaretoken"'), "the token only in its inputs"
            assert "csrf-sentinel-6f1c2b" in body and "name-sentinel-9a7d3e" in body
            assert f"<strong>{name}</strong>" in body
            if "sentinel-" in path:
                assert "&lt;trajsite:csrf-token&gt;" in body and "&amp;lt;trajsite:csrf-token&amp;gt;" in body
