"""``select``: choose the discovered controller by the run's criterion, on search environments only.

Selection on small, noisy search sets often picks the wrong candidate, so the point estimate only names the
finalists: the top ``finalists`` fully evaluated candidates by fitness are evaluated again on the search set
with fresh shuffle seeds (``RunConfig.fresh_first_seed``: the same for the same run seed), and the one with
the best lower confidence bound of fitness on its fresh evaluation (a bootstrap over questions,
``scoring.fitness_lower_bound``) is selected. The fresh evaluation is the strict audit as well
(``sandbox/audit.py``: enough audited solves that a controller deviating on 2 % of them is caught with 99 %
probability): a flagged finalist is marked ``flagged``, the diagnostician explains the flag, and it drops out;
when every finalist is flagged the next candidates are tried one by one. How the pick was made, and whether it
differs from the point estimate's, is recorded in the run's report (``selection``); the held-out evaluation
(``heldout``) is audited strictly too.
"""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history
from autotts_graph.store.ledger import CandidateRow, CandidateStatus, RunStatus
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from .. import evidence, scoring
from ..agents.roles import DiagnoseInput
from ..configuration import RunConfig
from ..deps import Deps
from ..state import STRICT_LABEL, DiscoveryState, Finalist, SelectionRecord
from .evaluate import evaluation_result


def strict_audit(deps: Deps, candidate: CandidateRow) -> str:
    """The candidate's search evaluation on the fresh seeds under the strict audit: found in the store (a re-run
    node), else run."""
    cfg = deps.config
    found = history.find_evaluation(deps.store, run_id=cfg.run_id, candidate_id=candidate.candidate_id,
                                    split="search", label_prefix=STRICT_LABEL)
    if found is not None:
        return found
    with deps.sandbox_slots:
        summary = evaluate_controller(deps.ctx, EvaluateInput(
            source=candidate.source, envs=cfg.search_envs, betas=cfg.betas, seeds=cfg.seeds,
            first_seed=cfg.fresh_first_seed(), trace_seeds=0, label=f"{STRICT_LABEL}{candidate.title}",
            split="search", audit="strict", run_id=cfg.run_id, candidate_id=candidate.candidate_id))
    return summary.evaluation_id


def choose(finalists: list[Finalist], first_seed: int = 0) -> SelectionRecord:
    """The finalist with the best lower bound among those that passed (ties: the better point estimate's rank),
    and whether that differs from the point estimate's pick (the rank-0 finalist), with why."""
    record = SelectionRecord(finalists=finalists, first_seed=first_seed,
                             point_pick=min(finalists, key=lambda f: f.rank).candidate_id if finalists else None)
    passed = [f for f in finalists if f.audit == "passed" and f.lower_bound is not None]
    if not passed:
        return record.model_copy(update={"why": "no finalist passed its fresh-seed re-evaluation"})
    best = min(passed, key=lambda f: (-f.lower_bound, f.rank))
    top = next(f for f in finalists if f.candidate_id == record.point_pick)
    changed = best.candidate_id != top.candidate_id
    if not changed:
        why = f"the point estimate's pick also has the best lower bound ({best.lower_bound:+.3f})"
    elif top.audit == "flagged":
        why = f"the point estimate's pick {top.candidate_id} was flagged by the strict audit of its re-evaluation"
    else:
        why = (f"on fresh seeds {best.candidate_id} has the best lower bound, {best.lower_bound:+.3f} (fitness "
               f"{best.fresh_fitness:+.3f}; {best.fitness:+.3f} on the search seeds), and the point estimate's pick "
               f"{top.candidate_id} {top.lower_bound:+.3f} (fitness {top.fresh_fitness:+.3f}; {top.fitness:+.3f} on "
               "the search seeds)")
    return record.model_copy(update={"selected": best.candidate_id, "changed": changed, "why": why})


def _flag(state: DiscoveryState, deps: Deps, roles: dict[str, Any], c: CandidateRow, audited: Any) -> None:
    """Mark a candidate whose re-evaluation the strict audit flagged, with the diagnostician's explanation."""
    deps.ledger.update_candidate(c.candidate_id, CandidateStatus.FLAGGED)
    with deps.llm_slots:
        diagnosis = roles["diagnostician"].diagnose(DiagnoseInput(
            candidate_id=c.candidate_id, source=c.source, error_kind=audited.error_kind, error=audited.error,
            baselines=deps.baselines()))
    diagnosis.crashed = True
    deps.ledger.record_diagnosis(c.candidate_id, state.generation, diagnosis.model_dump(mode="json"))


def select(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Among fully evaluated (stage 2) candidates that passed every check: the top ``finalists`` by fitness are
    re-evaluated on fresh seeds under the strict audit, and the best lower confidence bound of fitness among
    those that pass is selected (see the module docstring). Screened-only and flagged candidates never compete,
    and nothing held out is read."""
    cfg = deps.config
    baselines = deps.baseline_outcomes()
    ranked = []
    candidates = {}
    for order, c in enumerate(deps.ledger.candidates()):
        if c.candidate_id not in state.evaluated or not c.evaluation_id or (c.stage or 0) < 2:
            continue
        if c.status == CandidateStatus.FLAGGED:
            continue
        res = evaluation_result(deps, c.evaluation_id, cfg.selection, baselines)
        if not res.ok or res.score is None:
            continue
        mean_tokens = sum(p.avg_cost for p in res.curve) / max(len(res.curve), 1)
        ranked.append((-res.score, mean_tokens, order, c.candidate_id))
        candidates[c.candidate_id] = c
    ranked.sort()
    first_seed = cfg.fresh_first_seed()
    finalists: list[Finalist] = []
    for rank, (neg_score, *_, candidate_id) in enumerate(ranked):
        # Past the finalists, a candidate is tried only while every one so far was flagged.
        if rank >= cfg.finalists and any(f.audit == "passed" for f in finalists):
            break
        c = candidates[candidate_id]
        evaluation_id = strict_audit(deps, c)
        audited = evaluation_result(deps, evaluation_id, cfg.selection, baselines)
        finalist = Finalist(candidate_id=candidate_id, name=c.name, rank=rank, fitness=-neg_score,
                            evaluation_id=evaluation_id)
        if not audited.ok:
            _flag(state, deps, roles, c, audited)
            finalists.append(finalist.model_copy(update={"audit": "flagged"}))
            continue
        fresh, bound = _bound(deps, evaluation_id, cfg, baselines, audited.score)
        finalists.append(finalist.model_copy(update={"fresh_fitness": fresh, "lower_bound": bound}))
    record = choose(finalists, first_seed)
    deps.ledger.merge_report(selection=record.model_dump(mode="json"))
    if record.selected is not None:
        deps.ledger.set_best(record.selected)
        return {"selected": record.selected}
    message = "no candidate passed its checks, evaluation and strict audit; nothing to select"
    deps.ledger.no_candidate(state.stop_reason or message, baseline_evaluations=state.baseline_evaluations,
                             stop_reason=state.stop_reason, wall_s=state.wall_s)
    return {"status": RunStatus.NO_CANDIDATE.value, "selected": None}


def _bound(deps: Deps, evaluation_id: str, cfg: RunConfig, baselines: list,
           score: float | None) -> tuple[float, float]:
    """(fitness, lower bound) of a re-evaluation: the bootstrap bound for the frontier criterion (seeded by the
    run seed), the score itself for the others."""
    if cfg.selection != "frontier" or score is None:
        value = score if score is not None else float("-inf")
        return value, value
    return scoring.fitness_lower_bound(evidence.curve_outcomes(deps.store, evaluation_id), baselines,
                                       seed=scoring.BOOTSTRAP_SEED + cfg.seed)
