"""Which trajectories a bulk action applies to, stated before anything changes and never widened.

A bulk action names its rows by listed ids, by a filter query, or explicitly as everything. A query
that filters nothing is refused unless the caller said "all"; a destructive action on more than
`TRAJSITE_BULK_CONFIRM_ROWS` rows first answers with the count and a confirmation token, and the
second call goes ahead only if the selection is still exactly the rows that were counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from django.conf import settings
from django.core import signing

from trajectories import query as q
from trajectories.store import get_store

_TOKEN_SALT = "trajsite.bulk-confirmation"
TOKEN_MAX_AGE_SECONDS = 15 * 60


class ScopeError(ValueError):
    """The selection is not stated clearly enough to act on."""


@dataclass(frozen=True)
class Selection:
    ids: tuple[str, ...]
    description: str
    everything: bool = False

    @property
    def count(self) -> int:
        return len(self.ids)

    @cached_property
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for trajectory_id in self.ids:
            digest.update(trajectory_id.encode("utf-8", "surrogatepass") + b"\x00")
        return digest.hexdigest()


def by_ids(ids: list[str]) -> Selection:
    stored = get_store().existing_ids(ids=list(dict.fromkeys(ids)))
    return Selection(ids=tuple(sorted(stored)), description=f"{len(stored):,} listed trajectories")


def by_query(query: q.TrajectoryQuery, *, everything: bool = False) -> Selection:
    """The rows matching `query`; an unfiltered query needs `everything` to say so."""
    if not query.is_filtered and not everything:
        raise ScopeError(
            'this query filters nothing, so it would select every trajectory; send "all": true to mean every trajectory'
        )
    ids = tuple(get_store().matching_ids(query=query))
    if not query.is_filtered:
        return Selection(ids=ids, description=f"every trajectory in the store ({len(ids):,})", everything=True)
    filters = "&".join(f"{name}={value}" for name, value in q.describe_filters(query))
    return Selection(ids=ids, description=f"{len(ids):,} trajectories matching {filters}")


def needs_confirmation(selection: Selection) -> bool:
    return selection.count > settings.TRAJSITE_BULK_CONFIRM_ROWS


def confirmation_token(selection: Selection, *, action: str, user) -> str:
    return signing.dumps(
        {"action": action, "user": user.pk, "rows": selection.fingerprint, "count": selection.count},
        salt=_TOKEN_SALT,
        compress=True,
    )


def confirmation_problem(token: str | None, selection: Selection, *, action: str, user) -> str | None:
    """None when `token` was issued to this user for this action on exactly these rows, recently;
    else what is missing, for the answer that asks again."""
    if not token:
        return f"this acts on {selection.description}"
    try:
        signed = signing.loads(token, salt=_TOKEN_SALT, max_age=TOKEN_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        return f"the confirmation expired; this acts on {selection.description}"
    except signing.BadSignature:
        return f"the confirmation token is not valid; this acts on {selection.description}"
    if signed.get("action") != action or signed.get("user") != user.pk:
        return f"the confirmation was given for another action or user; this acts on {selection.description}"
    if (signed.get("rows"), signed.get("count")) != (selection.fingerprint, selection.count):
        return (
            f"the selection changed since it was confirmed ({signed.get('count'):,} rows then): "
            f"it is now {selection.description}"
        )
    return None
