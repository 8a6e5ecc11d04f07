"""The read path: round trips per request are pinned (like Django's assertNumQueries), so a later
feature cannot quietly add Redis commands or version look-ups; reads after a write in the same
request see it; and the list page and the API answer 100 random questions with the same rows."""

from __future__ import annotations

import contextlib
import random
import re
from html import unescape

import pytest
import redis
from rest_framework.test import APIClient

from trajectories import cache, reads
from trajectories.demo import DemoShape, generate
from trajectories.store import get_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(store, write_jsonl, run_import):
    records = list(generate(DemoShape(count=120, group_size=4, questions_per_iteration=5, seed=3)))
    for index, item in enumerate(records):
        if index % 9 == 0:
            del item["agent_name"]
        if index % 7 == 0:
            item["tags"] = ["hard"]
    _out, _err, error = run_import(write_jsonl(records))
    assert error is None
    return records


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="reader", password="pw-reader-1", is_staff=True)


@pytest.fixture
def pages(client, user, stored):
    client.force_login(user)
    return client


@pytest.fixture
def api(user, stored):
    client = APIClient()
    client.force_login(user)  # a session, as a browser's script would have: its GET is counted too
    return client


class RoundTrips:
    def __init__(self) -> None:
        self.redis: list[str] = []
        self.version_checks = 0


@contextlib.contextmanager
def round_trips(monkeypatch):
    """Counts Redis commands (any client: cache and sessions) and the store's version look-ups."""
    counted = RoundTrips()
    original = redis.Redis.execute_command

    def execute(self, *args, **options):
        counted.redis.append(str(args[0]))
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", execute)
    # Hit/miss counters are flushed once a second; a flush landing inside a measured request is noise.
    monkeypatch.setattr(cache, "_FLUSH_EVERY_SECONDS", 1e9)
    store = get_store()
    before = store.version_checks
    yield counted
    counted.version_checks = store.version_checks - before
    monkeypatch.setattr(redis.Redis, "execute_command", original)


def _measure(monkeypatch, get):
    with round_trips(monkeypatch) as counted:
        response = get()
    assert response.status_code == 200, response.content[:300]
    return counted


LIST_URL = "/trajectories/?agent_name=qwen2.5-7b-instruct&ordering=-reward"


def test_a_cached_list_page_costs_three_redis_commands_and_at_most_one_version_check(pages, monkeypatch):
    pages.get(LIST_URL)
    counted = _measure(monkeypatch, lambda: pages.get(LIST_URL))
    # The session, the generation (and the edit counter), the page's HTML.
    assert counted.redis == ["GET", "MGET", "GET"]
    assert counted.version_checks <= 1  # none when the last look was under SIGNALLED_CHECK_SECONDS ago


def test_an_uncached_list_page_reads_the_generation_and_versions_once(pages, monkeypatch):
    counted = _measure(monkeypatch, lambda: pages.get(LIST_URL))
    # Session, generation, then a miss and a store for each of: the HTML, the page of rows, the
    # total, the facets of everything and of the filtered rows (each in two parts: of trajectory
    # fields, of annotations).
    assert counted.redis.count("GET") == 8
    assert counted.redis.count("MGET") == 1
    assert counted.redis.count("SET") == 7
    assert len(counted.redis) == 16
    assert counted.version_checks <= 1  # none when the last look was under SIGNALLED_CHECK_SECONDS ago


def test_a_cached_api_page_costs_three_redis_commands_and_at_most_one_version_check(api, monkeypatch):
    url = "/api/trajectories/?agent_name=qwen2.5-7b-instruct&ordering=-reward"
    api.get(url)
    counted = _measure(monkeypatch, lambda: api.get(url))
    assert counted.redis == ["GET", "MGET", "GET"]
    assert counted.version_checks <= 1  # none when the last look was under SIGNALLED_CHECK_SECONDS ago


def test_a_detail_page_reads_the_generation_and_versions_once(pages, stored, monkeypatch):
    from trajectories.links import id_path

    url = f"/trajectories/{id_path(stored[5]['trajectory_id'])}/?ordering=-reward"
    counted = _measure(monkeypatch, lambda: pages.get(url))
    # Session, generation; a miss and a store each for the HTML, the trajectory, its neighbours,
    # the category suggestions (facets, in two parts) and its GRPO group.
    assert counted.redis.count("GET") == 7
    assert counted.redis.count("MGET") == 1
    assert counted.redis.count("SET") == 6
    assert counted.version_checks <= 1  # none when the last look was under SIGNALLED_CHECK_SECONDS ago
    again = _measure(monkeypatch, lambda: pages.get(url))
    assert again.redis == ["GET", "MGET", "GET"]
    assert again.version_checks <= 1


def test_a_read_after_a_write_in_the_same_request_sees_the_write(api, stored):
    """PATCH answers with the trajectory read after the change, inside one read scope."""
    from trajectories.links import id_path

    url = f"/api/trajectories/{id_path(stored[0]['trajectory_id'])}/"
    assert api.get(url).json()["category"] != "fresh"
    assert api.patch(url, {"category": "fresh"}, format="json").json()["category"] == "fresh"
    assert api.get(url).json()["category"] == "fresh"


def test_selectors_outside_a_request_share_nothing_stale(stored):
    """Commands call the selectors without a request: each call looks at the newest versions."""
    first = reads.total()
    get_store().delete(trajectory_ids=[stored[0]["trajectory_id"]])
    cache.bump_generation()
    assert reads.total() == first - 1


def _random_query(rng: random.Random, records: list[dict]) -> list[tuple[str, str]]:
    sample = rng.choice(records)
    options = [
        lambda: [("agent_name", sample.get("agent_name") or "x")],
        lambda: [("agent_name_empty", rng.choice(("true", "false")))],
        lambda: [("training_id", sample["training_id"][:4] + "*")],
        lambda: [("reward_min", str(rng.choice((0, 0.25, 0.5)))), ("reward_max", "0.9")],
        lambda: [("iteration_id", str(sample["iteration_id"]))],
        lambda: [("tool_call_count_min", str(rng.randint(0, 3)))],
        lambda: [("step_count_max", str(rng.randint(2, 9)))],
        lambda: [("is_success", rng.choice(("true", "false", "null")))],
        lambda: [("category", rng.choice(("correct", "timeout", "wrong_tool")))],
        lambda: [("tag", "hard")],
        lambda: [("tag_empty", "true")],
        lambda: [("tool", rng.choice(("search", "python", "calculator")))],
        lambda: [("search", sample["data_id"][-3:])],
        lambda: [("root_cause", rng.choice(("python", "steps", "e")))],
    ]
    params = [pair for option in rng.sample(options, rng.choice((0, 1, 2, 3))) for pair in option()]
    sortable = ("reward", "step_count", "tool_call_count", "agent_name", "created_at", "is_success", "category")
    ordering = ",".join(("-" if rng.random() < 0.5 else "") + name for name in rng.sample(sortable, rng.choice((1, 2))))
    return [*params, ("ordering", ordering), ("page_size", str(rng.choice((5, 20, 50))))]


def test_the_list_page_and_the_api_answer_the_same_100_questions_alike(pages, api, stored):
    rng = random.Random(99)
    answered = 0
    for case in range(100):
        params = _random_query(rng, stored)
        page = rng.choice(("1", "2"))
        from_api = api.get("/api/trajectories/", [*params, ("page", page)])
        from_page = pages.get("/trajectories/", [*params, ("page", page)])
        assert from_api.status_code == from_page.status_code, (case, params, from_api.status_code)
        if from_api.status_code != 200:
            assert from_api.status_code == 404  # past the last page, on both
            continue
        api_ids = [row["trajectory_id"] for row in from_api.json()["results"]]
        page_ids = [unescape(v) for v in re.findall(r'name="ids" value="([^"]*)"', from_page.content.decode())]
        assert page_ids == api_ids, (case, params)
        assert f"{from_api.json()['count']} result" in from_page.content.decode(), (case, params)
        answered += bool(api_ids)
    assert answered > 50
