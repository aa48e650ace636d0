"""Run and resume discovery runs on a per-run SQLite checkpointer, with a live view and human review.

The checkpoint of run ``RUN`` lives next to the store in ``<store>.runs/RUN.sqlite``; its thread id is the
run id. Every node's result is saved before the next node starts (``durability="sync"``), in the run and in
each lane's subgraph, so a run killed at any point resumes every unfinished lane at the node it was in;
finished nodes and finished lanes are never redone.

An agent or store error raises out of the graph with its lane unfinished: the run is recorded as failed and
``resume_run`` continues it, running the node that stopped again. A configuration change on resume (a
budget, a role's endpoint) is written to the run's stored configuration, which every node reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.ledger import RunLedger, RunStatus
from langgraph.types import Command

from .builder import build_graph
from .configuration import RunConfig
from .deps import DepsProvider
from .state import DiscoveryState

Reviewer = Callable[[dict[str, Any]], dict[str, Any]]
Observer = Callable[[Any], None]  # receives DiscoveryState (the run) and LaneState (a lane's step) values


def checkpoint_path(store: Store, run_id: str) -> Path:
    """Where the run's checkpoints are kept."""
    return store.path.with_name(store.path.name + ".runs") / f"{run_id}.sqlite"


def make_serde():
    """The checkpoint serializer, with the state's pydantic types allowed to be restored."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from . import configuration
    from . import state as state_mod
    from .agents import roles

    # RunConfig and RoleSettings are allowed under their old address as well (graph.state): checkpoints written
    # before they moved to configuration.py name them so.
    allowed = [(state_mod.__name__, n) for n in ("RunConfig", "RoleSettings", "Candidate", "CheckResult",
                                                 "ReviewDecision", "EvalResult", "Best", "NodeSpend",
                                                 "HeldoutResult", "DiscoveryState", "LaneState", "LaneResult",
                                                 "GenerationSummary")]
    allowed += [(configuration.__name__, n) for n in ("RunConfig", "RoleSettings")]
    allowed += [(roles.__name__, n) for n in ("BaselinePoint", "CriticVerdict", "CurvePoint", "Diagnosis",
                                              "FailureMode")]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


@contextmanager
def _saver(path: Path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(con, serde=make_serde())
    finally:
        con.close()


def thread_config(run_id: str, population: int = 1) -> dict[str, Any]:
    """The LangGraph config of a run: its thread, every lane of a generation in flight at once, and names that
    group its LangSmith traces (sent only when the user enabled LangSmith tracing through the usual
    LANGSMITH_* variables)."""
    return {"configurable": {"thread_id": run_id}, "run_name": f"autotts-graph {run_id}",
            "tags": ["autotts-graph", run_id], "metadata": {"autotts_run_id": run_id},
            "max_concurrency": max(4, population + 2), "recursion_limit": 100_000}


def pending_interrupts(snapshot: Any) -> list[Any]:
    """The review requests waiting in a snapshot (one per paused lane)."""
    return [i for task in snapshot.tasks for i in task.interrupts]


def _answers(interrupts: list[Any], reviewer: Reviewer) -> Command:
    """One reviewer answer per pending interrupt, keyed by interrupt id (lanes pause independently)."""
    return Command(resume={i.id: reviewer(i.value) for i in interrupts})


def _state_of(values: Any) -> Any:
    from .state import LaneState

    if not isinstance(values, dict) or "config" not in values:
        return None
    if "slot" in values or "generation" in values:
        return LaneState.model_validate(values)
    return DiscoveryState.model_validate(values)


def run_to_end(graph: Any, first_input: Any, thread: dict, *, reviewer: Reviewer | None = None,
               observer: Observer | None = None, store: Store | None = None,
               run_id: str | None = None) -> DiscoveryState:
    """Stream the graph until it ends or waits for a review nobody can give; an agent or store error becomes
    a failed state (recorded on the run when ``store`` is given), resumable from its checkpoint."""
    from .agents.client import AgentError

    pending = first_input
    while True:
        try:
            for _ns, values in graph.stream(pending, thread, stream_mode="values", durability="sync",
                                           subgraphs=True):
                if observer is not None:
                    st = _state_of(values)
                    if st is not None:
                        observer(st)
        except (AgentError, StoreError) as exc:
            snapshot = graph.get_state(thread)
            state = DiscoveryState.model_validate(snapshot.values or {})
            if store is not None and run_id is not None:
                RunLedger(store, run_id).fail(str(exc))
            return state.model_copy(update={"status": RunStatus.FAILED.value, "error": str(exc)})
        snapshot = graph.get_state(thread)
        interrupts = pending_interrupts(snapshot)
        if not interrupts:
            return DiscoveryState.model_validate(snapshot.values)
        if reviewer is None:
            raise StoreError("the run is waiting for a review but no reviewer is attached")
        pending = _answers(interrupts, reviewer)


def start_run(config: RunConfig, provider: DepsProvider, *, reviewer: Reviewer | None = None,
              observer: Observer | None = None) -> DiscoveryState:
    """Run a new discovery run to its end; ``config`` comes from ``resolve_config`` (``nodes/prepare.py``), and
    the run is recorded here, once (the prepare node finds it recorded and resolves nothing again)."""
    if not config.run_id:
        raise StoreError("the run configuration is not resolved yet: pass it through resolve_config first")
    store = provider.store()
    RunLedger(store, config.run_id).open(config=config.model_dump(mode="json"), search_envs=config.search_envs,
                                         heldout_envs=config.heldout_envs)
    with _saver(checkpoint_path(store, config.run_id)) as saver:
        graph = build_graph(provider, checkpointer=saver)
        thread = thread_config(config.run_id, config.lanes_per_generation())
        return run_to_end(graph, DiscoveryState(config=config), thread,
                          reviewer=reviewer, observer=observer, store=store, run_id=config.run_id)


def resume_run(run_id: str, provider: DepsProvider, *, reviewer: Reviewer | None = None,
               observer: Observer | None = None, config_update: dict[str, Any] | None = None) -> DiscoveryState:
    """Continue a run from its last checkpoint.

    A finished run is returned as it is; a run that stopped (killed, or an agent or store error) continues
    with every unfinished lane at the node it was in (``config_update`` may change, e.g., a role's endpoint
    or a budget first: it is stored with the run, where every node reads it).
    """
    store = provider.store()
    run = history.get_run(store, run_id)  # StoreError for an unknown run
    path = checkpoint_path(store, run_id)
    if not path.exists():
        raise StoreError(f"run {run_id} has no checkpoint at {path}; it cannot be resumed")
    with _saver(path) as saver:
        graph = build_graph(provider, checkpointer=saver)
        snapshot = graph.get_state(thread_config(run_id))
        if not snapshot.values:
            raise StoreError(f"run {run_id} has an empty checkpoint; start it again")
        state = DiscoveryState.model_validate(snapshot.values)
        live = RunConfig.model_validate(run.config) if run.config else state.config
        if config_update:
            live = live.model_copy(update=config_update)
            RunLedger(store, run_id).reconfigure(config=live.model_dump(mode="json"), search_envs=live.search_envs,
                                                 heldout_envs=live.heldout_envs)
            provider.forget(run_id)
        thread = thread_config(run_id, live.lanes_per_generation())
        if not snapshot.next:
            if state.status != RunStatus.FAILED:
                return state
            raise StoreError(f"run {run_id} stopped in {state.node!r} ({state.error}); start a new run")
        RunLedger(store, run_id).resume()
        interrupts = pending_interrupts(snapshot)
        first: Any = None
        if interrupts:
            if reviewer is None:
                raise StoreError("the run is waiting for a review; resume it with --review")
            first = _answers(interrupts, reviewer)
        return run_to_end(graph, first, thread, reviewer=reviewer, observer=observer, store=store, run_id=run_id)


def load_state(run_id: str, store: Store) -> DiscoveryState | None:
    """The last checkpointed state of a run (None without a checkpoint)."""
    path = checkpoint_path(store, run_id)
    if not path.exists():
        return None
    with _saver(path) as saver:
        graph = build_graph(DepsProvider(store_path=store.path), checkpointer=saver)
        snapshot = graph.get_state({"configurable": {"thread_id": run_id}})
        return DiscoveryState.model_validate(snapshot.values) if snapshot.values else None

