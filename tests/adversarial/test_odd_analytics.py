"""Odd input against the analytics (found by an adversarial review): every answer is a 400 or a right
number, never a 500, and every link selects exactly the rows it claims or is not offered."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import pytest

pytestmark = pytest.mark.django_db


def _count(client, href: str) -> int:
    response = client.get("/api/trajectories/", [("page_size", "1"), *parse_qsl(urlsplit(href).query)])
    assert response.status_code == 200, (href, response.content[:200])
    return response.json()["count"]


def _hrefs(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'<a [^>]*href="([^"]+)"', html)]


@pytest.fixture
def tagged(store, record, write_jsonl, run_import):
    records = [
        record(trajectory_id=f"t{i}", data_id=f"q{i % 2}", iteration_id=i % 3, tags=["a", "b"] if i % 2 else ["b"],
               steps=[{"role": "user", "content": "go"}, {"role": "assistant", "content": None,
                       "tool_calls": [{"id": {"odd": 1}, "name": "x", "arguments": {}}]},
                      {"role": "tool", "tool_call_id": {"odd": 1}, "content": [{"text": None}]}])
        for i in range(12)
    ]  # fmt: skip
    records.append(record(trajectory_id="star", data_id="q*", training_id="run*", iteration_id=0))
    _, err, error = run_import(write_jsonl(records))
    assert error is None, err
    return records


@pytest.mark.parametrize(
    "url",
    [
        "/api/groups/?k=%C2%B2", "/api/groups/?page=%C2%B2", "/api/stats/?buckets=%C2%B2",
        "/api/questions/changes/?a.iteration_id=0&b.iteration_id=2&min_count=%C2%B2",
        "/trajectories/groups/?k=%EF%BC%91", "/trajectories/group/?data_id=q0&k=%C2%B2",
        "/trajectories/stats/pivot/?buckets=%C2%B2",
    ],
)  # fmt: skip
def test_digits_other_than_ascii_are_a_400(staff_client, tagged, url):
    assert staff_client.get(url).status_code == 400


def test_a_link_for_a_value_of_a_key_already_filtered_is_exact_or_absent(staff_client, tagged):
    body = staff_client.get("/api/stats/", {"by": "tags", "tag": "a"}).json()
    for row in body["results"]:
        if row["trajectories"] is not None:
            assert _count(staff_client, row["trajectories"]) == row["count"], row
    assert any(row["trajectories"] is None for row in body["results"]), "tags a AND b has no list URL"
    body = staff_client.get("/api/stats/", [("by", "data_id"), ("data_id", "q0"), ("data_id", "q1")]).json()
    for row in body["results"]:
        assert _count(staff_client, row["trajectories"]) == row["count"]


def test_group_links_keep_the_filters_and_stats_links_drop_their_own_parameters(staff_client, tagged):
    for group in staff_client.get("/api/groups/", {"tag": "a"}).json()["results"]:
        assert _count(staff_client, group["trajectories"]) == group["size"]
    body = staff_client.get("/api/stats/", {"by": "data_id", "page": "2", "ordering": "x", "page_size": "5000"}).json()
    for row in body["results"]:
        if row["trajectories"]:
            assert _count(staff_client, row["trajectories"]) == row["count"]
    html = staff_client.get("/trajectories/stats/", {"by": "iteration_id", "buckets": "2"}).content.decode()
    assert all("buckets=" not in href for href in _hrefs(html))


def test_integer_histogram_bins_link_to_their_rows(staff_client, tagged):
    html = staff_client.get("/trajectories/stats/", {"by": "agent_name"}).content.decode()
    bins = [href for href in _hrefs(html) if re.search(r"[?&]step_count(_min)?=", href)]
    assert bins and sum(_count(staff_client, href) for href in bins) == len(tagged)


def test_a_star_in_an_id_never_becomes_a_wildcard_link(staff_client, tagged):
    pages = [
        staff_client.get("/trajectories/group/", {"data_id": "q*", "training_id": "run*", "iteration_id": "0"}),
        staff_client.get("/"),
        staff_client.get("/trajectories/star/"),
        staff_client.get("/trajectories/questions/changes/", {"a.iteration_id": "0", "b.iteration_id_min": "0"}),
    ]
    for response in pages:
        assert response.status_code == 200
        for href in _hrefs(response.content.decode()):
            if href.startswith("/trajectories/group/?"):
                continue  # a group is named by its exact values there, not filtered
            query = dict(parse_qsl(urlsplit(href).query))
            assert "*" not in query.get("data_id", "") and "*" not in query.get("training_id", ""), href


def test_pivot_columns_follow_the_filter(staff_client, tagged):
    params = {"iteration_id_min": "1", "iteration_id_max": "2", "rows": "data_id", "cell": "count", "buckets": "2"}
    html = staff_client.get("/trajectories/stats/pivot/", params)
    text = html.content.decode()
    cells = [href for href in _hrefs(text) if "iteration_id_min" in href and href.startswith("/trajectories/?")]
    assert cells
    for href in cells:
        shown = re.search(rf'<a href="{re.escape(href.replace("&", "&amp;"))}" title="(\d+) trajectories">', text)
        assert _count(staff_client, href) == int(shown.group(1))
        query = dict(parse_qsl(urlsplit(href).query))
        assert int(query["iteration_id_min"]) >= 1 and int(query["iteration_id_max"]) <= 2


@pytest.mark.parametrize("reward", [1.7e308, 5e-324])
def test_extreme_rewards_answer(staff_client, store, record, write_jsonl, run_import, reward):
    run_import(write_jsonl([record(trajectory_id="big", reward=reward, iteration_id=1),
                            record(trajectory_id="zero", reward=0.0, iteration_id=2),
                            record(trajectory_id="big2", reward=reward, iteration_id=1, sample_id=2)]))  # fmt: skip
    for url in ("/trajectories/stats/", "/trajectories/stats/pivot/", "/trajectories/", "/api/stats/?format=api",
                "/api/groups/"):  # fmt: skip
        assert staff_client.get(url).status_code == 200, url


def test_huge_iterations_bucket_exactly(staff_client, store, record, write_jsonl, run_import):
    top = 2**63 - 1
    run_import(
        write_jsonl([record(trajectory_id="low", iteration_id=0), record(trajectory_id="top", iteration_id=top)])
    )
    body = staff_client.get("/api/stats/", {"by": "iteration_id", "buckets": "1"})
    assert body.status_code == 200
    assert [(row["key"], row["key_max"], row["count"]) for row in body.json()["results"]] == [(0, top, 2)]
    results = staff_client.get("/api/stats/", {"by": "iteration_id", "buckets": "3"}).json()["results"]
    assert [row["key"] for row in results] == [0, top]  # two values: no ranges needed


def test_odd_step_shapes_render(staff_client, tagged):
    assert staff_client.get("/trajectories/group/", {"data_id": "q1", "training_id": "run-a", "iteration_id": "1"}
                            ).status_code == 200  # fmt: skip
    assert staff_client.get("/trajectories/compare/", [("ids", "t1"), ("ids", "t2")]).status_code == 200
    assert staff_client.get("/trajectories/t1/").status_code == 200
