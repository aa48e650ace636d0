"""Fixtures for graph tests: tiny stores and a runner helper with scripted roles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scripted_roles import ScriptedCritic, ScriptedDiagnostician, ScriptedProposer  # noqa: E402
from tiny_runs import synth_store, tiny_config  # noqa: E402


@pytest.fixture
def graph_store(tmp_path):
    """A store with two tiny search environments and one tiny held-out one (6 questions x 16 branches)."""
    return synth_store(tmp_path / "graph.duckdb")


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
