"""Caching the expensive reads in Redis, with a generation that makes every older key unreachable.

`cached()` is the one way a read is cached; `trajectories.reads` applies it to the read functions.
Every key is built from one format string: the kind of read, the generation (a counter in Redis that
each write path but an annotation edit bumps through the `trajectories_changed` signal), the versions
the answer is computed from (the trajectories version of the projection that answers; of the
annotations, the version at which a field the read depends on last changed), and a digest of the
normalised question. So:

- a write anywhere bumps the generation (an edit: the edit counter): every process stops finding the
  old entries at once, and a process that sees either move reads the newest table versions first;
- an edit leaves reachable what does not read the fields it changed; the annotations a cached answer
  shows are given afresh on every hit (`refresh`);
- a write made while Redis was unreachable still changes the versions, so entries cached before it
  are never read again, even if Redis comes back with its old contents.

Redis being down never breaks a page: reads fall through to the store, a warning is logged once per
outage, and Redis is retried after a short pause instead of on every request.

Within a `read_scope()` (every request has one, opened by `trajsite.middleware.ReadScopeMiddleware`)
the generation and the table versions are read once, by the first cached read, and reused by the rest:
a cached page costs one generation read and at most one version check, however many reads it nests.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache

from trajectories import timing
from trajectories.query import TrajectoryQuery
from trajectories.store import get_store, served
from trajectories.store import read_scope as store_read_scope

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_FORMAT = "traj:%(kind)s:g%(generation)s:v%(versions)s:%(digest)s"
GENERATION_KEY = "traj:generation"
EDITS_KEY = "traj:edits"
HITS_KEY, MISSES_KEY = "traj:stats:hits", "traj:stats:misses"
TIMEOUT_SECONDS = 24 * 3600
# Single trajectories above this size are not cached (a 5 MB observation is cheaper read from LanceDB).
MAX_ENTRY_BYTES = 512 * 1024
_RETRY_AFTER_SECONDS = 5.0


class _Health:
    """Remembers an outage so that it is logged once and Redis is not asked again for a few seconds."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self._lock = threading.Lock()

    def usable(self) -> bool:
        return self.down_since is None or time.monotonic() - self.down_since >= _RETRY_AFTER_SECONDS

    def failed(self, error: Exception) -> None:
        with self._lock:
            if self.down_since is None:
                log.warning("Redis cache unavailable, serving uncached until it is back: %s", error)
            self.down_since = time.monotonic()

    def succeeded(self) -> None:
        if self.down_since is not None:
            with self._lock:
                if self.down_since is not None:
                    log.warning("Redis cache is back")
                self.down_since = None


health = _Health()
_seen_generation: dict[str, Any] = {"value": None}
# How stale table versions may be when Redis says no process of the site wrote since the last look.
SIGNALLED_CHECK_SECONDS = 1.0


def _redis(call: Callable[[], T], default: T) -> T:
    if not health.usable():
        return default
    try:
        with timing.timed(timing.CACHE):
            result = call()
    except Exception as error:  # any client or connection failure: the site works uncached
        health.failed(error)
        return default
    health.succeeded()
    return result


class GuardedCache:
    """A Django cache behind the same outage memory as the data cache (for sessions).

    While Redis is known to be down every call answers its default at once instead of waiting for a
    socket timeout on each request. Writes and deletes that could not reach Redis are remembered and
    repeated as deletes once it answers again (on the next call, or within a few seconds from a
    background thread when no call comes), so a session changed or ended during the outage (a logout)
    is not read back from Redis's stale copy afterwards.
    """

    _WRITES = frozenset({"set", "add", "delete", "set_many", "delete_many", "touch", "incr", "decr"})

    def __init__(self, alias: str) -> None:
        self._alias = alias
        self._stale: set[str] = set()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:
        from django.core.cache import caches

        method = getattr(caches[self._alias], name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            self._forget_stale()
            result = _redis(lambda: (method(*args, **kwargs), True), (None, False))
            if name in self._WRITES and not result[1]:
                self._remember_stale(args, kwargs)
            return result[0]

        return call

    def __contains__(self, key: str) -> bool:
        return bool(self.has_key(key))

    def _remember_stale(self, args: tuple, kwargs: dict) -> None:
        keys = args[0] if args else kwargs.get("key", kwargs.get("keys", kwargs.get("data")))
        with self._lock:
            self._stale.update([keys] if isinstance(keys, str) else list(keys or ()))
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_until_done, name="stale-sessions", daemon=True)
                self._flusher.start()

    def _flush_until_done(self) -> None:
        while self._stale:
            time.sleep(_RETRY_AFTER_SECONDS)
            self._forget_stale()

    def _forget_stale(self) -> None:
        if not self._stale or not health.usable():
            return
        from django.core.cache import caches

        with self._lock:
            keys, self._stale = self._stale, set()
        if not _redis(lambda: caches[self._alias].delete_many(list(keys)) or True, False):
            with self._lock:
                self._stale |= keys


def reset_process_state() -> None:
    """Forget the outage and the last generation seen (tests; a fresh worker starts this way)."""
    health.down_since = None
    _seen_generation["value"] = None
    _pending.update(dict.fromkeys(_pending, 0))


def generation() -> int | None:
    """The current generation, or None when Redis cannot be reached."""
    both = _generations()
    return None if both is None else both[0]


def _generations() -> tuple[int, int] | None:
    """(the generation, the edit counter) in one round trip, or None when Redis cannot be reached."""

    def read() -> tuple[int, int]:
        found = cache.get_many([GENERATION_KEY, EDITS_KEY])
        value = found.get(GENERATION_KEY)
        if value is None:
            # Redis lost it (restart, eviction): start from a value no earlier key can carry.
            cache.add(GENERATION_KEY, time.time_ns(), timeout=None)
            value = cache.get(GENERATION_KEY)
        return int(value), int(found.get(EDITS_KEY) or 0)

    return _redis(read, None)


def bump_generation(**_signal_kwargs) -> None:
    """Make every cached entry unreachable (the receiver of `trajectories_changed`)."""
    _bump(GENERATION_KEY)


def bump_edits() -> None:
    """Tell every process that annotations changed, leaving cached entries reachable: their keys
    hold the versions at which the fields they read last changed (see `cached`), which the edit
    moves on for the fields it changed. Other processes look for the new versions at once."""
    _bump(EDITS_KEY)


def _bump(counter: str) -> None:
    def bump() -> None:
        try:
            cache.incr(counter)
        except ValueError:  # no such key: Redis lost it; a value no earlier one can equal
            cache.set(counter, time.time_ns(), timeout=None)

    _redis(bump, None)
    scope = _scope.get()
    if scope is not None:
        scope.clear()  # a read after this write, in the same request, looks again


# The generation (and with it the table versions) one request reads once: {"generation": g}.
_scope: ContextVar[dict | None] = ContextVar("trajsite_cache_read_scope", default=None)


@contextlib.contextmanager
def read_scope() -> Iterator[None]:
    """Reads inside share one generation read and at most one table-version check (nested scopes join)."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set({})
    try:
        with store_read_scope():
            yield
    finally:
        _scope.reset(token)


def cache_key(kind: str, generation_value: int, versions: tuple[int, int], question: str) -> str:
    digest = hashlib.blake2b(question.encode(), digest_size=12).hexdigest()
    return KEY_FORMAT % {
        "kind": kind,
        "generation": generation_value,
        "versions": "-".join(map(str, versions)),
        "digest": digest,
    }


def normalised(query: TrajectoryQuery) -> str:
    """One text per question: parameter order, repeated values and defaults do not change it."""
    return repr((query.filter_key(), query.ordering, query.page, query.page_size))


def cached(
    kind: str,
    question: str,
    compute: Callable[[], T],
    *,
    max_bytes: int | None = None,
    annotations: frozenset[str] | None = None,
    refresh: Callable[[T], T | None] | None = None,
) -> T:
    """`compute()`'s answer to `question`, from Redis when this generation and these table versions
    already answered it. `max_bytes` leaves large answers uncached.

    `annotations`: the only annotation fields the answer is computed from (None: any). The key then
    holds the version at which one of them last changed instead of the annotations table's, so an
    edit of other fields (a tag, a note: several a second while a team reviews) leaves the answer
    cached. Annotation values the answer merely shows (a list row's tags) are given afresh to every
    hit by `refresh(found)`, from this process's projection; None from it: answered as a miss."""
    if not settings.TRAJSITE_CACHE:
        return compute()
    with read_scope():
        current = _scope_generation()
        if current is None:
            return compute()
        versions = get_store().versions_read(annotation_fields=annotations)
        key = cache_key(kind, current, versions, question)
        found = _redis(lambda: cache.get(key), None)
        if found is not None and refresh is not None:
            found = refresh(found)
        if found is not None:
            _count(HITS_KEY)
            return found
        _count(MISSES_KEY)
        with served() as answered:
            value = compute()
        # Keys name the rows of the projection that answers: an answer from another one (swapped in
        # meanwhile), or from annotations older than the key names (a training run's projection catching
        # up, store/runs.py), is not stored under this key.
        stale = any(answered_from[0] != versions[0] or answered_from[1] < versions[1] for answered_from, _ in answered)
        if not stale and (max_bytes is None or _size(value) <= max_bytes):
            _redis(lambda: cache.set(key, value, timeout=TIMEOUT_SECONDS), None)
        return value


def _scope_generation() -> int | None:
    scope = _scope.get()
    if "generation" not in scope:
        both = _generations()
        if both is not None and both != _seen_generation["value"]:
            # Another process wrote: read the newest table versions before building keys.
            get_store().sync(force=True)
            _seen_generation["value"] = both
        elif both is not None:
            # No write was signalled since this process last looked: the store is asked anyway, but
            # at most every SIGNALLED_CHECK_SECONDS (an import signals when it ends, not at each batch;
            # a script writing LanceDB directly never). Asking on every request cost ~3 ms (listing
            # thousands of annotation versions after busy editing).
            get_store().sync(max_age=SIGNALLED_CHECK_SECONDS)
        scope["generation"] = None if both is None else both[0]
    return scope["generation"]


_pending = {HITS_KEY: 0, MISSES_KEY: 0}
_flushed_at = [time.monotonic()]
_FLUSH_EVERY_SECONDS = 1.0


def _count(key: str) -> None:
    """Hit/miss counters are summed in the process and added to Redis about once a second."""
    _pending[key] += 1
    if time.monotonic() - _flushed_at[0] >= _FLUSH_EVERY_SECONDS:
        flush_counters()


def flush_counters() -> None:
    _flushed_at[0] = time.monotonic()
    for key in (HITS_KEY, MISSES_KEY):
        amount, _pending[key] = _pending[key], 0
        if amount:
            _redis(lambda key=key, amount=amount: _add(key, amount), None)


def _add(key: str, amount: int) -> None:
    try:
        cache.incr(key, amount)
    except ValueError:
        cache.set(key, amount, timeout=None)


def _size(value: Any) -> int:
    if isinstance(value, dict):
        return sum(len(item) for item in value.values() if isinstance(item, str))
    return 0


def stats(sample: int = 200) -> dict[str, Any]:
    """Hit and miss counts, this site's key count, and Redis memory (raises when Redis is down)."""
    flush_counters()
    client = cache.client.get_client(write=False)
    keys = list(cache.iter_keys("traj:*"))
    sampled = [cache.make_key(key) for key in keys[:sample]]
    entry_bytes = sum(client.memory_usage(key) or 0 for key in sampled)
    return {
        "generation": cache.get(GENERATION_KEY),
        "hits": int(cache.get(HITS_KEY) or 0),
        "misses": int(cache.get(MISSES_KEY) or 0),
        "keys": len(keys),
        "entry_bytes": entry_bytes,
        "used_memory_human": client.info("memory").get("used_memory_human"),
    }
