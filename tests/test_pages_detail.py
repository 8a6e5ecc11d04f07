"""The detail page: timeline, pairing, long content, navigation, annotation without JavaScript."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from trajectories.store import AnnotationChange

pytestmark = pytest.mark.django_db

XSS = [
    '<script>alert("x")</script>',
    '<img src=x onerror="alert(2)">',
    "javascript:alert(3)",
    "{{ request.user }}",
    "{% debug %}",
]


def _detail(client, trajectory_id: str, **params):
    return client.get(reverse("trajectories:detail", args=[trajectory_id]), params)


@pytest.fixture
def stored(store, record, write_jsonl, run_import):
    long_steps = [{"role": "user", "content": f"line {i}"} for i in range(120)]
    huge = "y" * 100_000
    records = [
        record(trajectory_id="a", created_at=3),
        record(trajectory_id="b", created_at=2),
        record(trajectory_id="c", created_at=1, steps=long_steps),
        record(
            trajectory_id="xss",
            created_at=0,
            steps=[{"role": "assistant", "content": text} for text in XSS],
            analysis={"category": XSS[1], "root_cause": XSS[0]},
        ),
        record(
            trajectory_id="huge",
            created_at=0,
            steps=[{"role": "tool", "content": huge}, {"role": "tool", "content": "\n".join(map(str, range(80)))}],
        ),
    ]
    run_import(write_jsonl(records))
    return store


def test_timeline_pairs_calls_with_results_and_pretty_prints(staff_client, stored):
    body = _detail(staff_client, "a").content.decode()
    assert 'class="step role-assistant" id="step-2"' in body
    assert '→ <a href="#step-3">result in step #3</a>' in body
    assert 'result of <a href="#step-2">calculator (step #2)</a>' in body
    assert "&quot;expression&quot;: &quot;6*7&quot;" in body
    assert "<h2>Steps (5)</h2>" in body


def test_untrusted_content_renders_as_text(staff_client, stored):
    body = _detail(staff_client, "xss").content.decode()
    for text in ("<script>alert", "<img src=x"):
        assert text not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "{{ request.user }}" in body and "{% debug %}" in body
    assert 'href="javascript:' not in body


def test_long_trajectories_render_the_first_steps_and_load_more(staff_client, stored):
    body = _detail(staff_client, "c").content.decode()
    assert body.count('class="step ') == 50
    assert "Show steps 50–119" in body
    fragment = staff_client.get(reverse("trajectories:steps", args=["c"]), {"steps_from": 50}).content.decode()
    assert fragment.count('class="step ') == 50 and 'id="step-50"' in fragment and "Show steps 100–119" in fragment
    assert _detail(staff_client, "c", steps_from=100).content.decode().count('class="step ') == 20


def test_huge_content_is_clipped_with_a_link_to_all_of_it(staff_client, stored):
    body = _detail(staff_client, "huge").content.decode()
    assert "Showing the first 20,000 of 100000 characters" in body
    assert "show all 80 lines" in body
    raw = staff_client.get(reverse("trajectories:step-raw", args=["huge", 0]))
    assert raw["Content-Type"].startswith("text/plain") and len(raw.content) == 100_000


def test_previous_and_next_follow_the_list_query(staff_client, stored):
    body = _detail(staff_client, "b", ordering="-created_at").content.decode()
    assert 'id="previous-link" href="/trajectories/a/?ordering=-created_at"' in body
    assert 'id="next-link" href="/trajectories/c/?ordering=-created_at"' in body
    assert "2 of 5 in" in body


def test_annotation_form_without_javascript(staff_client, stored):
    url = reverse("trajectories:annotate", args=["b"])
    response = staff_client.post(
        url,
        {
            "is_success": "false",
            "category": "loop",
            "root_cause": "retries",
            "tags": "x\ny, z\nx\n",
            "was_tags": ["arith"],
            "notes": "n",
            "list_params": "ordering=reward",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/trajectories/b/?ordering=reward"
    record = stored.get(trajectory_id="b")
    assert (record["is_success"], record["category"], record["root_cause"], record["tags"], record["notes"]) == (
        False,
        "loop",
        "retries",
        ["x", "y, z"],
        "n",
    )
    staff_client.post(url, {"toggle_bookmark": "on"})
    assert stored.get(trajectory_id="b")["is_bookmarked"] is True


def test_a_stale_form_saves_only_what_it_changed(staff_client, stored):
    url = reverse("trajectories:annotate", args=["c"])
    shown = {"was_is_success": "true", "was_category": "correct", "was_root_cause": "", "was_notes": ""}
    form = {
        **shown,
        "is_success": "true",
        "category": "correct",
        "root_cause": "",
        "tags": "arith",
        "was_tags": "arith",
    }
    stored.annotate(trajectory_ids=["c"], change=AnnotationChange(category="elsewhere", add_tags=("new",)), user="x")
    staff_client.post(url, {**form, "notes": "mine"})
    record = stored.get(trajectory_id="c")
    assert (record["category"], record["notes"], record["tags"]) == ("elsewhere", "mine", ["arith", "new"])
    response = staff_client.post(url, {**form, "notes": ""}, follow=True)
    assert "Nothing changed." in response.content.decode()


def test_a_value_over_a_limit_is_shown_next_to_its_field_and_nothing_is_lost(staff_client, stored):
    url = reverse("trajectories:annotate", args=["b"])
    long = "é" * 201
    form = {"category": long, "notes": "kept note", "tags": "ok\n" + "t" * 101, "list_params": "ordering=reward"}
    response = staff_client.post(url, form)
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="error-category"><li>at most 200 characters (got 201)</li>' in body
    assert 'id="error-tags"><li>a tag has at most 100 characters' in body
    assert f'value="{long}"' in body and "kept note</textarea>" in body, "what the user typed stays in the form"
    record = stored.get(trajectory_id="b")
    assert (record["category"], record["notes"]) != (long, "kept note"), "nothing saved"
    # The API says the same thing about the same value.
    api = APIClient()
    api.force_login(response.wsgi_request.user)
    answer = api.patch("/api/trajectories/b/", {"category": long}, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"category": ["at most 200 characters (got 201)"]}


def test_a_stored_tag_that_breaks_the_rules_never_blocks_a_save(staff_client, stored):
    """An import may store any tag ("two\nlines", " padded"); the form still saves, and removes it."""
    stored.annotate(trajectory_ids=["b"], change=AnnotationChange(tags=("two\nlines", " padded", "keep")), user="i")
    url = reverse("trajectories:annotate", args=["b"])
    was = {"was_tags": ["two\nlines", " padded", "keep"], "was_category": "", "was_root_cause": "", "was_notes": ""}
    response = staff_client.post(url, {**was, "category": "newcat", "tags": "two\nlines\n padded\nkeep"})
    assert response.status_code == 302
    record = stored.get(trajectory_id="b")
    assert record["category"] == "newcat"
    assert sorted(record["tags"]) == ["keep", "lines", "padded", "two"], "each line is a tag now; nothing lost"
    api = APIClient()
    api.force_login(response.wsgi_request.user)
    stored.annotate(trajectory_ids=["b"], change=AnnotationChange(add_tags=(" odd",)), user="i")
    answer = api.patch("/api/trajectories/b/", {"remove_tags": [" odd"]}, format="json")
    assert answer.status_code == 200 and " odd" not in answer.json()["tags"]
    blank = api.patch("/api/trajectories/b/", {"add_tags": ["  "]}, format="json")
    assert blank.status_code == 400 and blank.json() == {"add_tags": ["a tag cannot be empty"]}


def test_raw_json_is_the_canonical_record(staff_client, stored):
    response = staff_client.get(reverse("trajectories:raw", args=["a"]), {"download": 1})
    assert response["Content-Disposition"].startswith("attachment")
    body = json.loads(response.content)
    assert body["trajectory_id"] == "a" and body["steps"][1]["content"] == "What is 6 * 7?"
    assert body["analysis"] == {"is_success": True, "category": "correct", "root_cause": None}


def test_unknown_trajectory_is_404(staff_client, stored):
    assert _detail(staff_client, "nope").status_code == 404
