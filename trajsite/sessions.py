"""Sessions read through Redis and kept in the database, with the data cache's outage handling:
a frozen or unreachable Redis costs one short timeout every few seconds, not one per request."""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.backends import cached_db

from trajectories.cache import GuardedCache

_guarded = GuardedCache(settings.SESSION_CACHE_ALIAS)


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key=None) -> None:
        super().__init__(session_key)
        self._cache = _guarded
