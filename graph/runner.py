"""Run and resume discovery runs on a per-run SQLite checkpointer, with a live view and human review.

The checkpoint of run ``RUN`` lives next to the store in ``<store>.runs/RUN.sqlite``; its thread id is the
run id. Every node's result is saved before the next node starts (``durability="sync"``), so a run killed
at any point resumes at the node it was in, and finished nodes are never redone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.db import Store, StoreError
from langgraph.types import Command

from .builder import build_graph
from .deps import DepsProvider
from .nodes.prepare import resolve_config
from .state import DiscoveryState, RunConfig

# For a run that stopped cleanly in node N: the node whose routing leads back to N.
RETRY_FROM = {"propose": "record", "check": "propose", "critique": "check", "review": "critique",
              "evaluate": "critique", "diagnose": "evaluate", "record": "diagnose", "heldout": "select"}

Reviewer = Callable[[dict[str, Any]], dict[str, Any]]
Observer = Callable[[DiscoveryState], None]


def checkpoint_path(store: Store, run_id: str) -> Path:
    """Where the run's checkpoints are kept."""
    return store.path.with_name(store.path.name + ".runs") / f"{run_id}.sqlite"


def make_serde():
    """The checkpoint serializer, with the state's pydantic types allowed to be restored."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from . import state as state_mod
    from .agents import roles

    allowed = [(state_mod.__name__, n) for n in ("RunConfig", "RoleSettings", "Candidate", "CheckResult",
                                                 "ReviewDecision", "EvalResult", "Best", "NodeSpend",
                                                 "HeldoutResult", "DiscoveryState")]
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


def thread_config(run_id: str) -> dict[str, Any]:
    """The LangGraph config of a run: its thread, and names that group its LangSmith traces (sent only when
    the user enabled LangSmith tracing through the usual LANGSMITH_* variables)."""
    return {"configurable": {"thread_id": run_id}, "run_name": f"autotts-graph {run_id}",
            "tags": ["autotts-graph", run_id], "metadata": {"autotts_run_id": run_id}}


def prepare_config(config: RunConfig, store: Store) -> RunConfig:
    """Check the configuration before anything runs (StoreError with a clear message), assign a run id."""
    return resolve_config(config, store)


def _drive(graph: Any, first_input: Any, thread: dict, reviewer: Reviewer | None,
           observer: Observer | None) -> DiscoveryState:
    pending = first_input
    while True:
        for values in graph.stream(pending, thread, stream_mode="values", durability="sync"):
            if observer is not None and isinstance(values, dict) and "config" in values:
                observer(DiscoveryState.model_validate(values))
        snapshot = graph.get_state(thread)
        interrupts = [i for task in snapshot.tasks for i in task.interrupts]
        if not interrupts:
            return DiscoveryState.model_validate(snapshot.values)
        if reviewer is None:
            raise StoreError("the run is waiting for a review but no reviewer is attached")
        pending = Command(resume=reviewer(interrupts[0].value))


def start_run(config: RunConfig, provider: DepsProvider, *, reviewer: Reviewer | None = None,
              observer: Observer | None = None) -> DiscoveryState:
    """Run a new discovery run to its end (config must have passed ``prepare_config``)."""
    store = provider.store()
    history.record_run(store, config.run_id, config=config.model_dump(mode="json"), search_envs=config.search_envs,
                       heldout_envs=config.heldout_envs, status="running")
    with _saver(checkpoint_path(store, config.run_id)) as saver:
        graph = build_graph(provider, checkpointer=saver)
        return _drive(graph, DiscoveryState(config=config), thread_config(config.run_id), reviewer, observer)


def resume_run(run_id: str, provider: DepsProvider, *, reviewer: Reviewer | None = None,
               observer: Observer | None = None, config_update: dict[str, Any] | None = None) -> DiscoveryState:
    """Continue a run from its last checkpoint.

    A finished run is returned as it is; a run that stopped on an agent or store error is retried from the
    node that stopped (``config_update`` may change, e.g., a role's endpoint first).
    """
    store = provider.store()
    history.get_run(store, run_id)  # StoreError for an unknown run
    path = checkpoint_path(store, run_id)
    if not path.exists():
        raise StoreError(f"run {run_id} has no checkpoint at {path}; it cannot be resumed")
    with _saver(path) as saver:
        graph = build_graph(provider, checkpointer=saver)
        thread = thread_config(run_id)
        snapshot = graph.get_state(thread)
        if not snapshot.values:
            raise StoreError(f"run {run_id} has an empty checkpoint; start it again")
        state = DiscoveryState.model_validate(snapshot.values)
        if config_update:
            merged = state.config.model_copy(update=config_update)
            graph.update_state(thread, {"config": merged})
            state = state.model_copy(update={"config": merged})
            history.record_run(store, run_id, config=merged.model_dump(mode="json"), search_envs=merged.search_envs,
                               heldout_envs=merged.heldout_envs, status=state.status)
        if not snapshot.next:
            if state.status != "failed":
                return state
            # A clean stop (unreachable endpoint, rejected key, ...) is retried from the node that stopped.
            before = RETRY_FROM.get(state.node)
            if before is None:
                raise StoreError(f"run {run_id} stopped in {state.node!r} ({state.error}); start a new run")
            graph.update_state(thread, {"status": "running", "error": None}, as_node=before)
        history.update_run(store, run_id, status="running")
        interrupts = [i for task in snapshot.tasks for i in task.interrupts]
        first: Any = None
        if interrupts:
            if reviewer is None:
                raise StoreError("the run is waiting for a review; resume it with --review")
            first = Command(resume=reviewer(interrupts[0].value))
        return _drive(graph, first, thread, reviewer, observer)


def load_state(run_id: str, store: Store) -> DiscoveryState | None:
    """The last checkpointed state of a run (None without a checkpoint)."""
    path = checkpoint_path(store, run_id)
    if not path.exists():
        return None
    with _saver(path) as saver:
        graph = build_graph(DepsProvider(store_path=store.path), checkpointer=saver)
        snapshot = graph.get_state({"configurable": {"thread_id": run_id}})
        return DiscoveryState.model_validate(snapshot.values) if snapshot.values else None
