"""A table's newest version found without listing its versions, on a real LanceDB in a temp dir."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from trajectories.store import AnnotationChange, TrajectoryStore
from trajectories.store.latest import LatestVersions
from trajectories.store.repository import ANNOTATIONS_TABLE

from .test_store import _batch


def _one_row(store, record):
    batch = _batch([record(trajectory_id="a")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    return store._newest(ANNOTATIONS_TABLE)


def _edit(store, note: str) -> None:
    store.annotate(trajectory_ids=["a"], change=AnnotationChange(notes=note), user=None)


def test_every_commit_is_seen_at_once_after_one_listing(store, record):
    probe = _one_row(store, record)
    versions = LatestVersions()
    first = versions.of(probe)
    assert first == probe.version
    other = TrajectoryStore(uri=store.uri)  # another process
    seen = []
    for n in range(5):
        _edit(other, f"n{n}")
        seen.append(versions.of(probe))
        seen.append(versions.of(probe))
    assert seen == [version for version in range(first + 1, first + 6) for _ in (0, 1)]
    _edit(other, "x")
    _edit(other, "y")
    assert versions.of(probe) == first + 7 == probe.latest_version
    assert versions.listings == 1


def test_a_gap_left_by_pruning_around_a_tagged_version_is_listed_across(store, record):
    """A tag keeps the version seen while the ones after it, but the newest, are pruned: walking from
    it finds no next manifest, and the commits' hint says there is a newer one."""
    probe = _one_row(store, record)
    versions = LatestVersions()
    tagged = versions.of(probe)
    probe.tags.create("kept", tagged)
    for n in range(4):
        _edit(store, f"n{n}")
    store._newest(ANNOTATIONS_TABLE).cleanup_old_versions(older_than=timedelta(0), error_if_tagged_old_versions=False)
    newest = probe.latest_version
    assert newest == tagged + 4
    assert versions.of(probe) == newest
    assert versions.listings == 2


def test_without_the_commits_hint_the_versions_are_listed(store, record):
    probe = _one_row(store, record)
    versions = LatestVersions()
    versions.of(probe)
    (Path(probe.uri) / "_versions" / "latest_version_hint.json").unlink()
    assert versions.of(probe) == versions.of(probe) == probe.latest_version
    assert versions.listings == 3


def test_a_version_seen_then_pruned_is_listed_again(store, record):
    probe = _one_row(store, record)
    versions = LatestVersions()
    versions._seen[probe.uri] = probe.version + 100  # never committed: nothing to walk from
    assert versions.of(probe) == probe.version
    assert versions.listings == 1
