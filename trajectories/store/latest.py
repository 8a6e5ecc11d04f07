"""A table's newest version, without listing all its versions.

Lance finds a table's newest version by listing its `_versions` directory, one manifest per commit:
an hour of editing leaves thousands (14,000 took ~5 ms a look on this machine, and every edit looks,
as does every request after another process's edit: under load a third of an edit's time). On a local
disk a version's manifest has a name known in advance, and commits add them in order (a manifest
appears whole, by a link): from the newest version seen, the newest now is found by asking whether the
next manifests exist, a few microseconds each.

Versions can be pruned, except tagged ones: a version seen and tagged, then later ones committed and
all but the last pruned, leaves a gap the walk cannot cross. Each commit also writes the version it
made into `latest_version_hint.json`; a hint beyond where the walk stopped (or no hint) means a listing.
The directory is also listed the first time, and on object storage (where versions are checked at most
once a second).
"""

from __future__ import annotations

import json
from pathlib import Path

_LAST = 2**64 - 1
_HINT = "latest_version_hint.json"


class LatestVersions:
    def __init__(self) -> None:
        self._seen: dict[str, int] = {}  # table location -> the newest version seen (a racing thread's: a start)
        self.listings = 0  # looks that listed the versions (tests pin the saving)

    def of(self, dataset) -> int:
        """The newest version of the table whose dataset (at any version) is `dataset`."""
        location = dataset.uri
        seen = self._seen.get(location)
        if seen is not None and "://" not in location:
            versions = Path(location) / "_versions"
            if _committed(versions, seen):
                while _committed(versions, seen + 1):
                    seen += 1
                hint = _hint(versions)
                if hint is not None and hint <= seen:
                    self._seen[location] = seen
                    return seen
        latest = dataset.latest_version
        self.listings += 1
        self._seen[location] = latest
        return latest


def _committed(versions: Path, version: int) -> bool:
    # Lance names manifests `{u64::MAX - version:020}.manifest` (so that a listing on object storage
    # starts at the newest) or, in tables written by older versions, `{version}.manifest`.
    return (versions / f"{_LAST - version:020d}.manifest").exists() or (versions / f"{version}.manifest").exists()


def _hint(versions: Path) -> int | None:
    try:
        return int(json.loads((versions / _HINT).read_bytes())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
