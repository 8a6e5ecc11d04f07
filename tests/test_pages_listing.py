"""The list page through Django's test client: filters, facets, sorting, paging, columns, empty states."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db
URL = reverse("trajectories:list")


@pytest.fixture
def stored(store, record, write_jsonl, run_import):
    records = [
        record(
            trajectory_id=f"t{i:02d}",
            data_id=f"q{i % 3}",
            reward=i / 20,
            iteration_id=i,
            created_at=1000 + i,
            agent_name="alpha" if i % 2 else "beta",
            analysis={"is_success": i % 2 == 0, "category": f"c{i % 3}"},
        )
        for i in range(20)
    ]
    run_import(write_jsonl(records))
    return store


def _ids(response) -> list[str]:
    return re.findall(r'name="ids" value="([^"]+)"', response.content.decode())


def test_default_is_newest_first_with_counts(staff_client, stored):
    response = staff_client.get(URL, {"page_size": 5})
    assert response.status_code == 200
    assert _ids(response) == ["t19", "t18", "t17", "t16", "t15"]
    body = response.content.decode()
    assert "page 1 of 4 · 20 trajectories" in body


def test_filters_sort_and_page_like_the_api(staff_client, stored):
    params = {"agent_name": "alpha", "reward_min": "0.2", "ordering": "reward", "page_size": 3, "page": 2}
    page = staff_client.get(URL, params)
    api = staff_client.get("/api/trajectories/", params).json()
    assert _ids(page) == [row["trajectory_id"] for row in api["results"]] == ["t11", "t13", "t15"]
    assert "page 2 of 3 · 8 trajectories" in page.content.decode()


def test_facets_show_counts_and_toggle_links(staff_client, stored):
    body = staff_client.get(URL, {"agent_name": "alpha"}).content.decode()
    assert re.search(r'<li class="selected"><a href="\?[^"]*" title="alpha">alpha \(10\)</a>', body)
    assert "beta (0)" in body
    assert "c1 (" in body and "calculator (10)" in body


def test_sort_headers_flip_direction(staff_client, stored):
    body = staff_client.get(URL, {"ordering": "reward"}).content.decode()
    assert 'href="?ordering=-reward">Reward ▲</a>' in body
    body = staff_client.get(URL, {"ordering": "-reward"}).content.decode()
    assert 'href="?ordering=reward">Reward ▼</a>' in body


def test_column_chooser_keeps_state_in_url(staff_client, stored):
    body = staff_client.get(URL, {"columns": ["trajectory_id", "reward"]}).content.decode()
    assert "field-reward" in body and "field-agent_name" not in body
    assert staff_client.get("/api/trajectories/", {"columns": "reward"}).status_code == 200


def test_empty_result_names_the_filter_that_emptied_it(staff_client, stored):
    body = staff_client.get(URL, {"agent_name": "alpha", "category": "nope"}).content.decode()
    assert "No trajectories match all these filters" in body
    assert "without <code>category=nope</code>" in body and "10 results" in body


def test_empty_store_explains_how_to_import(staff_client, store):
    body = staff_client.get(URL).content.decode()
    assert "No trajectories yet." in body and "import_trajectories" in body


def test_bad_parameter_is_400_with_a_way_out(staff_client, stored):
    response = staff_client.get(URL, {"reward_min": "lots"})
    assert response.status_code == 400
    assert "Bad parameter <code>reward_min</code>" in response.content.decode()


def test_page_past_the_end_is_404(staff_client, stored):
    assert staff_client.get(URL, {"page": 9}).status_code == 404


def test_pages_carry_a_content_security_policy(staff_client, stored):
    assert "script-src 'self'" in staff_client.get(URL)["Content-Security-Policy"]


def test_list_renders_hostile_values_as_text(staff_client, store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id="x<b>", agent_name='<img src=x onerror="alert(1)">')]))
    body = staff_client.get(URL).content.decode()
    assert "<img src=x" not in body and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body
    assert "x&lt;b&gt;" in body


def test_empty_form_fields_redirect_to_the_list_without_them(staff_client, stored):
    response = staff_client.get("/trajectories/?epoch_id=&agent_name=alpha&reward_min=")
    assert response.status_code == 302 and response["Location"] == "/trajectories/?agent_name=alpha"
    only_empty = staff_client.get("/trajectories/?epoch_id=")
    assert only_empty.status_code == 302 and only_empty["Location"] == "/trajectories/?"
