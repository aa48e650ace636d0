"""``prepare``: open the run (its configuration resolved and recorded once), run the baselines on search envs."""

from __future__ import annotations

from typing import Any

from autotts_graph.sandbox.select import SandboxUnavailable
from autotts_graph.store import history
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.ledger import RunLedger, RunStatus
from autotts_graph.store.trajectories import list_environments
from autotts_graph.tools.baselines import SWEEPS, BaselineInput, run_baselines

from ..agents.client import AgentError
from ..agents.roles import BaselinePoint
from ..configuration import RunConfig
from ..deps import Deps, DepsProvider
from ..state import DiscoveryState


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


def open_run(state: DiscoveryState, provider: DepsProvider) -> Deps | dict[str, Any]:
    """The dependencies of the run the graph starts; or the update that stops it (a bad configuration, a role
    that cannot be built, no sandbox).

    A run started by the runner arrives resolved and recorded (``resolve_config``, then ``start_run`` opens it
    in the ledger); a graph started on a bare configuration (LangGraph Studio, the tests' in-memory runs) is
    resolved and recorded here. Either way it is resolved once and recorded once.
    """
    store = provider.store()
    cfg = state.config
    if not cfg.run_id or not RunLedger(store, cfg.run_id).exists():
        try:
            cfg = resolve_config(cfg, store)
        except (StoreError, ValueError) as exc:
            return {"status": RunStatus.FAILED.value, "error": str(exc)}
        RunLedger(store, cfg.run_id).open(config=cfg.model_dump(mode="json"), search_envs=cfg.search_envs,
                                          heldout_envs=cfg.heldout_envs)
    try:
        deps = provider.get(cfg)
        deps.record_endpoints()
        return deps
    except (AgentError, SandboxUnavailable, ValueError) as exc:  # missing key, no sandbox, bad role name
        RunLedger(store, cfg.run_id).fail(str(exc))
        return {"config": cfg, "status": RunStatus.FAILED.value, "error": str(exc)}


def prepare(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the baselines on the search environments (the run was opened by ``open_run``)."""
    cfg = deps.config
    points: list[BaselinePoint] = []
    ids: dict[str, str] = {}
    progress_of = (lambda m: lambda d, t: deps.progress(f"baseline {m}", d, t)) if deps.progress else None
    inputs = [BaselineInput(method=method, envs=cfg.search_envs, seeds=cfg.seeds, split="search",
                            fit_envs=cfg.search_envs) for method in cfg.baselines]
    # No candidate is in the sandbox yet: the baselines take every worker, one method per task.
    results = run_baselines(deps.ctx, inputs, deps.ctx.workers, progress_of)
    for method, (summary, rows) in zip(cfg.baselines, results, strict=True):
        if not summary.ok:
            err = summary.error
            message = f"baseline {method} failed in the sandbox: {err.kind.value}: {err.message}"
            deps.ledger.fail(message)
            return {"config": cfg, "status": RunStatus.FAILED.value, "error": message}
        ids[f"{method}@search"] = summary.evaluation_id
        points += [BaselinePoint(method=r.method, label=r.label, env=r.point.env, accuracy=r.point.accuracy,
                                 avg_cost=r.point.avg_cost, beta=r.point.beta) for r in rows]
    deps.ledger.merge_report(baseline_evaluations=ids)
    deps.set_baselines(points)
    return {"config": cfg, "status": RunStatus.RUNNING.value, "baselines": points, "baseline_evaluations": ids}
