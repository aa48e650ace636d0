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
from typing import Any, TypeVar

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
    """The store as the browser reads it: snapshots, and the views built from the current one.

    A background thread follows the store: when it changed, a new snapshot is built and the views asked for
    lately are built again from it, and only then does the new snapshot serve the pages. A page therefore
    never waits for a copy or for a view of a large run, and what it shows lags the store by a second or two.
    """

    REFRESH_S = 0.5

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        check_store(self.path)
        # expose_heldout and expose_gold: the snapshot is a full copy (the user's own store, on loopback by
        # default); the run view applies the held-out rule itself (figures only after selection), which a
        # filtered copy could not (it drops the runs' reports), and the environments' branch accuracy needs the
        # gold answers. Pages show correctness, never a gold answer.
        self._ctx = ToolContext(store=Store(self.path), expose_heldout=True, expose_gold=True)
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        self._building: dict[tuple, threading.Lock] = {}
        self._views: OrderedDict[tuple, object] = OrderedDict()
        self._current = self._snapshot.current(self._ctx)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="autotts-ui-snapshot", daemon=True)
        self._thread.start()

    def store(self) -> Store:
        """The snapshot that serves the pages now."""
        return Store(self._current)

    def _follow(self) -> None:
        self._warm(self._current, [("runs",), *[("run", r.run_id) for r in self.runs()[:1]]])
        while not self._stop.wait(self.REFRESH_S):
            try:
                fresh = self._snapshot.current(self._ctx)
                if fresh != self._current:
                    with self._lock:
                        recent = [key[1:] for key in reversed(self._views) if key[0] == str(self._current)]
                    self._warm(fresh, recent[:8])
                    self._current = fresh
            except Exception:  # noqa: BLE001 - a failed refresh keeps the last snapshot serving; retried next turn
                continue

    def _warm(self, snapshot: Path, keys: list[tuple]) -> None:
        for key in keys:
            if self._stop.is_set():
                return
            try:
                self._cached(key, snapshot)
            except StoreError:
                pass  # a run or candidate that no longer resolves: its page says so when asked

    def _build(self, key: tuple, snapshot: Path) -> object:
        store = Store(snapshot)
        if key[0] == "runs":
            return _run_summaries(store)
        if key[0] == "run":
            return build_run_view(store, key[1])
        if key[0] == "candidate":
            return build_candidate_view(store, self._cached(("run", key[1]), snapshot), key[2])
        if key[0] == "compare":
            return key[1](store)
        raise KeyError(key)

    def _cached(self, key: tuple, snapshot: Path | None = None) -> Any:
        snapshot = snapshot or self._current
        full = (str(snapshot), *key)
        with self._lock:
            if full in self._views:
                self._views.move_to_end(full)
                return self._views[full]
            building = self._building.setdefault(full, threading.Lock())
        with building:  # one build per view: a second request for it waits for the first
            with self._lock:
                if full in self._views:
                    return self._views[full]
            value = self._build(key, snapshot)
            with self._lock:
                self._views[full] = value
                self._building.pop(full, None)
                while len(self._views) > CACHED_VIEWS:
                    self._views.popitem(last=False)
        return value

    def runs(self) -> list[RunSummary]:
        """Every run, newest first, with its counts and spend."""
        return self._cached(("runs",))

    def run(self, run_id: str) -> RunView:
        """A run's view (StoreError for an unknown run)."""
        return self._cached(("run", run_id))

    def candidate(self, run_id: str, candidate_id: str) -> CandidateView:
        """One candidate in full (StoreError for an unknown run or candidate)."""
        return self._cached(("candidate", run_id, candidate_id))

    def computed(self, build: Callable[[Store], T], *key: Any) -> T:
        """Something a page computes from the current snapshot (``build(store)``), cached like the views under
        ``key``, which names what ``build`` depends on."""
        return self._cached(("compare", _Keyed(build, key)))

    def stamp(self) -> str:
        """Changes when the store was written since (the snapshot that serves the pages)."""
        return self._current.name

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._snapshot.close()


class _Keyed:
    """A build function that caches by its key, not by its identity."""

    def __init__(self, build: Callable[[Store], Any], key: tuple) -> None:
        self.build, self.key = build, key

    def __call__(self, store: Store) -> Any:
        return self.build(store)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def _run_summaries(store: Store) -> list[RunSummary]:
    with store.connect(read_only=True):  # one connection for the three reads
        totals, spend, runs = history.run_totals(store), history.spend_by_run(store), history.list_runs(store)
    return [RunSummary(**r.model_dump(), totals=totals.get(r.run_id, RunTotals(run_id=r.run_id)),
                       spend=spend.get(r.run_id, SpendTotals())) for r in runs]
