"""Merging the small fragments edits leave, while people keep editing."""

from __future__ import annotations

import threading
import time

from tests.test_store import _batch
from trajectories.query import TrajectoryQuery
from trajectories.store import AnnotationChange, TrajectoryStore, upkeep


def test_edits_stay_one_lookup_away_and_none_is_lost(store, record, settings):
    """Sixty one-row edits from two servers at once: the small fragments they leave are merged (a
    lookup opens every fragment), every edit is kept, and both servers' lists equal a fresh read."""
    batch = _batch([record(trajectory_id=f"t{i:02d}", tags=None) for i in range(60)])
    store.insert_new(trajectories=batch.trajectories, annotations=batch.annotations)
    other = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR)
    query = TrajectoryQuery(page_size=100, ordering=(("trajectory_id", False),))
    store.page(query=query), other.page(query=query)

    def edit(server, ids):
        for key in ids:
            server.annotate(trajectory_ids=[key], change=AnnotationChange(add_tags=(f"tag-{key}",)), user=None)

    threads = [threading.Thread(target=edit, args=(server, [f"t{i:02d}" for i in range(n, 60, 2)]))
               for n, server in enumerate((store, other))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A merge that lost to an edit is tried again by the next edit: this one races nothing.
    store.annotate(trajectory_ids=["t00"], change=AnnotationChange(is_bookmarked=True), user=None)
    annotations = store._table("annotations")
    deadline = time.monotonic() + 30
    while store._folding.locked() or other._folding.locked():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    annotations.checkout_latest()
    assert upkeep.small_fragments(annotations.to_lance()) < upkeep.SMALL_FRAGMENTS
    fresh = TrajectoryStore(uri=settings.TRAJSITE_DATA_DIR).page(query=query).rows
    assert {row["trajectory_id"]: row["tags"] for row in fresh} == {f"t{i:02d}": [f"tag-t{i:02d}"] for i in range(60)}
    assert store.page(query=query).rows == fresh and other.page(query=query).rows == fresh
