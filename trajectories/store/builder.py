"""A new table version's shared projection, built by a process of its own.

A build on a web worker's thread shares that worker's interpreter lock with its requests. At the
lowest CPU priority it holds the lock while the kernel runs everything else first, and every request
of the worker waits for it (priority inversion); at normal priority it takes the worker's turns from
the requests. Measured at 1M with a 100k import under load: builds of 70-95 s, and requests queueing
behind them. So when projections are shared between processes (`mapped.py`), the worker that finds a
new version runs `manage.py build_projection` at the lowest priority and waits for it (the previous
projection keeps answering meanwhile); the child writes the version's columns, every sort order and the
analytics' indexes, and the workers map them. Annotations are not the child's business: each worker
follows them in memory, as before.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import analytics, mapped
from .mapped import ProjectionFiles
from .projection import AnnotationColumns, Projection, rows_layout

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
    projection.warm()  # every sort order, merged into the previous version's where it has them
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
        if mapped.has_derived(directory, ("order", name, descending)):
            projection.order(name, descending)  # mapped, not sorted
    return projection
