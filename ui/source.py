"""Where the run browser reads from: the store, checked once at start, read through a snapshot.

The app never opens the store for writing. Reads go to a snapshot (``tools/query_store.Snapshot``, the tool
server's mechanism): a copy rebuilt when the store file changed, at most once a second, so pages keep coming
while a run writes and the run's writer is held up only for the copy. Views built from one snapshot are
cached until the next.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
from autotts_graph.graph.run_view import CandidateView, RunView, build_candidate_view, build_run_view
from autotts_graph.store import history
from autotts_graph.store.db import SCHEMA_VERSION, Store, StoreError
from autotts_graph.store.rows import RunRow, RunTotals, SpendTotals
from autotts_graph.tools.context import ToolContext
from autotts_graph.tools.query_store import Snapshot

T = TypeVar("T")
CACHED_VIEWS = 32


class StoreUnusable(StoreError):
    """The store cannot be browsed (missing, not a DuckDB file, not ours, another schema): one line says why."""


def check_store(path: Path) -> None:
    """StoreUnusable unless ``path`` is an autotts-graph store of this version, opened read-only to find out."""
    if not path.is_file():
        raise StoreUnusable(f"no store at {path}: give --store FILE (a store written by `autotts-graph run` or "
                            "`autotts-graph store fetch`)")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        if "lock" in first.lower():
            return  # a run holds it right now: the snapshot waits for its turn, as every reader does
        raise StoreUnusable(f"{path} is not an autotts-graph store (DuckDB cannot open it: {first})") from None
    try:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except duckdb.Error:
            row = None
    finally:
        con.close()
    if row is None:
        raise StoreUnusable(f"{path} is a DuckDB file but not an autotts-graph store (it has no schema version)")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise StoreUnusable(f"{path} was written by a newer autotts-graph (schema {version}, this one reads "
                            f"{SCHEMA_VERSION}): upgrade autotts-graph")
    if version < SCHEMA_VERSION:
        raise StoreUnusable(f"{path} was written by an older autotts-graph (schema {version}); the browser does not "
                            f"write, so upgrade it once with `autotts-graph store list --store {path}`")


class RunSummary(RunRow):
    """A run with its counts and spend, for the runs page."""

    totals: RunTotals
    spend: SpendTotals


class BrowserSource:
    """The store as the browser reads it: snapshots, and the views built from the current one."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        check_store(self.path)
        # expose_heldout: the snapshot is a full copy; the run view applies the held-out rule itself (figures
        # only after selection), which a filtered copy could not (it drops the runs' reports).
        self._ctx = ToolContext(store=Store(self.path), expose_heldout=True)
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple, object] = OrderedDict()

    def store(self) -> Store:
        """The current snapshot as a store (rebuilt first if the store changed)."""
        return Store(self._snapshot.current(self._ctx))

    def _cached(self, key: tuple, build: Callable[[Store], T]) -> T:
        store = self.store()
        full = (str(store.path), *key)
        with self._lock:
            if full in self._views:
                self._views.move_to_end(full)
                return self._views[full]  # type: ignore[return-value]
        value = build(store)
        with self._lock:
            self._views[full] = value
            while len(self._views) > CACHED_VIEWS:
                self._views.popitem(last=False)
        return value

    def runs(self) -> list[RunSummary]:
        """Every run, newest first, with its counts and spend."""
        def build(store: Store) -> list[RunSummary]:
            totals, spend = history.run_totals(store), history.spend_by_run(store)
            return [RunSummary(**r.model_dump(), totals=totals.get(r.run_id, RunTotals(run_id=r.run_id)),
                               spend=spend.get(r.run_id, SpendTotals())) for r in history.list_runs(store)]
        return self._cached(("runs",), build)

    def run(self, run_id: str) -> RunView:
        """A run's view (StoreError for an unknown run)."""
        return self._cached(("run", run_id), lambda store: build_run_view(store, run_id))

    def candidate(self, run_id: str, candidate_id: str) -> CandidateView:
        """One candidate in full (StoreError for an unknown run or candidate)."""
        view = self.run(run_id)
        return self._cached(("candidate", run_id, candidate_id),
                            lambda store: build_candidate_view(store, view, candidate_id))

    def stamp(self) -> str:
        """Changes when the store was written since (the snapshot that serves the pages)."""
        return self.store().path.name

    def close(self) -> None:
        self._snapshot.close()
