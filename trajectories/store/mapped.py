"""Projections written once per table layout as files that every process maps.

Every web worker used to read, decode and sort the same million rows and hold its own copy (~200 MB of
columns plus ~4-8 MB per sort order per million rows, per process), and after each import every worker
rebuilt it. Here the first process to build the projection of a layout writes its trajectory columns
(numpy `.npy`, Arrow IPC for strings) into a directory named by the table and its layout, then the
sort orders, the analytics' indexes (`Projection.derived`) and the ids' search bytes as they are built;
the others map those files instead of building: the pages sit once in the page cache, shared by every
process on the machine (and dropped under memory pressure, read back from disk). File locks make one
process build each piece while the others' background threads wait; a request never waits on them.

Only what the trajectory rows alone decide is shared. Annotations stay per process (edits patch them in
memory); so do sort orders by annotation fields and the caches derived from annotations. A directory
is written under a temporary name and renamed, so a reader sees all of it or none; directories of
older layouts beyond the newest few are removed (a process still mapping one keeps its pages until it
lets go). Whatever cannot be written or read (a full or read-only disk, a damaged file) is built and
kept in memory, as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from trajectories import priority
from trajectories.fields import Kind

from .columns import Coded, FlagColumn, IdColumn, ListColumn, NumberColumn

log = logging.getLogger(__name__)

_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (Coded, FlagColumn, IdColumn, ListColumn, NumberColumn)}
_FORMAT = 1  # written into every manifest: a directory of another format is rebuilt, not misread
_MANIFEST = "manifest.json"
_DERIVED = "derived"
# Tuples and lists longer than this are not shared item by item (a list of values belongs in an array).
_MAX_ITEMS = 64
# Past this wait for another process's build of the same layout (a build at low priority under load
# takes minutes at 10M), a process builds its own.
_LOCK_WAIT_SECONDS = 300
# A directory still being written after this long belongs to a process that died writing it.
_ABANDONED_SECONDS = 3_600


class ProjectionFiles:
    """Where the projections of one store's tables are shared, and how many layouts are kept."""

    def __init__(self, *, root: Path, keep: int = 3) -> None:
        self.root = Path(root)
        self.keep = keep

    def directory(self, *, uri: str, layout: tuple) -> Path:
        digest = hashlib.sha256(repr((uri, layout)).encode()).hexdigest()[:24]
        return self.root / digest

    @contextlib.contextmanager
    def building(self, *, uri: str, layout: tuple) -> Iterator[None]:
        """Held while this process builds (or maps) the layout's projection: the web workers of a
        machine see a new version at the same moment, and one builds while the others wait to map
        it (for `_LOCK_WAIT_SECONDS` at most). Lock files are few and never removed (removing one could
        let two holders in); layouts sharing one may wait on each other."""
        with contextlib.suppress(OSError):  # else no lock to be had (a read-only disk): built as if alone
            self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f".lock-{self.directory(uri=uri, layout=layout).name[:2]}"):
            yield

    def written(self, *, uri: str, layout: tuple) -> bool:
        """Whether the layout's projection is there to map (without mapping it)."""
        return _complete(self.directory(uri=uri, layout=layout))

    def mapped(self, *, uri: str, layout: tuple) -> tuple[IdColumn, dict[str, Any], Path] | None:
        """The ids and columns written for this layout, mapped; None when none were (or they cannot be
        read: a half-removed directory, another format), and the caller builds them."""
        directory = self.directory(uri=uri, layout=layout)
        try:
            manifest = json.loads((directory / _MANIFEST).read_text())
            if manifest.get("format") != _FORMAT:
                return None
            ids = _mapped(manifest["ids"], directory)
            columns = {name: _mapped(spec, directory) for name, spec in manifest["columns"].items()}
            ids.shared = functools.partial(derived, directory)  # the ids' search bytes, when first asked
            for name, column in columns.items():
                if isinstance(column, NumberColumn):  # the analytics' weights and group numbers
                    column.shared = functools.partial(_column_derived, directory, name)
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as error:
            if not isinstance(error, FileNotFoundError):
                log.warning("shared projection in %s not readable (%s): building it here", directory, error)
            return None
        return ids, columns, directory

    def write(self, *, uri: str, layout: tuple, ids: IdColumn, columns: dict[str, Any]) -> Path | None:
        """Write these columns as the layout's shared projection (unless another process just did);
        the directory, or None when it could not be written (a full or read-only disk: each process
        then keeps its own copy, as before)."""
        directory = self.directory(uri=uri, layout=layout)
        try:
            if (directory / _MANIFEST).exists():
                return directory
            self.root.mkdir(parents=True, exist_ok=True)
            staging = _staging(self.root)
            manifest = {
                "format": _FORMAT,
                "uri": uri,
                "ids": _written(ids, staging, "ids"),
                "columns": {name: _written(column, staging, name) for name, column in columns.items()},
            }
            (staging / _DERIVED).mkdir()
            (staging / _MANIFEST).write_text(json.dumps(manifest))
            try:
                staging.rename(directory)
            except OSError:  # another process renamed its copy first: the same rows, keep theirs
                shutil.rmtree(staging, ignore_errors=True)
            self._remove_old(keeping=directory)
        except OSError as error:
            log.warning("shared projection not written to %s (%s): this process keeps its own", self.root, error)
            shutil.rmtree(locals().get("staging", self.root / ".none"), ignore_errors=True)
            return None
        return directory

    def _remove_old(self, *, keeping: Path) -> None:
        """Keep the newest `keep` directories (by when they were written), this one among them, and
        remove what a process killed while writing left behind. Other processes may be removing the
        same directories meanwhile."""
        now = time.time()
        for path in self.root.glob(".writing-*"):
            if now - _written_at(path) > _ABANDONED_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        written = [path for path in self.root.iterdir() if not path.name.startswith(".") and _complete(path)]
        for path in sorted(written, key=_written_at, reverse=True)[self.keep :]:
            if path != keeping:
                shutil.rmtree(path, ignore_errors=True)


def _complete(path: Path) -> bool:
    try:
        return (path / _MANIFEST).exists()
    except OSError:
        return False


def _staging(parent: Path) -> Path:
    """A fresh directory to write into before renaming it into place, readable by the site's other
    users (mkdtemp makes it private: a projection written by `manage.py` as another user must still
    be mapped by the web workers)."""
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=parent))
    staging.chmod(0o755)
    return staging


def _written_at(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0  # removed meanwhile


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing) while the block runs, waited for at most
    `_LOCK_WAIT_SECONDS` by background work and not at all by requests; the block runs without it
    when it cannot be had (held, a read-only disk, a directory removed meanwhile). Released when the
    file closes, or when the process dies."""
    try:
        lock = open(path, "a+b")  # noqa: SIM115
    except OSError:
        yield
        return
    with lock:
        # Only bulk work waits: a request waiting on a build that runs at the lowest priority in another
        # process would wait behind every request of the machine. It builds for itself instead.
        patience = _LOCK_WAIT_SECONDS if priority.this_thread_lowered() else 0
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    if patience:
                        log.warning("%s held for %d s by another process: going ahead", path, patience)
                    break
                time.sleep(0.05)
        yield


def shareable(cls: type) -> type:
    """A class decorator: instances (dataclasses of arrays and numbers) can be shared as derived values."""
    _CLASSES[cls.__name__] = cls
    return cls


def derived(directory: Path, key: tuple, build: Callable[[], Any]) -> Any:
    """What `build()` makes from the rows of the projection shared in `directory` (a sort order, an
    analytics index, the ids' search bytes): mapped when another process made it, else made here (one
    process at a time: the workers warm the same ones at the same moment) and shared; kept in memory
    as made when it cannot be written."""
    path = _derived_path(directory, key)
    found = _mapped_value(path)
    if found is not _MISSING:
        return found
    with _locked(path.with_suffix(".lock")):
        return _derived(path, build)


def _column_derived(directory: Path, name: str, key: tuple, build: Callable[[], Any]) -> Any:
    return derived(directory, ("column", name, *key), build)


def has_derived(directory: Path, key: tuple) -> bool:
    """Whether some process shared what `key` names in `directory` (without mapping it)."""
    return _complete(_derived_path(directory, key))


def _derived_path(directory: Path, key: tuple) -> Path:
    return directory / _DERIVED / hashlib.sha256(repr(key).encode()).hexdigest()[:24]


def _derived(path: Path, build: Callable[[], Any]) -> Any:
    found = _mapped_value(path)
    if found is not _MISSING:
        return found
    value = build()
    try:
        staging = _staging(path.parent)
        (staging / _MANIFEST).write_text(json.dumps(_written(value, staging, "value")))
    except (OSError, TypeError):
        shutil.rmtree(locals().get("staging", path.parent / ".none"), ignore_errors=True)
        return value
    try:
        staging.rename(path)
    except OSError:  # made by another process meanwhile: the same value
        shutil.rmtree(staging, ignore_errors=True)
    found = _mapped_value(path)
    return value if found is _MISSING else found


_MISSING = object()


def _mapped_value(path: Path) -> Any:
    try:
        return _mapped(json.loads((path / _MANIFEST).read_text()), path)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return _MISSING


def _written(value: Any, directory: Path, name: str) -> Any:
    """Write `value` (numpy and Arrow arrays, numbers, and tuples and registered dataclasses of them)
    under `name`; its spec for `_mapped`. TypeError for anything else."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("arrays of Python objects cannot be shared")
        np.save(directory / f"{name}.npy", value)
        return {"npy": f"{name}.npy"}
    if isinstance(value, pa.Array):
        batch = pa.record_batch([value], names=["values"])
        with pa.OSFile(str(directory / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as out:
            out.write_batch(batch)
        return {"arrow": f"{name}.arrow"}
    if isinstance(value, bytes):  # mapped back as an mmap: a shared buffer with bytes' find()
        (directory / f"{name}.bin").write_bytes(value)
        return {"bytes": f"{name}.bin"}
    if isinstance(value, Kind):
        return {"kind": value.value}
    if value is None or isinstance(value, bool | int | float | str):
        return {"scalar": value}
    if isinstance(value, tuple | list) and len(value) <= _MAX_ITEMS:
        return {"items": [_written(item, directory, f"{name}.{index}") for index, item in enumerate(value)],
                "tuple": isinstance(value, tuple)}  # fmt: skip
    if dataclasses.is_dataclass(value) and _CLASSES.get(type(value).__name__) is type(value):
        parts = {
            part.name: _written(getattr(value, part.name), directory, f"{name}.{part.name}")
            for part in dataclasses.fields(value)
        }
        return {"class": type(value).__name__, "fields": parts}
    raise TypeError(f"{type(value).__name__} cannot be shared")


# numpy reads a .npy header with ast.literal_eval, and CPython 3.11's parser checks its recursion depth
# in state that threads share: threads mapping at once failed with "SystemError: AST constructor
# recursion depth mismatch" (seen once in CI). Headers are parsed one at a time; the data is mapped.
_HEADERS = threading.Lock()


def _mapped(spec: dict, directory: Path) -> Any:
    if "npy" in spec:
        with _HEADERS:
            return np.load(directory / spec["npy"], mmap_mode="r")
    if "arrow" in spec:
        source = pa.memory_map(str(directory / spec["arrow"]), "r")
        return pa.ipc.open_file(source).get_batch(0).column(0)
    if "bytes" in spec:
        with open(directory / spec["bytes"], "rb") as file:
            # A zero-length file cannot be mapped.
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(file.fileno()).st_size else b""
    if "kind" in spec:
        return Kind(spec["kind"])
    if "scalar" in spec:
        return spec["scalar"]
    if "items" in spec:
        items = [_mapped(item, directory) for item in spec["items"]]
        return tuple(items) if spec["tuple"] else items
    return _CLASSES[spec["class"]](**{name: _mapped(part, directory) for name, part in spec["fields"].items()})
