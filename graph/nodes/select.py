"""``select``: choose the discovered controller by the run's criterion, on search environments only.

The candidate about to be selected is first audited strictly (``sandbox/audit.py``: enough audited solves
that a controller deviating on 2 % of them is caught with 99 % probability), by evaluating it again on the
search set with ``audit="strict"``. A flagged candidate is marked ``flagged``, the diagnostician explains the
flag, and the next best candidate is tried; the held-out evaluation (``heldout``) is audited strictly too.
"""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history
from autotts_graph.store.ledger import CandidateRow, CandidateStatus, RunStatus
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from ..agents.roles import DiagnoseInput
from ..deps import Deps
from ..state import STRICT_LABEL, DiscoveryState
from .evaluate import evaluation_result


def strict_audit(deps: Deps, candidate: CandidateRow) -> str:
    """The candidate's search evaluation under the strict audit: found in the store (a re-run node), else run."""
    cfg = deps.config
    found = history.find_evaluation(deps.store, run_id=cfg.run_id, candidate_id=candidate.candidate_id,
                                    split="search", label_prefix=STRICT_LABEL)
    if found is not None:
        return found
    with deps.sandbox_slots:
        summary = evaluate_controller(deps.ctx, EvaluateInput(
            source=candidate.source, envs=cfg.search_envs, betas=cfg.betas, seeds=cfg.seeds, trace_seeds=0,
            label=f"{STRICT_LABEL}{candidate.title}", split="search", audit="strict", run_id=cfg.run_id,
            candidate_id=candidate.candidate_id))
    return summary.evaluation_id


def select(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Best fitness on the search set among fully evaluated (stage 2) candidates that passed every check and
    the strict audit; ties go to fewer tokens, then earlier (generation, slot). Screened-only and flagged
    candidates never compete, and nothing held out is read."""
    cfg = deps.config
    ranked = []
    candidates = {}
    for order, c in enumerate(deps.ledger.candidates()):
        if c.candidate_id not in state.evaluated or not c.evaluation_id or (c.stage or 0) < 2:
            continue
        if c.status == CandidateStatus.FLAGGED:
            continue
        res = evaluation_result(deps, c.evaluation_id, cfg.selection, deps.baseline_outcomes())
        if not res.ok or res.score is None:
            continue
        mean_tokens = sum(p.avg_cost for p in res.curve) / max(len(res.curve), 1)
        ranked.append((-res.score, mean_tokens, order, c.candidate_id))
        candidates[c.candidate_id] = c
    for *_, candidate_id in sorted(ranked):
        c = candidates[candidate_id]
        audited = evaluation_result(deps, strict_audit(deps, c), cfg.selection, deps.baseline_outcomes())
        if audited.ok:
            deps.ledger.set_best(candidate_id)
            return {"selected": candidate_id}
        deps.ledger.update_candidate(candidate_id, CandidateStatus.FLAGGED)
        with deps.llm_slots:
            diagnosis = roles["diagnostician"].diagnose(DiagnoseInput(
                candidate_id=candidate_id, source=c.source, error_kind=audited.error_kind, error=audited.error,
                baselines=deps.baselines()))
        diagnosis.crashed = True
        deps.ledger.record_diagnosis(candidate_id, state.generation, diagnosis.model_dump(mode="json"))
    message = "no candidate passed its checks, evaluation and strict audit; nothing to select"
    deps.ledger.no_candidate(state.stop_reason or message, baseline_evaluations=state.baseline_evaluations,
                             stop_reason=state.stop_reason, wall_s=state.wall_s)
    return {"status": RunStatus.NO_CANDIDATE.value, "selected": None}
