"""Tiny synthetic stores and run configurations shared by the graph, end-to-end and local-LLM tests."""

from __future__ import annotations

from pathlib import Path


def synth_store(path: Path):
    """A store with two tiny search environments (m1/search, m2/search) and a tiny held-out one (m1/heldout),
    6 questions x 16 branches each."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.synth import preset, synthesize_into

    store = Store(path)
    for model, dataset, seed in (("m1", "search", 1), ("m2", "search", 2), ("m1", "heldout", 3)):
        synthesize_into(store, model, dataset, preset("synth-1.7b", n_questions=6, n_branches=16, seed=seed))
    return store


def tiny_config(**over):
    """A fast run configuration on ``synth_store``'s environments."""
    from autotts_graph.graph.configuration import RunConfig

    base = dict(search_envs=["m1/search", "m2/search"], heldout_envs=["m1/heldout"], betas=[0.2, 0.8], seeds=2,
                trace_seeds=1, rounds=1, population=1, max_attempts=3, baselines=[], sandbox="process", workers=2,
                eval_timeout_s=20)
    base.update(over)
    return RunConfig(**base)
