"""Values that collide with syntax: ids named like routes, wildcards over newlines, numbers Python
reads too kindly, doubled signs (issue: small ones that still lose or hide data)."""

from __future__ import annotations

import html
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from trajectories.links import id_path
from trajectories.store.columns import glob_matches

pytestmark = [pytest.mark.adversarial, pytest.mark.django_db]
ODD_IDS = [
    "facets",
    "import",
    "actions",
    "bulk-delete",
    "x/raw",
    "x",
    ".",
    "..",
    "a%2Fb",
    "100%",
    "中文/路径",
    "x/raw/",
]


@pytest.fixture
def odd(store, record, write_jsonl, run_import):
    records = [record(trajectory_id=trajectory_id, data_id=f"d{index}") for index, trajectory_id in enumerate(ODD_IDS)]
    records.append(record(trajectory_id="multi", agent_name="line one\nline two", epoch_id=10))
    run_import(write_jsonl(records))
    return store


@pytest.fixture
def api(django_user_model):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_superuser(username="odd", password="pw-odd-123"))
    return client


def test_every_id_opens_from_the_list_and_the_api(staff_client, api, odd):
    listing = staff_client.get("/trajectories/", {"page_size": 100}).content.decode()
    links = {
        html.unescape(text): html.unescape(href)
        for href, text in re.findall(r'<a href="([^"]+)">([^<]+)</a></th>', listing)
    }
    for trajectory_id in ODD_IDS:
        page = staff_client.get(links[trajectory_id].split("?")[0])
        assert page.status_code == 200, trajectory_id
        assert f"<h1>{html.escape(trajectory_id)}</h1>" in page.content.decode(), trajectory_id
        url = next(
            row["url"]
            for row in api.get("/api/trajectories/", {"page_size": 100}).json()["results"]
            if row["trajectory_id"] == trajectory_id
        )
        assert api.patch(url, {"add_tags": [f"seen {trajectory_id}"]}, format="json").status_code == 200, trajectory_id
        assert f"seen {trajectory_id}" in odd.get(trajectory_id=trajectory_id)["tags"]
        raw = staff_client.get(f"/trajectories/{id_path(trajectory_id)}/raw/")
        assert raw.json()["trajectory_id"] == trajectory_id


def test_a_wildcard_matches_across_a_newline(api, odd):
    assert [
        row["trajectory_id"] for row in api.get("/api/trajectories/", {"agent_name": "line*two"}).json()["results"]
    ] == ["multi"]


@pytest.mark.parametrize(
    "query",
    ["epoch_id=1_0", "epoch_id=%2010", "reward_min=1_0", "ordering=--reward", "page=0_1", "step_count=" + "9" * 400],
)
def test_numbers_and_orderings_are_read_strictly(api, odd, query):
    assert api.get(f"/api/trajectories/?{query}").status_code == 400


def test_a_wildcard_of_many_stars_answers_at_once(api, store, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id=f"ppo-run-{i:05d}-{'ab' * 20}") for i in range(3000)]))
    started = time.monotonic()
    answer = api.get("/api/trajectories/", {"trajectory_id": "ppo-run-" + "*" * 40 + "X"})
    assert answer.status_code == 200 and answer.json()["count"] == 0
    assert api.get("/api/trajectories/", {"trajectory_id": "ppo-run-*0007*b*a**"}).json()["count"] == 11
    assert time.monotonic() - started < 2


@given(st.lists(st.sampled_from(["a", "b", "ab", ""]), min_size=1, max_size=6), st.text(alphabet="ab", max_size=12))
def test_glob_matching_agrees_with_a_regex(parts, value):
    expected = re.fullmatch(".*".join(re.escape(part) for part in parts), value, re.S) is not None
    assert glob_matches(parts, value) == expected


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b'{"notes": ' + b"[" * 3000 + b"]" * 3000 + b"}", b'{"notes": NaN}', b"\xff\xfe"],
)
def test_hostile_json_bodies_are_400s(api, odd, body):
    answer = api.generic("PATCH", "/api/trajectories/x/", body, content_type="application/json")
    assert answer.status_code == 400


def test_form_encoded_bulk_requests_are_refused_not_500s(api, odd):
    answer = api.post("/api/trajectories/bulk-update/", {"ids": "x", "changes.notes": "hi"}, format="multipart")
    assert answer.status_code == 415
