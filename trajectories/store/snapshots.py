"""Snapshots of the store on Lance's own versions and tags: both tables tagged under one name,
restored together, and kept by every cleanup.

A restore never acts on more than its plan says: the plan names each table's version now and the
version it goes back to (with row counts), the current state is tagged first (so the restore itself
can be undone), and a table that moved since the plan was made is not restored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import commits

TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Versions older than this are never pruned by LanceDB's optimize; cleanup is done by `prune`, which
# keeps tagged versions (LanceDB's own cleanup refuses to run at all when a tag is old).
_NEVER = timedelta(days=365 * 100)


class SnapshotError(ValueError):
    """A tag or version that cannot be used, said in words for the command line."""


@dataclass(frozen=True)
class TableVersion:
    table: str
    version: int
    rows: int
    timestamp: datetime | None


@dataclass(frozen=True)
class Snapshot:
    tag: str
    versions: dict[str, int]


@dataclass(frozen=True)
class RestorePlan:
    target: str
    moves: tuple[tuple[TableVersion, TableVersion], ...]

    def describe(self) -> list[str]:
        return [
            f"{now.table}: version {now.version} ({now.rows:,} rows) -> version {then.version} "
            f"({then.rows:,} rows{_when(then)})"
            for now, then in self.moves
        ]


def _when(version: TableVersion) -> str:
    return f", written {version.timestamp:%Y-%m-%d %H:%M:%S} UTC" if version.timestamp else ""


def checked_tag(tag: str) -> str:
    if not TAG.match(tag or ""):
        raise SnapshotError(f"tag {tag!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return tag


def create(tables: dict, *, tag: str) -> dict[str, int]:
    """Tag each table's newest version as `tag`; refuses a tag that exists on any of them."""
    checked_tag(tag)
    taken = [name for name, table in tables.items() if tag in table.tags.list()]
    if taken:
        raise SnapshotError(f"tag {tag!r} exists already ({', '.join(taken)}); choose another name")
    versions = {}
    for name, table in tables.items():
        table.checkout_latest()
        versions[name] = table.version
        table.tags.create(tag, table.version)
    return versions


def listed(tables: dict) -> list[Snapshot]:
    found: dict[str, dict[str, int]] = {}
    for name, table in tables.items():
        for tag, entry in table.tags.list().items():
            found.setdefault(tag, {})[name] = _tag_version(entry)
    return [Snapshot(tag=tag, versions=versions) for tag, versions in sorted(found.items())]


def _tag_version(entry) -> int:
    return entry["version"] if isinstance(entry, dict) else entry.version


def plan(tables: dict, *, tag: str | None = None, version: int | None = None, main: str) -> RestorePlan:
    """What restoring to `tag` (every table) or to `version` of the `main` table would do. With a
    version, the other tables go back to their newest version written no later than it."""
    if (tag is None) == (version is None):
        raise SnapshotError("give a tag or a version")
    if tag is not None:
        targets = {}
        for name, table in tables.items():
            entry = table.tags.list().get(tag)
            if entry is None:
                raise SnapshotError(f"no snapshot tagged {tag!r} on {name}")
            targets[name] = _tag_version(entry)
        label = f"snapshot {tag!r}"
    else:
        history = _history(tables[main])
        if version not in history:
            kept = ", ".join(str(number) for number in sorted(history)[-10:])
            raise SnapshotError(f"{main} has no version {version} (pruned, or never written); the newest kept: {kept}")
        moment = history[version]
        targets = {main: version}
        for name, table in tables.items():
            if name != main:
                earlier = [number for number, written in _history(table).items() if written <= moment]
                if not earlier:
                    raise SnapshotError(f"{name} keeps no version from before {moment:%Y-%m-%d %H:%M:%S}")
                targets[name] = max(earlier)
        label = f"{main} version {version}"
    moves = tuple((_state(name, table, None), _state(name, table, targets[name])) for name, table in tables.items())
    return RestorePlan(target=label, moves=moves)


def _history(table) -> dict[int, datetime]:
    return {entry["version"]: _utc(entry["timestamp"]) for entry in table.list_versions()}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _state(name: str, table, version: int | None) -> TableVersion:
    dataset = table.to_lance()
    latest = dataset.latest_version
    at = dataset.checkout_version(latest if version is None else version)
    written = _history(table).get(at.version)
    return TableVersion(table=name, version=at.version, rows=at.count_rows(), timestamp=written)


def restore(tables: dict, restoring: RestorePlan, *, safety_tag: str) -> list[str]:
    """Carry out `restoring` after tagging the current state `safety_tag`; refuses a table that was
    written since the plan. Returns what was done, one line per table."""
    for now, _ in restoring.moves:
        latest = tables[now.table].to_lance().latest_version
        if latest != now.version:
            moved = f"version {now.version} -> {latest}"
            raise SnapshotError(f"{now.table} was written since the plan ({moved}); nothing restored, run again")
    create(tables, tag=safety_tag)
    done = []
    for now, then in restoring.moves:
        table = tables[now.table]
        if now.version == then.version:
            done.append(f"{now.table}: already at version {then.version}")
            continue
        commits.retrying(lambda table=table, then=then: table.restore(then.version), action=f"restoring {now.table}")
        done.append(f"{now.table}: version {then.version} is now the newest ({then.rows:,} rows)")
    return done


def optimize(table, *, keep_versions: timedelta) -> None:
    """Compact and index `table`, then prune versions older than `keep_versions` except tagged ones."""
    table.optimize(cleanup_older_than=_NEVER)
    prune(table, older_than=keep_versions)


def prune(table, *, older_than: timedelta) -> None:
    table.to_lance().cleanup_old_versions(older_than=older_than, error_if_tagged_old_versions=False)


def safety_tag(restoring: RestorePlan) -> str:
    """The name the state before a restore is kept under (versions in it: two restores a second apart differ)."""
    versions = "-".join(f"v{now.version}" for now, _ in restoring.moves)
    return f"before-restore-{datetime.now(UTC):%Y%m%d-%H%M%S}-{versions}"
