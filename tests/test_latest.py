"""A table's newest version found without listing its versions, on a real LanceDB in a temp dir."""

from __future__ import annotations

from trajectories.store import AnnotationChange, TrajectoryStore
from trajectories.store.latest import LatestVersions
from trajectories.store.repository import ANNOTATIONS_TABLE

from .test_store import _batch


def _one_row(store, record):
    batch = _batch([record(trajectory_id="a")])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    return store._newest(ANNOTATIONS_TABLE)


def test_every_commit_is_seen_at_once_after_one_listing(store, record):
    probe = _one_row(store, record)
    versions = LatestVersions(store.uri)
    first = versions.of(ANNOTATIONS_TABLE, probe)
    assert first == probe.version
    other = TrajectoryStore(uri=store.uri)  # another process
    seen = []
    for n in range(5):
        other.annotate(trajectory_ids=["a"], change=AnnotationChange(notes=f"n{n}"), user=None)
        seen.append(versions.of(ANNOTATIONS_TABLE, probe))
        seen.append(versions.of(ANNOTATIONS_TABLE, probe))
    assert seen == [version for version in range(first + 1, first + 6) for _ in (0, 1)]
    other.annotate(trajectory_ids=["a"], change=AnnotationChange(notes="x"), user=None)
    other.annotate(trajectory_ids=["a"], change=AnnotationChange(notes="y"), user=None)
    assert versions.of(ANNOTATIONS_TABLE, probe) == first + 7 == probe.latest_version
    assert versions.listings == 1


def test_a_pruned_or_unknown_version_is_listed_again(store, record):
    probe = _one_row(store, record)
    versions = LatestVersions(store.uri)
    versions._seen[ANNOTATIONS_TABLE] = probe.version + 100  # never committed: nothing to walk from
    assert versions.of(ANNOTATIONS_TABLE, probe) == probe.version
    assert versions.listings == 1


def test_object_storage_always_lists(store, record):
    probe = _one_row(store, record)
    versions = LatestVersions("s3://bucket/prefix")
    assert versions.of(ANNOTATIONS_TABLE, probe) == versions.of(ANNOTATIONS_TABLE, probe) == probe.version
    assert versions.listings == 2
