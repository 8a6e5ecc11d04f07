"""Embeddings, similar trajectories and failure clusters, against brute force on known families."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import all_rows
from trajectories import content, embedding
from trajectories.pages.clusters import fingerprint
from trajectories.query import parse_query

FAMILIES = {
    "perm": ("bash", "cat", "Permission denied while opening the cache directory"),
    "slow": ("python", "sleep", "TimeoutError the solver exceeded its budget again"),
    "key": ("read_file", "grep", "KeyError missing dictionary entry for the answer field"),
}


def _family_record(record, family: str, index: int) -> dict:
    first, second, text = FAMILIES[family]
    steps = [
        {"role": "user", "content": f"task number {index}"},
        {"role": "assistant", "tool_calls": [{"id": "a", "name": first, "arguments": {"x": index}}]},
        {"role": "tool", "tool_call_id": "a", "content": text},
        {"role": "assistant", "tool_calls": [{"id": "b", "name": second, "arguments": {"y": "z"}}]},
        {"role": "tool", "tool_call_id": "b", "content": text.split()[0] + " again"},
        {"role": "assistant", "content": "giving up"},
    ]
    return record(
        trajectory_id=f"{family}-{index:02d}",
        data_id=f"q{index % 5}",
        iteration_id=index % 4,
        sample_id=index,
        reward=0.0,
        analysis={"is_success": False},
        agent_name="alpha" if index % 2 else "beta",
        steps=steps,
    )


@pytest.fixture
def families(db, store, record, write_jsonl, run_import):
    made = [_family_record(record, family, index) for family in FAMILIES for index in range(24)]
    assert run_import(write_jsonl(made))[2] is None
    return store, {item["trajectory_id"]: item for item in made}


def _vector(item: dict) -> np.ndarray:
    tools = list(dict.fromkeys(call["name"] for step in item["steps"] for call in step.get("tool_calls") or []))
    return np.array(embedding.embed(tools, content.searchable(item["steps"], "giving up")), dtype=np.float32)


def test_embeddings_are_unit_length_and_deterministic():
    first = np.array(embedding.embed(["bash", "cat"], "Permission denied 权限不足"))
    assert abs(np.linalg.norm(first) - 1) < 1e-5 and len(first) == embedding.DIM
    assert np.allclose(first, embedding.embed(["bash", "cat"], "Permission denied 权限不足"))
    near = np.array(embedding.embed(["bash", "cat"], "Permission denied again"))
    far = np.array(embedding.embed(["python"], "the solver timed out"))
    assert first @ near > first @ far


def test_similar_equals_a_brute_force_ranking_within_the_filters(families, staff_client):
    store, items = families
    me = "perm-03"
    query = parse_query({"agent_name": "beta"})
    mine = _vector(items[me])
    candidates = [tid for tid, item in items.items() if tid != me and item["agent_name"] == "beta"]
    scores = {tid: float(_vector(items[tid]) @ mine) for tid in candidates}
    expected = sorted(candidates, key=lambda tid: (-round(scores[tid], 4), tid))[:7]
    found = store.similar(trajectory_id=me, query=query, k=7)
    assert [row["trajectory_id"] for row in found] == expected
    assert all(row["trajectory_id"].startswith("perm") for row in found)
    body = staff_client.get(f"/api/trajectories/{me}/similar/", {"k": 5, "agent_name": "beta"}).json()
    assert [row["trajectory_id"] for row in body["results"]] == expected[:5]
    assert body["results"][0]["similarity"] > 0.5
    assert staff_client.get("/api/trajectories/nope/similar/").status_code == 404
    assert staff_client.get(f"/api/trajectories/{me}/similar/", {"k": "0"}).status_code == 400


def test_clusters_find_the_families_and_say_what_sets_them_apart(families):
    store, items = families
    found = store.clusters(query=parse_query({}), k=3)
    assert found["considered"] == found["matching"] == len(items)
    groups = [{tid.split("-")[0] for tid in cluster["ids"]} for cluster in found["clusters"]]
    assert sorted(len(cluster["ids"]) for cluster in found["clusters"]) == [24, 24, 24]
    assert all(len(group) == 1 for group in groups)
    for cluster in found["clusters"]:
        family = cluster["ids"][0].split("-")[0]
        first, second, text = FAMILIES[family]
        words = set(re.findall(r"[a-z]{4,}", text.lower()))
        assert set(cluster["terms"]) & words, cluster["terms"]
        assert f"{first} → {second}" in cluster["tools"]
        assert sum(count for _, count in cluster["by_iteration"]) == len(cluster["ids"])
    assert store.clusters(query=parse_query({}), k=3) == found  # the same rows give the same clusters


def test_a_cluster_is_annotated_whole_and_only_as_shown(families, staff_client):
    store, _ = families
    page = staff_client.get("/trajectories/clusters/", {"k": 3, "agent_name": "alpha"})
    assert page.status_code == 200 and page.content.decode().count('class="module cluster"') == 3
    clusters = store.clusters(query=parse_query({"agent_name": "alpha"}), k=3)["clusters"]
    target = clusters[1]
    form = {"list_params": "agent_name=alpha", "k": "3", "cluster": "1", "category": "env-permission"}
    stale = staff_client.post("/trajectories/clusters/annotate/", {**form, "fingerprint": "0" * 32})
    assert stale.status_code == 302
    assert not [row for row in all_rows(store) if row["category"] == "env-permission"]
    staff_client.post("/trajectories/clusters/annotate/", {**form, "fingerprint": fingerprint(target["ids"])})
    tagged = sorted(row["trajectory_id"] for row in all_rows(store) if row["category"] == "env-permission")
    assert tagged == sorted(target["ids"])
    members = staff_client.get("/trajectories/clusters/", {"k": 3, "agent_name": "alpha", "cluster": 1}).content
    assert b'id="members"' in members
    assert staff_client.get("/trajectories/clusters/", {"k": "99"}).status_code == 400
