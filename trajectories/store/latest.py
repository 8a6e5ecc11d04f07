"""A table's newest version, without listing all its versions.

Lance finds a table's newest version by listing its `_versions` directory, one manifest per commit:
an hour of editing leaves thousands (14,000 took ~5 ms a look on this machine, and every edit looks,
as does every request after another process's edit: under load a third of an edit's time). On a local
disk a version's manifest has a name known in advance, and commits only ever add the next one (a
manifest appears whole, by rename): from the newest version seen, the newest now is found by asking
whether the next manifests exist, a few microseconds each. The directory is listed only the first
time, when the version seen was pruned, and on object storage (where a listing is needed anyway, and
versions are checked at most once a second).
"""

from __future__ import annotations

from pathlib import Path

_LAST = 2**64 - 1


class LatestVersions:
    def __init__(self, uri: str) -> None:
        self._root = None if "://" in uri else Path(uri)
        self._seen: dict[str, int] = {}  # table -> the newest version seen (threads may race: any is a start)
        self.listings = 0  # looks that listed the versions (tests pin the saving)

    def of(self, name: str, dataset) -> int:
        """The newest version of table `name`, whose dataset (at any version) is `dataset`."""
        seen = self._seen.get(name)
        if seen is not None and self._root is not None:
            versions = self._root / f"{name}.lance" / "_versions"
            if _committed(versions, seen):
                while _committed(versions, seen + 1):
                    seen += 1
                self._seen[name] = seen
                return seen
        latest = dataset.latest_version
        self.listings += 1
        self._seen[name] = latest
        return latest


def _committed(versions: Path, version: int) -> bool:
    # Lance names manifests `{u64::MAX - version:020}.manifest` (so that a listing on object storage
    # starts at the newest) or, in tables written by older versions, `{version}.manifest`.
    return (versions / f"{_LAST - version:020d}.manifest").exists() or (versions / f"{version}.manifest").exists()
