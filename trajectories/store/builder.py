"""A new table version's shared projection, built by a process of its own.

A build on a web worker's thread shares that worker's interpreter lock and heap with its requests (at
the lowest CPU priority, the kernel may run everything else first while it holds the lock). So when
projections are shared between processes (`mapped.py`), the worker that finds a new version runs
`manage.py build_projection` at the lowest priority and waits for it on its background thread (the
previous projection keeps answering meanwhile); the child writes the version's columns, its sort orders
by trajectory fields and the analytics' indexes, and the workers map them. Its temporary memory is
returned when it exits. Annotations are not the child's business: each worker follows them in memory,
as before. Measured under load with an import (README, "Second session"): the workers' memory moved
less; the latency did not change measurably.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import analytics, mapped
from .mapped import ProjectionFiles
from .projection import ANNOTATION_FIELDS, AnnotationColumns, Projection, rows_layout

log = logging.getLogger(__name__)


def write_version(*, dataset, previous, files: ProjectionFiles) -> Path | None:
    """Write the shared projection of `dataset` (a LanceDataset pinned at a version): `previous` (the
    dataset at the version the web workers serve, or None) followed by the fragments appended since
    when its files are there, else every row read. The directory, or None when it could not be written."""
    started = time.perf_counter()
    before = _mapped_rows(previous, files) if previous is not None else None
    projection = before.appended(dataset) if before is not None else None
    if projection is None:
        projection = Projection.load(dataset, annotation_dataset=None)
    projection = projection.shared(files)
    if projection.files is None:
        return None
    # Every order by a trajectory field, merged into the previous version's where it has them (orders by
    # annotations are each worker's own).
    projection.warm(orders=[key for key in Projection.every_order() if key[0] not in ANNOTATION_FIELDS])
    analytics.warm(projection)
    log.info(
        "shared projection of version %s (%s rows) written in %.2f s",
        dataset.version,
        projection.rows,
        time.perf_counter() - started,
    )
    return projection.files


def _mapped_rows(dataset, files: ProjectionFiles) -> Projection | None:
    """The projection of `dataset` mapped from its files, with the sort orders shared there (to merge
    new rows into) and blank annotations; None when its files are not there."""
    layout = rows_layout(dataset)
    found = files.mapped(uri=dataset.uri, layout=layout)
    if found is None:
        return None
    ids, columns, directory = found
    projection = Projection(version=dataset.version, dataset=dataset, rows=len(ids.array), ids=ids,
                            columns=columns, annotations=AnnotationColumns.blank(ids.array), layout=layout,
                            files=directory)  # fmt: skip
    for name, descending in Projection.every_order():
        if name not in ANNOTATION_FIELDS and mapped.has_derived(directory, ("order", name, descending)):
            projection.order(name, descending)  # mapped, not sorted
    return projection
