"""``heldout``: evaluate the selected controller (and the baselines) once on the held-out environments."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history
from autotts_graph.store.ledger import RunStatus
from autotts_graph.tools.baselines import BaselineInput, run_baselines
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from .. import evidence
from ..deps import Deps
from ..state import DiscoveryState, HeldoutResult


def evaluate_heldout(deps: Deps, selected: str) -> tuple[HeldoutResult | None, dict[str, str], dict[str, Any]]:
    """The one held-out evaluation of the selected controller and of every baseline, side by side.

    Returns the controller's result, the baselines' evaluation ids (``method@heldout``) and extra report
    fields (none here; a comparison such as confidence intervals against CMC can add its own). Called only
    after selection; nothing it reads or returns reaches an agent."""
    cfg = deps.config
    if not cfg.heldout_envs:
        return None, {}, {}
    cand = history.get_candidate(deps.store, cfg.run_id, selected)
    evaluation_id = history.find_evaluation(deps.store, run_id=cfg.run_id, candidate_id=selected, split="heldout")
    if evaluation_id is None:
        progress = (lambda d, t: deps.progress("heldout", d, t)) if deps.progress else None
        summary = evaluate_controller(deps.full_ctx, EvaluateInput(
            source=cand.source, envs=cfg.heldout_envs, betas=cfg.betas, seeds=cfg.seeds, trace_seeds=0,
            label=f"heldout {cand.title}", split="heldout", audit="strict", run_id=cfg.run_id,
            candidate_id=selected), progress)
        evaluation_id = summary.evaluation_id
    ev = history.get_evaluation(deps.store, evaluation_id)
    err = ev.error
    result = HeldoutResult(evaluation_id=evaluation_id, ok=ev.ok,
                           error=f"{err.get('kind')}: {err.get('message')}" if err else None,
                           curve=evidence.curve_from_points(ev.points))
    inputs = [BaselineInput(method=method, envs=cfg.heldout_envs, seeds=cfg.seeds, split="heldout",
                            fit_envs=cfg.search_envs) for method in cfg.baselines]
    # After selection nothing else is in the sandbox: the baselines take every worker, one method per task.
    results = run_baselines(deps.full_ctx, inputs, deps.full_ctx.workers)
    ids = {f"{method}@heldout": summary.evaluation_id for method, (summary, _) in zip(cfg.baselines, results,
                                                                                       strict=True)}
    return result, ids, {}


def heldout(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Runs after selection only; nothing from here ever reaches an agent."""
    with deps.sandbox_slots:
        result, heldout_ids, extra = evaluate_heldout(deps, state.selected)
    ids = {**state.baseline_evaluations, **heldout_ids}
    deps.ledger.finish(state.selected, baseline_evaluations=ids, stop_reason=state.stop_reason, wall_s=state.wall_s,
                       **extra)
    return {"heldout": result, "baseline_evaluations": ids, "status": RunStatus.DONE.value}
