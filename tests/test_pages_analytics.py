"""The analytics pages: stats with charts and CSV, the group list, one group, compare, the runs
dashboard. Their numbers come from the API tested against brute force (test_analytics); here: the
pages render them, every mark links to exactly its rows, untrusted text stays inert."""

from __future__ import annotations

import csv
import io
import re
from html import unescape

import pytest

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"


def _steps(tools: list[str], answer: str, error: bool = False) -> list[dict]:
    steps = [{"role": "user", "content": "Solve it."}]
    for index, tool in enumerate(tools):
        steps.append({"role": "assistant", "content": None,
                      "tool_calls": [{"id": f"c{index}", "name": tool, "arguments": {"n": index}}]})  # fmt: skip
        content = "Traceback (most recent call last):\n  ValueError: bad" if error and index == 1 else "ok"
        steps.append({"role": "tool", "tool_call_id": f"c{index}", "content": content})
    steps.append({"role": "assistant", "content": answer})
    return steps


@pytest.fixture
def stored(store, record, write_jsonl, run_import):
    records = []
    for iteration in range(3):
        for question in ("q1", "q2", XSS):
            for sample in range(4):
                flat = question == "q2"  # every sample the same reward: no signal
                reward = 0.5 if flat else sample / 3
                tools = ["search", "python", "search"] if sample % 2 else ["search", "bash"]
                records.append(
                    record(
                        trajectory_id=f"run-a:{iteration}:{question}:{sample}",
                        training_id="run-a",
                        agent_name="agent-x",
                        iteration_id=iteration,
                        data_id=question,
                        sample_id=sample,
                        reward=reward,
                        steps=_steps(tools, f"answer {sample}", error=sample == 0),
                        analysis={"is_success": reward >= 0.6, "category": "correct" if reward >= 0.6 else "wrong"},
                    )
                )
    records.append(record(trajectory_id="loose", training_id=None, agent_name=None, iteration_id=None, data_id="q9"))
    _, err, error = run_import(write_jsonl(records))
    assert error is None, err
    return records


def _hrefs(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'<a [^>]*href="([^"]+)"', html)]


def test_stats_page_charts_link_each_iteration_to_exactly_its_rows(staff_client, stored):
    response = staff_client.get("/trajectories/stats/", {"training_id": "run-a", "by": "iteration_id"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<svg") >= 8  # count, three rewards, success, no signal, steps, exec time, mix, histograms
    links = [href for href in _hrefs(html) if "iteration_id=" in href and href.startswith("/trajectories/?")]
    assert links, "chart marks link to the list"
    for href in set(links):
        iteration = int(re.search(r"iteration_id=(\d+)", href).group(1))
        listed = staff_client.get("/api/trajectories/", {"page_size": 1, **dict(_query(href))}).json()
        assert listed["count"] == sum(1 for r in stored if r.get("iteration_id") == iteration), href


def _query(href: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(href).query)


def test_histogram_bins_link_to_exactly_their_rows(staff_client, stored):
    html = staff_client.get("/trajectories/stats/", {"by": "agent_name"}).content.decode()
    bins = [href for href in _hrefs(html) if "reward_min=" in href or re.search(r"[?&]reward=", href)]
    assert bins
    total = 0
    for href in bins:
        total += staff_client.get("/api/trajectories/", [("page_size", "1"), *_query(href)]).json()["count"]
    assert total == sum(1 for r in stored if r.get("reward") is not None), "bins cover each reward once"


def test_stats_csv_has_the_apis_numbers_and_quotes_formulas(
    staff_client, stored, store, record, write_jsonl, run_import
):
    run_import(write_jsonl([record(trajectory_id="f1", data_id="=HYPERLINK(1)")], name="formula.jsonl"))
    response = staff_client.get("/trajectories/stats/", {"by": "data_id", "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    api = staff_client.get("/api/stats/", {"by": "data_id"}).json()["results"]
    assert [int(row["count"]) for row in rows] == [row["count"] for row in api]
    assert "'=HYPERLINK(1)" in [row["data_id"] for row in rows]


def test_stats_page_names_a_bad_key_and_has_an_empty_state(staff_client, stored):
    response = staff_client.get("/trajectories/stats/", {"by": "reward"})
    assert response.status_code == 400 and b"not a grouping key" in response.content
    response = staff_client.get("/trajectories/stats/", {"agent_name": "nobody"})
    assert response.status_code == 200 and b"No trajectories match" in response.content


def test_series_overlay_draws_one_line_per_run(staff_client, stored, record, write_jsonl, run_import):
    run_import(write_jsonl([record(trajectory_id=f"b{i}", training_id="run-b", iteration_id=i) for i in range(3)],
                           name="b.jsonl"))  # fmt: skip
    html = staff_client.get("/trajectories/stats/", {"by": "iteration_id", "series": "training_id"}).content.decode()
    assert "Reward mean by Training run" in html
    assert "run-a" in html and "run-b" in html


def test_group_list_flags_and_group_page(staff_client, stored):
    html = staff_client.get("/trajectories/groups/", {"zero_signal": "true"}).content.decode()
    assert "no signal" in html
    groups = [href for href in _hrefs(html) if href.startswith("/trajectories/group/?")]
    assert len(groups) == 3 and all("data_id=q2" in href for href in groups)
    page = staff_client.get(groups[0])
    assert page.status_code == 200
    text = page.content.decode()
    assert "search → bash" in unescape(text) or "search → python → search" in unescape(text)
    assert "ValueError: bad" in text  # the first tool error of sample 0


def test_group_page_marks_where_best_and_worst_diverge(staff_client, stored):
    html = staff_client.get("/trajectories/group/", {"training_id": "run-a", "iteration_id": "1", "data_id": "q1"})
    text = html.content.decode()
    assert "diverge at call 2" in text
    assert text.count("diverges here") == 2
    assert "/trajectories/compare/?ids=" in text


def test_compare_aligns_steps_and_diffs_fields(staff_client, stored):
    response = staff_client.get("/api/trajectories/compare/", [("ids", "run-a:0:q1:1"), ("ids", "run-a:0:q1:0")])
    body = response.json()
    assert body["trajectories"] == ["run-a:0:q1:1", "run-a:0:q1:0"]
    differs = {item["field"] for item in body["diff"] if item["differs"]}
    assert {"reward", "sample_id"} <= differs and "data_id" not in differs
    # Both start with the same search call and its result: those face each other; python and bash
    # calls (and their results) face gaps; the final answers face each other.
    assert body["rows"][:3] == [[0, 0], [1, 1], [2, 2]]
    assert [3, None] in body["rows"] and [None, 3] in body["rows"] and [7, 5] in body["rows"]
    assert body["diverges_at"] == [3]
    page = staff_client.get("/trajectories/compare/", [("ids", "run-a:0:q1:1"), ("ids", "run-a:0:q1:0")])
    assert page.status_code == 200 and b"diverges here" in page.content
    assert staff_client.get("/trajectories/compare/", [("ids", "run-a:0:q1:1")]).status_code == 400
    assert staff_client.get("/api/trajectories/compare/", [("ids", "x"), ("ids", "y")]).status_code == 400


def test_overview_is_a_dashboard_of_runs(staff_client, stored):
    html = staff_client.get("/").content.decode()
    assert "Training runs (2)" in html
    assert 'class="sparkline"' in html
    assert "(no run)" in html and "training_id_empty=true" in html
    assert "/trajectories/stats/?training_id=run-a&amp;by=iteration_id" in html


def test_untrusted_ids_stay_inert_on_every_analytics_page(staff_client, stored):
    pages = [
        ("/trajectories/stats/", {"by": "data_id"}),
        ("/trajectories/groups/", {}),
        ("/trajectories/group/", {"training_id": "run-a", "iteration_id": "0", "data_id": XSS}),
        ("/trajectories/compare/", [("ids", f"run-a:0:{XSS}:0"), ("ids", f"run-a:0:{XSS}:1")]),
    ]
    for path, params in pages:
        response = staff_client.get(path, params)
        assert response.status_code == 200, path
        assert XSS.encode() not in response.content, path
        assert b"&lt;script&gt;" in response.content, path


def test_analytics_pages_need_a_staff_login(client, stored):
    for path in ("/trajectories/stats/", "/trajectories/groups/", "/trajectories/group/?data_id=q1",
                 "/trajectories/compare/?ids=a&ids=b"):  # fmt: skip
        assert client.get(path).status_code == 302


def test_trajectory_page_shows_its_group_and_compares_with_a_sample(staff_client, stored):
    html = staff_client.get("/trajectories/run-a:1:q1:2/").content.decode()
    assert "Its group: 4 samples" in html
    compares = [href for href in _hrefs(html) if href.startswith("/trajectories/compare/?")]
    assert len(compares) == 3 and all("ids=run-a%3A1%3Aq1%3A2" in href for href in compares)
    assert staff_client.get(compares[0]).status_code == 200


def test_the_list_links_its_stats_and_groups_and_compares_checked_rows(staff_client, stored):
    html = staff_client.get(
        "/trajectories/", {"data_id": "q1", "ordering": "-reward", "page_size": "25"}
    ).content.decode()
    stats = next(href for href in _hrefs(html) if href.startswith("/trajectories/stats/?data_id"))
    groups = next(href for href in _hrefs(html) if href.startswith("/trajectories/groups/?data_id"))
    assert "ordering" not in stats and "page_size" not in groups and "data_id=q1" in groups
    assert staff_client.get(stats).status_code == 200 and staff_client.get(groups).status_code == 200
    chosen = ["run-a:0:q1:0", "run-a:0:q1:1"]
    response = staff_client.post("/trajectories/actions/", {"action": "compare", "ids": chosen, "query": "data_id=q1"})
    assert response.status_code == 302 and response["Location"].startswith("/trajectories/compare/?ids=")
    response = staff_client.post("/trajectories/actions/", {"action": "compare", "ids": chosen[:1], "query": ""})
    assert response.status_code == 302 and response["Location"].startswith("/trajectories/")


def test_questions_that_got_worse_page(staff_client, stored):
    assert b"a: iterations" in staff_client.get("/trajectories/questions/changes/").content
    params = {"a.iteration_id_max": "0", "b.iteration_id_min": "2", "a.iteration_id_min": ""}
    html = staff_client.get("/trajectories/questions/changes/", params).content.decode()
    assert "3 compared" in html
    history = [href for href in _hrefs(html) if "series=training_id" in href]
    assert len(history) == 3 and staff_client.get(history[0]).status_code == 200
    response = staff_client.get("/trajectories/questions/changes/", {"a.reward_min": "x", "b.iteration_id_min": "1"})
    assert response.status_code == 400 and b"a.reward_min" in response.content


def test_pivot_cells_link_to_exactly_their_rows(staff_client, stored):
    html = staff_client.get("/trajectories/stats/pivot/", {"rows": "data_id", "cell": "count", "buckets": "2"}).content
    text = html.decode()
    assert "0–1" in text and ">2<" in text  # iterations 0-2 in two ranges
    links = [href for href in _hrefs(text) if "iteration_id_min=" in href]
    assert len(links) == 6  # three questions (one more has no iteration) x two ranges
    for href in links:
        shown = re.search(
            rf'<a href="{re.escape(href.replace("&", "&amp;"))}" title="(\d+) trajectories">(\d+)</a>', text
        )
        listed = staff_client.get("/api/trajectories/", [("page_size", "1"), *_query(href)]).json()["count"]
        assert int(shown.group(2)) == listed, href
    assert XSS.encode() not in html
    assert staff_client.get("/trajectories/stats/pivot/", {"rows": "reward"}).status_code == 400


def test_the_stats_pages_list_address_is_the_lists():
    from django.urls import reverse

    from trajectories.pages import stats

    assert reverse("trajectories:list") == stats._LIST
