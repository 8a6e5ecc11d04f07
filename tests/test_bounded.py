"""Bounded caches evicted by many threads at once (a KeyError here was a 500 under load)."""

from __future__ import annotations

import sys
import threading

from trajectories.store.bounded import evict_oldest


def _hammer(evict, *, threads: int = 8, rounds: int = 20_000) -> list[BaseException]:
    cache: dict[int, int] = {}
    failures: list[BaseException] = []

    def run(offset: int) -> None:
        try:
            for number in range(rounds):
                if len(cache) >= 4:
                    evict(cache)
                cache[offset * rounds + number] = number
        except BaseException as error:  # what the test counts
            failures.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows within a second
    try:
        workers = [threading.Thread(target=run, args=(offset,)) for offset in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(cache) <= 4 + threads
    return failures


def test_threads_evicting_at_once_never_fail():
    assert _hammer(evict_oldest) == []


def test_the_race_it_guards_against_happens():
    """The plain pop of the first key fails under the same load: the test above can fail."""
    for _ in range(5):  # a thread switch at the wrong moment: seen at the first try here, every time
        failures = _hammer(lambda cache: cache.pop(next(iter(cache))))
        if failures:
            break
    assert failures and all(isinstance(error, KeyError | RuntimeError) for error in failures)
