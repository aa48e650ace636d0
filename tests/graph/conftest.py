"""Fixtures for graph tests: tiny stores and a runner helper with scripted roles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scripted_roles import ScriptedCritic, ScriptedDiagnostician, ScriptedProposer  # noqa: E402


@pytest.fixture
def graph_store(tmp_path):
    """A store with two tiny search environments and one tiny held-out one (6 questions x 16 branches)."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.synth import preset, synthesize_into

    store = Store(tmp_path / "graph.duckdb")
    for model, dataset, seed in (("m1", "search", 1), ("m2", "search", 2), ("m1", "heldout", 3)):
        synthesize_into(store, model, dataset, preset("synth-1.7b", n_questions=6, n_branches=16, seed=seed))
    return store


def tiny_config(**over):
    """A fast run configuration on the graph_store environments."""
    from autotts_graph.graph.configuration import RunConfig

    base = dict(search_envs=["m1/search", "m2/search"], heldout_envs=["m1/heldout"], betas=[0.2, 0.8], seeds=2,
                trace_seeds=1, rounds=1, population=1, max_attempts=3, baselines=[], sandbox="process", workers=2,
                eval_timeout_s=20)
    base.update(over)
    return RunConfig(**base)


@pytest.fixture
def run_graph(graph_store):
    """Run the graph to the end with scripted (or given) roles on an in-memory checkpointer."""
    from autotts_graph.graph.builder import build_graph
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.runner import make_serde, run_to_end, thread_config
    from autotts_graph.graph.state import DiscoveryState
    from langgraph.checkpoint.memory import InMemorySaver

    def run(config=None, proposer=None, critic=None, diagnostician=None, chat_models=None, real_roles=(), **over):
        roles = {}
        chat_models = chat_models or {}
        for name, obj, default in (("proposer", proposer, ScriptedProposer), ("critic", critic, ScriptedCritic),
                                   ("diagnostician", diagnostician, ScriptedDiagnostician)):
            if name in chat_models or name in real_roles:
                continue
            roles[name] = obj if obj is not None else default()
        cfg = config or tiny_config(**over)
        for name in chat_models:
            setattr(cfg, name, cfg.__getattribute__(name).model_copy(update={"kind": "llm"}))
        provider = DepsProvider(store_path=graph_store.path, roles=roles, chat_models=chat_models)
        graph = build_graph(provider, checkpointer=InMemorySaver(serde=make_serde()))
        out = run_to_end(graph, DiscoveryState(config=cfg), thread_config("t", cfg.population),
                         store=graph_store if cfg.run_id else None, run_id=cfg.run_id or None)
        provider.close()
        return out, roles, provider

    return run
