"""Bounded caches that request threads share without a lock."""

from __future__ import annotations

_GONE = object()


def evict_oldest(cache: dict) -> None:
    """Drop one of `cache`'s oldest entries. Threads evict at once: the entry one finds may be gone
    when it pops it (a KeyError was a 500 under load), or the dict may change size while it looks;
    it tries again until it removed one itself, or a cache that is never emptied grows unbounded."""
    while cache:
        try:
            key = next(iter(cache))
        except (StopIteration, RuntimeError):
            continue
        if cache.pop(key, _GONE) is not _GONE:
            return
