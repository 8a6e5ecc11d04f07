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
from django.http import QueryDict

from trajectories import query as q
from trajectories import reads

_TOKEN_SALT = "trajsite.bulk-confirmation"
TOKEN_MAX_AGE_SECONDS = 15 * 60


class ScopeError(ValueError):
    """The selection is not stated clearly enough to act on; `parameter` names what to fix."""

    def __init__(self, message: str, *, parameter: str = "query") -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


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


def resolve(
    *, ids: list[str] | None = None, query: str | None = None, everything: bool = False, list_url: bool = False
) -> Selection:
    """The rows a bulk action names, for the API and the pages alike: listed `ids`, the filters in
    `query` (a query string), or, with `everything` and no query, every row. With `list_url` the query
    is a list page's own: its page, ordering and columns are dropped, its filters kept. A query that
    does not parse is a ScopeError, never an empty (or a wider) selection."""
    if ids is not None:
        return by_ids(ids)
    if query is None:
        if not everything:
            raise ScopeError("nothing selected: give ids, a query, or all", parameter="non_field_errors")
        return by_query(q.TrajectoryQuery(), everything=True)
    params = QueryDict(query, mutable=True)
    if list_url:
        for name in q.DISPLAY_ONLY:
            params.pop(name, None)
    try:
        parsed = q.parse_filters(params, blank_is_empty=not list_url)
    except q.QueryError as error:
        raise ScopeError(str(error)) from error
    return by_query(parsed, everything=everything)


def by_ids(ids: list[str]) -> Selection:
    stored = reads.existing_ids(ids=list(dict.fromkeys(ids)))
    return Selection(ids=tuple(sorted(stored)), description=f"{len(stored):,} listed trajectories")


def by_query(query: q.TrajectoryQuery, *, everything: bool = False) -> Selection:
    """The rows matching `query`; an unfiltered query needs `everything` to say so."""
    if not query.is_filtered and not everything:
        raise ScopeError('this query filters nothing; send "all": true to act on every trajectory')
    ids = tuple(reads.matching_ids(query=query))
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
