"""Stores larger than one projection should hold: a projection per training run, loaded when a
question names the run and kept under a budget of rows, the least recently asked run dropped first;
questions across runs are answered from LanceDB (`across.py`) or refused with what to narrow.

Each run is served by a `QueryEngine` of its own, reading a `RunRows` view of the newest version, so
a run's projection follows versions as the whole store's does (rebuilt in the background while the
previous one answers; a version that did not touch the run's fragments only re-pins it; edits are
folded in). Below the budget the whole-store engine answers everything, as without one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trajectories.analysis import ChangeQuery, GroupQuery
from trajectories.query import QueryError, TextMatch, TrajectoryQuery

from . import across
from .engine import QueryEngine, ResultPage

RUN = "training_id"
_TAKEN_ROWS = 200_000
_KEPT_RUNS = 64  # runs of a few rows each (or none: a run asked about that is not stored) add up too
_COMPARED_RUNS = 8  # a question about this many runs at most is answered by one projection of them


class ScopeTooLarge(QueryError):
    """A question about more rows than this server holds in memory, which LanceDB cannot answer alone."""

    def __init__(self, message: str) -> None:
        super().__init__(RUN, message)


class RunRows:
    """The rows of one training run (or of a few compared) of a trajectories dataset pinned at one
    version, read as the engine reads a dataset: position i is the i-th of those rows by row address;
    a take reads rows by address."""

    def __init__(self, dataset, runs: str | tuple[str, ...]) -> None:
        self._dataset = dataset
        self.runs = (runs,) if isinstance(runs, str) else runs
        self._addresses: np.ndarray | None = None
        self._layout: dict[int, tuple] | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # schema, uri, describe_indices, scanner (full-text search)
        return getattr(self._dataset, name)

    @property
    def version(self) -> int:
        return self._dataset.version

    def _filter(self) -> pc.Expression:
        return pc.field(RUN) == self.runs[0] if len(self.runs) == 1 else pc.field(RUN).isin(list(self.runs))

    @property
    def addresses(self) -> np.ndarray:
        """The run's row addresses, ascending (the index on training_id finds them)."""
        with self._lock:
            if self._addresses is None:
                table = self._dataset.to_table(columns=[], filter=self._filter(), with_row_address=True)
                self._addresses = np.sort(table.column("_rowaddr").to_numpy())
            return self._addresses

    def later(self, dataset) -> RunRows:
        """The run's rows in `dataset`, a later version: the addresses in fragments that did not change
        are this view's, only new or changed fragments are searched (an import adds a version every
        few seconds; finding a large run's rows anew at each cost every run's next request ~0.1 s)."""
        view = RunRows(dataset, self.runs)
        if self._addresses is None:
            return view
        before, after = self._entries(), view._entries()
        kept = [fragment for fragment, entry in after.items() if before.get(fragment) == entry]
        held = self._addresses[np.isin(self._addresses >> np.uint64(32), np.array(kept, dtype=np.uint64))]
        changed = [fragment for fragment in dataset.get_fragments() if fragment.fragment_id not in set(kept)]
        found = [held]
        if changed:
            scanner = dataset.scanner(columns=[], filter=self._filter(), with_row_address=True, fragments=changed)
            found.append(scanner.to_table().column("_rowaddr").to_numpy())
        view._addresses = np.sort(np.concatenate(found))
        return view

    def _entries(self) -> dict[int, tuple]:
        from .projection import rows_layout

        if self._layout is None:
            self._layout = {entry[0]: entry for entry in rows_layout(self._dataset)}
        return self._layout

    def known_rows(self) -> int | None:
        """How many rows the run has, if they were found already (without looking)."""
        addresses = self._addresses
        return None if addresses is None else len(addresses)

    def count_rows(self, filter=None) -> int:
        if filter is not None:
            return self._dataset.count_rows(filter=self._filter() & filter)
        return len(self.addresses)

    def run_layout(self) -> tuple:
        """The layout entries (see `projection.rows_layout`) of the fragments holding the run's rows: a
        version that leaves them as they were holds the same rows of the run."""
        held = set(np.unique(self.addresses >> np.uint64(32)).tolist())
        return tuple(entry for fragment, entry in self._entries().items() if fragment in held)

    def get_fragments(self):
        # A fragment holds other runs' rows too: nothing may read one as this run's.
        raise TypeError("a run's rows are not read by fragment")

    def to_table(self, *, columns: list[str]) -> pa.Table:
        """The run's rows, by address, taken a piece at a time: a filtered scan of a store whose
        fragments hold every run decodes every row (+820 MB of transient memory for 1.25M rows of 10M,
        against +570 MB so)."""
        rows = len(self.addresses)
        pieces = [
            self.take(np.arange(start, min(start + _TAKEN_ROWS, rows)), columns=columns)
            for start in range(0, rows, _TAKEN_ROWS)
        ]
        return pa.concat_tables(pieces) if pieces else self._dataset.schema.empty_table().select(columns)

    def take(self, positions, columns: list[str] | None = None) -> pa.Table:
        at = self.addresses[np.asarray(positions, dtype=np.int64)]
        return self._dataset._take_rows(pa.array(at, pa.uint64()), columns=columns)

    def to_batches(self, *, columns: list[str], batch_size: int = 65_536):
        rows = len(self.addresses)
        for start in range(0, rows, batch_size):
            yield from self.take(np.arange(start, min(start + batch_size, rows)), columns=columns).to_batches()


def pinned_runs(query: TrajectoryQuery | None) -> tuple[str, ...] | None:
    """The training runs `query` is about (training_id=X, or a few runs compared), if it names them."""
    if query is None:
        return None
    matches = [match for match in query.matches(RUN) if isinstance(match, TextMatch)]
    if len(matches) == 1 and 0 < len(matches[0].exact) <= _COMPARED_RUNS and not matches[0].patterns:
        return tuple(sorted(set(matches[0].exact)))
    return None


def _label(runs: tuple[str, ...]) -> str:
    return ", ".join(repr(run) for run in runs)


class RunEngines:
    """The engine of a store under a memory budget (see the module's doc): the whole-store engine while
    the store holds `budget_rows` rows or fewer, else an engine per training run asked about."""

    def __init__(self, *, whole: QueryEngine, open_tables, budget_rows: int, background_rows: int) -> None:
        self.whole = whole
        self.files = whole.files
        self.budget_rows = budget_rows
        self.background_rows = background_rows
        self._open_tables = open_tables
        self._engines: OrderedDict[tuple[str, ...], QueryEngine] = OrderedDict()
        self._views: dict[tuple[str, ...], RunRows] = {}  # per runs held, their rows in the newest version
        self._rows: dict[int, int] = {}  # trajectories version -> rows
        self._lock = threading.Lock()
        self.loads = 0  # run engines made (a run asked about again after it was dropped counts again)
        self.dropped = 0

    # --- which engine answers -------------------------------------------------------------------

    def over_budget(self) -> bool:
        trajectories, _ = self._open_tables()
        rows = self._rows.get(trajectories.version)
        if rows is None:
            rows = trajectories.count_rows()
            self._rows = {trajectories.version: rows}
        over = rows > self.budget_rows
        if over and self.whole.ready():
            self.whole.release()  # the store grew past the budget: its whole projection goes
        if not over and self._engines:
            self._drop(list(self._engines))  # it shrank below: the whole store's projection answers
        return over

    def _engine(self, query: TrajectoryQuery | None, *, asked: str = "this question") -> QueryEngine:
        if not self.over_budget():
            return self.whole
        runs = pinned_runs(query)
        if runs is None:
            raise ScopeTooLarge(
                f"{asked} across training runs reads more trajectories than this server holds in memory "
                f"(TRAJSITE_PROJECTION_BUDGET_ROWS={self.budget_rows:,}): choose one training run"
            )
        return self.run_engine(runs)

    def run_engine(self, runs: str | tuple[str, ...]) -> QueryEngine:
        """The engine of one run (or of a few compared), made if needed; those asked about least
        recently are dropped until the rows of those kept (loaded or loading) are at most the budget."""
        run = (runs,) if isinstance(runs, str) else runs
        rows = len(self._view(run, keep=True).addresses)
        if rows > self.budget_rows:
            self._drop([run])  # held runs that grew past the budget go too
            raise ScopeTooLarge(
                f"training {'run' if len(run) == 1 else 'runs'} {_label(run)} "
                f"{'holds' if len(run) == 1 else 'hold'} {rows:,} trajectories, more than this server holds in memory "
                f"(TRAJSITE_PROJECTION_BUDGET_ROWS={self.budget_rows:,}): its lists and counts open, "
                "filtered by exact values and ranges, newest import first; sorting, search and charts do not"
            )
        with self._lock:
            engine = self._engines.pop(run, None)
            if engine is None:
                engine = QueryEngine(
                    open_tables=lambda: self._run_tables(run), background_rows=self.background_rows, files=None
                )
                self.loads += 1
            self._engines[run] = engine
            # Counted by the rows each run holds in its newest view (a run still loading counts too).
            held = {key: self._held_rows(key) for key in self._engines}
            dropped = []
            while (sum(held.values()) > self.budget_rows or len(held) > _KEPT_RUNS) and len(held) > 1:
                oldest = next(iter(held))
                held.pop(oldest)
                dropped.append(oldest)
        self._drop(dropped)
        return engine

    def _held_rows(self, run: tuple[str, ...]) -> int:
        view = self._views.get(run)
        known = view.known_rows() if view is not None else None
        return known if known is not None else self._engines[run].rows_held()

    def _drop(self, runs: list[tuple[str, ...]]) -> None:
        with self._lock:
            engines = [self._engines.pop(run, None) for run in runs]
            for run in runs:
                self._views.pop(run, None)
        for engine in engines:
            if engine is not None:
                engine.release()  # a request answering from it meanwhile keeps its projection until done
                self.dropped += 1

    def held_runs(self) -> dict[str, int]:
        """The runs whose projections this process holds, with their rows (least recently asked first)."""
        return {", ".join(run): engine.rows_held() for run, engine in list(self._engines.items())}

    def _run_tables(self, run: tuple[str, ...]):
        trajectories, annotations = self._open_tables()
        return self._view(run, trajectories), annotations

    def _view(self, run: tuple[str, ...], trajectories=None, *, keep: bool = False) -> RunRows:
        """The run's rows in the newest version; kept for the next request if the run is held (or
        `keep`: about to be), not for a request still answering from a run dropped meanwhile."""
        if trajectories is None:
            trajectories, _ = self._open_tables()
        view = self._views.get(run)
        if view is not None and view.version == trajectories.version:
            return view
        # Found outside the lock (a scan of new fragments): requests about other runs do not wait for it.
        view = RunRows(trajectories, run) if view is None else view.later(trajectories)
        with self._lock:
            kept = self._views.get(run)
            if (keep or run in self._engines) and (kept is None or kept.version < view.version):
                self._views[run] = view
        return view

    def _engines_now(self) -> list[QueryEngine]:
        return [self.whole, *list(self._engines.values())]

    # --- what the repository asks -----------------------------------------------------------------

    def ready(self) -> bool:
        return not self.over_budget() and self.whole.ready()

    def warmed(self) -> bool:
        return self.over_budget() or self.whole.warmed()

    def current(self):
        return self.whole.current()

    def answering_versions(self, annotation_fields: frozenset[str] | None = None) -> tuple[int, int]:
        if not self.over_budget():
            return self.whole.answering_versions(annotation_fields)
        trajectories, annotations = self._open_tables()
        return trajectories.version, annotations.version

    def annotations_of(self, trajectory_ids: list[str]) -> list[dict[str, Any]] | None:
        """As the whole store's engine does, from the held run whose current projection holds them all
        (a cached page of one run); None otherwise (the page is read anew)."""
        if not self.over_budget():
            return self.whole.annotations_of(trajectory_ids)
        for engine in list(self._engines.values()):
            found = engine.annotations_held(trajectory_ids)
            if found is not None:
                return found
        return None

    def holds_unchanged(self, projection) -> bool:
        return self.whole.holds_unchanged(projection)

    def held_in(self, dataset, trajectory_ids: list[str]) -> set[str]:
        return set() if self.over_budget() else self.whole.held_in(dataset, trajectory_ids)

    def annotations_written(self, rows: list[dict[str, Any]], *, before: int, after: int) -> None:
        for engine in self._engines_now():
            engine.annotations_written(rows, before=before, after=after)

    def peek(self):
        return None if self.over_budget() else self.whole.peek()

    def get(self, trajectory_id: str, projection) -> dict[str, Any] | None:
        return self.whole.get(trajectory_id, projection)

    @property
    def builds(self) -> int:
        return sum(engine.builds for engine in self._engines_now())

    @property
    def appends(self) -> int:
        return self.whole.appends

    @property
    def built_elsewhere(self) -> int:
        return self.whole.built_elsewhere

    # --- answers ----------------------------------------------------------------------------------

    def page(self, query: TrajectoryQuery) -> ResultPage:
        if self._from_lancedb(query):
            return across.page(*self._open_tables(), query=query, refuse=self._refusal("this list"))
        return self._engine(query).page(query)

    def count(self, query: TrajectoryQuery) -> int:
        if self._from_lancedb(query):
            return across.count(*self._open_tables(), query=query, refuse=self._refusal("this count"))
        return self._engine(query).count(query)

    def facets(self, query: TrajectoryQuery | None = None, names: tuple[str, ...] | None = None):
        if self._from_lancedb(query):
            return across.facets(*self._open_tables(), query=query, names=names or across.FACET_FIELDS)
        engine = self._engine(query)
        return engine.facets(query) if names is None else engine.facets(query, names)

    def records(self, trajectory_ids: list[str], batch: int = 500):
        if self.over_budget():
            return across.records(*self._open_tables(), trajectory_ids=trajectory_ids, batch=batch)
        return self.whole.records(trajectory_ids, batch)

    def neighbours(self, query: TrajectoryQuery, trajectory_id: str):
        if self.over_budget() and pinned_runs(query) is None:
            return None, None, None, 0  # a detail page opened from a list across runs: no previous/next
        return self._engine(query).neighbours(query, trajectory_id)

    def matching_ids(self, query: TrajectoryQuery) -> list[str]:
        return self._engine(query, asked="selecting every match").matching_ids(query)

    def ordered_records(self, query: TrajectoryQuery, *, progress=None, batch: int = 2_000):
        return self._engine(query, asked="an export").ordered_records(query, progress=progress, batch=batch)

    def group_pairs(self, query: TrajectoryQuery, *, min_gap: float, progress=None, batch: int = 250):
        return self._engine(query, asked="an export of pairs").group_pairs(
            query, min_gap=min_gap, progress=progress, batch=batch
        )

    def similar(self, trajectory_id: str, query: TrajectoryQuery, *, k: int):
        return self._engine(query, asked="finding similar trajectories").similar(trajectory_id, query, k=k)

    def clusters(self, query: TrajectoryQuery, *, k: int) -> dict[str, Any]:
        return self._engine(query, asked="clustering").clusters(query, k=k)

    def stats(self, query: TrajectoryQuery, *, by: str, buckets: int | None = None):
        return self._engine(query, asked="a chart").stats(query, by=by, buckets=buckets)

    def histograms(self, query: TrajectoryQuery, *, names: tuple[str, ...]):
        return self._engine(query, asked="a chart").histograms(query, names=names)

    def mix(self, query: TrajectoryQuery, *, by: str, of: str, buckets: int | None = None):
        return self._engine(query, asked="a chart").mix(query, by=by, of=of, buckets=buckets)

    def pivot(self, query: TrajectoryQuery, *, rows_by: str, columns_by: str, buckets: int) -> dict[str, Any]:
        engine = self._engine(query, asked="a pivot")
        return engine.pivot(query, rows_by=rows_by, columns_by=columns_by, buckets=buckets)

    def curves(self, query: TrajectoryQuery, *, split: str, by: str, buckets: int | None = None):
        return self._engine(query, asked="a chart").curves(query, split=split, by=by, buckets=buckets)

    def question_changes(self, query: ChangeQuery):
        # Two runs compared (a.training_id=X&b.training_id=Y): one projection of both answers.
        sides = [pinned_runs(side) for side in (query.a, query.b)]
        rows = query.rows
        if pinned_runs(rows) is None and None not in sides:
            both = tuple(sorted({run for side in sides for run in side}))
            rows = TrajectoryQuery(filters=(*rows.filters, (RUN, TextMatch(exact=both))))
        return self._engine(rows, asked="comparing questions").question_changes(query)

    def groups(self, query: GroupQuery):
        return self._engine(query.rows, asked="listing groups").groups(query)

    def group(self, *, training_id: str | None, iteration_id: int | None, data_id: str, k: int = 1):
        query = TrajectoryQuery.where(training_id=training_id) if training_id is not None else None
        return self._engine(query, asked="a group").group(
            training_id=training_id, iteration_id=iteration_id, data_id=data_id, k=k
        )

    def _from_lancedb(self, query: TrajectoryQuery | None) -> bool:
        """Whether a list, count or facets of `query` is answered by LanceDB alone: past the budget, a
        question across runs, or about one run larger than the budget (its plain lists still open)."""
        if not self.over_budget():
            return False
        runs = pinned_runs(query)
        if runs is None:
            return True
        if len(self._view(runs, keep=True).addresses) <= self.budget_rows:
            return False  # the view is kept: the run's engine starts from the rows found here
        self._drop([runs])
        return True

    def _refusal(self, asked: str):
        def refuse(why: str) -> ScopeTooLarge:
            return ScopeTooLarge(
                f"{asked} {why}: it spans more trajectories than this server holds in memory "
                f"(TRAJSITE_PROJECTION_BUDGET_ROWS={self.budget_rows:,}); choose one training run that fits"
            )

        return refuse
