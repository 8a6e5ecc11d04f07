"""The minimal pages: behind a staff login, reading from the store, escaping model output."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.fixture
def imported(store, record, write_jsonl, run_import):
    steps = [{"role": "user", "content": XSS}, {"role": "assistant", "content": "{{ secret }} javascript:alert(3)"}]
    run_import(write_jsonl([record(), record(trajectory_id="xss", steps=steps, data_id=XSS)]))
    return store


@pytest.mark.parametrize(
    "name,args", [("trajectories:home", []), ("trajectories:list", []), ("trajectories:detail", ["xss"])]
)
def test_pages_need_a_staff_login(client, django_user_model, imported, name, args):
    url = reverse(name, args=args)
    assert client.get(url).status_code == 302
    django_user_model.objects.create_user(username="plain", password="pw-plain-123")
    client.login(username="plain", password="pw-plain-123")
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_list_shows_count_and_rows(staff_client, imported):
    response = staff_client.get(reverse("trajectories:list"))
    assert response.status_code == 200
    assert b"2 trajectories stored." in response.content
    assert b"run-a:e0:i3:q7:s1" in response.content


def test_list_empty_state_explains_how_to_import(staff_client, store):
    response = staff_client.get(reverse("trajectories:list"))
    assert b"No trajectories yet" in response.content and b"import_trajectories" in response.content


def test_detail_escapes_untrusted_content(staff_client, imported):
    response = staff_client.get(reverse("trajectories:detail", args=["xss"]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "{{ secret }}" in body


def test_detail_of_unknown_id_is_404(staff_client, imported):
    assert staff_client.get(reverse("trajectories:detail", args=["nope"])).status_code == 404
