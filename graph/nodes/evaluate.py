"""``evaluate``: the beta sweep of the candidate on the search environments, in the sandbox."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from .. import evidence
from ..deps import Deps
from ..state import DiscoveryState, EvalResult


def evaluation_result(deps: Deps, evaluation_id: str, criterion: str, baselines: list) -> EvalResult:
    """An EvalResult read back from the store."""
    ev = history.get_evaluation(deps.store, evaluation_id)
    if ev["status"] != "ok":
        err = ev["error"] or {}
        text = err.get("message", "evaluation failed")
        if err.get("details"):
            text += "\n" + "\n".join(err["details"][-12:])
        return EvalResult(evaluation_id=evaluation_id, ok=False, error_kind=err.get("kind", "runtime"), error=text)
    curve = evidence.curve_from_points(ev["points"])
    return EvalResult(evaluation_id=evaluation_id, ok=True, curve=curve,
                      search_accuracy=evidence.search_accuracy(curve),
                      score=evidence.score(curve, criterion, baselines))


def evaluate(state: DiscoveryState, deps: Deps) -> dict[str, Any]:
    """Evaluate once per candidate (a re-run after a crash reuses the recorded evaluation)."""
    cfg, c = state.config, state.candidate
    evaluation_id = history.find_evaluation(deps.store, run_id=cfg.run_id, candidate_id=c.candidate_id,
                                            split="search")
    if evaluation_id is None:
        progress = (lambda d, t: deps.progress("evaluate", d, t)) if deps.progress else None
        summary = evaluate_controller(deps.ctx, EvaluateInput(
            source=c.source, envs=cfg.search_envs, betas=cfg.betas, seeds=cfg.seeds, trace_seeds=cfg.trace_seeds,
            label=f"candidate {c.name or c.candidate_id}", split="search", run_id=cfg.run_id,
            candidate_id=c.candidate_id), progress)
        evaluation_id = summary.evaluation_id
    result = evaluation_result(deps, evaluation_id, cfg.selection, state.baselines)
    history.update_candidate(deps.store, c.candidate_id, evaluation_id=evaluation_id,
                             status="evaluated" if result.ok else "crashed", search_accuracy=result.search_accuracy)
    update: dict[str, Any] = {"evaluation": result, "outcome": "evaluated" if result.ok else "crashed"}
    if result.ok and c.candidate_id not in state.evaluated:
        update["evaluated"] = [*state.evaluated, c.candidate_id]
    return update
