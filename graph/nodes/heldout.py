"""``heldout``: evaluate the selected controller (and the baselines) once on the held-out environments."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history
from autotts_graph.tools.baselines import BaselineInput, run_baseline
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from .. import evidence
from ..deps import Deps
from ..state import DiscoveryState, HeldoutResult


def heldout(state: DiscoveryState, deps: Deps) -> dict[str, Any]:
    """Runs after selection only; nothing from here ever reaches an agent."""
    cfg = state.config
    ids = dict(state.baseline_evaluations)
    result = None
    if cfg.heldout_envs:
        cand = next(c for c in history.list_candidates(deps.store, cfg.run_id) if c["candidate_id"] == state.selected)
        evaluation_id = history.find_evaluation(deps.store, run_id=cfg.run_id, candidate_id=state.selected,
                                                split="heldout")
        if evaluation_id is None:
            progress = (lambda d, t: deps.progress("heldout", d, t)) if deps.progress else None
            summary = evaluate_controller(deps.full_ctx, EvaluateInput(
                source=cand["source"], envs=cfg.heldout_envs, betas=cfg.betas, seeds=cfg.seeds, trace_seeds=0,
                label=f"heldout {cand['name'] or state.selected}", split="heldout", run_id=cfg.run_id,
                candidate_id=state.selected), progress)
            evaluation_id = summary.evaluation_id
        ev = history.get_evaluation(deps.store, evaluation_id)
        err = ev["error"]
        result = HeldoutResult(evaluation_id=evaluation_id, ok=ev["status"] == "ok",
                               error=f"{err.get('kind')}: {err.get('message')}" if err else None,
                               curve=evidence.curve_from_points(ev["points"]))
        for method in cfg.baselines:
            summary, _ = run_baseline(deps.full_ctx, BaselineInput(method=method, envs=cfg.heldout_envs,
                                                                   seeds=cfg.seeds, split="heldout",
                                                                   fit_envs=cfg.search_envs))
            ids[f"{method}@heldout"] = summary.evaluation_id
    history.update_run(deps.store, cfg.run_id, status="done", best_candidate=state.selected, finished=True,
                       report={"baseline_evaluations": ids, "stop_reason": state.stop_reason})
    return {"heldout": result, "baseline_evaluations": ids, "status": "done"}
