"""Generated demo data looks like GRPO training output."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean

import orjson

from trajectories.demo import DemoShape, generate


def test_demo_groups_runs_and_improving_rewards():
    records = list(generate(DemoShape(count=12_000, seed=1)))
    assert len({r["trajectory_id"] for r in records}) == 12_000
    assert len({r["training_id"] for r in records}) == 3
    groups = Counter((r["training_id"], r["iteration_id"], r["data_id"]) for r in records)
    assert set(groups.values()) == {8}
    by_iteration = defaultdict(list)
    for r in records:
        by_iteration[r["iteration_id"]].append(r["reward"])
    iterations = sorted(by_iteration)
    assert mean(by_iteration[iterations[-1]]) > mean(by_iteration[iterations[0]]) + 0.1
    assert {r["analysis"]["category"] for r in records} >= {"correct", "wrong_tool", "timeout"}
    size = mean(len(orjson.dumps(r)) for r in records[:2000])
    assert 6_000 < size < 11_000
    assert all(any("tool_calls" in step for step in r["steps"]) for r in records[:100])


def test_demo_is_deterministic():
    assert list(generate(DemoShape(count=50, seed=3))) == list(generate(DemoShape(count=50, seed=3)))
