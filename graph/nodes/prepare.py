"""``prepare``: resolve and check the run configuration, record the run, run the baselines on search envs."""

from __future__ import annotations

import time
from typing import Any

from autotts_graph.sandbox.select import SandboxUnavailable
from autotts_graph.store import history
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.trajectories import list_environments
from autotts_graph.tools.baselines import SWEEPS, BaselineInput, run_baseline

from ..agents.llm import AgentError
from ..agents.roles import BaselinePoint
from ..deps import DepsProvider
from ..state import DiscoveryState, NodeSpend, RunConfig


def resolve_config(config: RunConfig, store: Store) -> RunConfig:
    """Fill in the run id and default environments; StoreError for any bad environment choice.

    With neither search nor held-out environments given, the store's split is used (an empty store first
    receives the synthetic default environments).
    """
    cfg = config.model_copy(deep=True)
    if not cfg.run_id:
        cfg.run_id = history.new_id("run")
    if not cfg.search_envs and not cfg.heldout_envs:
        from autotts_graph.store.synth import ensure_default_environments

        split = ensure_default_environments(store)
        cfg.search_envs, cfg.heldout_envs = list(split["search"]), list(split["heldout"])
    if not cfg.search_envs:
        raise StoreError("the search set is empty: name at least one --search environment")
    stored = {e.name: e.split for e in list_environments(store)}
    known = set(stored)
    hint = ", ".join(sorted(known)) or "none; run `autotts-graph store fetch autotts` or `store synth`"
    for name in [*cfg.search_envs, *cfg.heldout_envs]:
        if name not in known:
            raise StoreError(f"unknown environment {name!r} (known: {hint})")
    exposed = [name for name in cfg.heldout_envs if stored[name] != "heldout"]
    if exposed:
        # A run's held-out data must be hidden on every surface (the tool server included), not only in
        # this run's agents: the store marks it held out from now on.
        from autotts_graph.store.trajectories import set_split

        set_split(store, exposed, "heldout")
    both = sorted(set(cfg.search_envs) & set(cfg.heldout_envs))
    if both:
        raise StoreError(f"{', '.join(both)} is listed both as search and held-out environment")
    if len(set(cfg.search_envs)) != len(cfg.search_envs) or len(set(cfg.heldout_envs)) != len(cfg.heldout_envs):
        raise StoreError("an environment is listed twice")
    for method in cfg.baselines:
        if method not in SWEEPS:
            raise StoreError(f"unknown baseline {method!r}; choose from {', '.join(SWEEPS)}")
    return cfg


def make_prepare(provider: DepsProvider):
    """The prepare node (it resolves the config before any dependency can be built)."""

    def prepare(state: DiscoveryState) -> dict[str, Any]:
        """Resolve the configuration, record the run and evaluate the baselines on the search environments."""
        started = time.perf_counter()
        store = provider.store()
        try:
            cfg = resolve_config(state.config, store)
        except (StoreError, ValueError) as exc:
            return {"status": "failed", "error": str(exc), "node": "prepare"}
        history.record_run(store, cfg.run_id, config=cfg.model_dump(mode="json"), search_envs=cfg.search_envs,
                           heldout_envs=cfg.heldout_envs, status="running")
        try:
            deps = provider.get(cfg)
        except (AgentError, SandboxUnavailable, ValueError) as exc:  # missing key, no sandbox, bad role name
            history.update_run(store, cfg.run_id, status="failed", error=str(exc), finished=True)
            return {"config": cfg, "status": "failed", "error": str(exc), "node": "prepare"}
        points: list[BaselinePoint] = []
        ids: dict[str, str] = {}
        for method in cfg.baselines:
            progress = (lambda d, t, m=method: deps.progress(f"baseline {m}", d, t)) if deps.progress else None
            summary, rows = run_baseline(deps.ctx, BaselineInput(method=method, envs=cfg.search_envs,
                                                                 seeds=cfg.seeds, split="search",
                                                                 fit_envs=cfg.search_envs), progress)
            if not summary.ok:
                err = summary.error
                message = f"baseline {method} failed in the sandbox: {err.kind.value}: {err.message}"
                history.update_run(store, cfg.run_id, status="failed", error=message, finished=True)
                return {"config": cfg, "status": "failed", "error": message, "node": "prepare"}
            ids[f"{method}@search"] = summary.evaluation_id
            points += [BaselinePoint(method=r.method, label=r.label, env=r.point.env, accuracy=r.point.accuracy,
                                     avg_cost=r.point.avg_cost) for r in rows]
        history.merge_run_report(store, cfg.run_id, baseline_evaluations=ids)
        deps.set_baselines(points)
        seconds = time.perf_counter() - started
        history.record_spend(store, run_id=cfg.run_id, round=0, node="prepare", llm_tokens=0, usd=0.0,
                             seconds=seconds)
        return {"config": cfg, "status": "running", "baselines": points, "baseline_evaluations": ids,
                "node": "prepare", "spend": {"prepare": NodeSpend(seconds=seconds, calls=1)},
                "wall_s": state.wall_s + seconds}

    return prepare
