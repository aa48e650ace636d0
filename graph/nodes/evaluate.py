"""``screen`` and ``evaluate`` (lane): the two stages of the evaluation cascade, in the sandbox.

Stage 1 (``screen``) runs few seeds at a few β points on the search environments. Only a screen within
``screen_margin`` of its niche's best (the best fully evaluated member of the archive in the same cost band
and mechanism family; the run's best while that niche is empty), and within three margins of the run's
best, goes on to stage 2 (``evaluate``): the full β grid x all seeds. The gate compares with earlier
generations only, so a seeded run gates the same way whatever the lanes' timing. A screen identical to an
archive member's (same fitness, same cost) does not go on: it is almost surely the same behaviour written
differently. Both stages are recorded as evaluations of the
candidate (labels ``screen …`` and ``candidate …``) and found again by a re-run node, so nothing is
evaluated twice; points already evaluated for the same code are reused from the cache. A failure at either
stage (syntax, contract, audit flag, crash, timeout, ...) goes to the diagnostician and back to the
proposer; it never enters the archive.
"""

from __future__ import annotations

from typing import Any, Literal

from autotts_graph.store import history
from autotts_graph.store.ledger import CandidateStatus
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller
from langgraph.types import Command

from .. import archive, evidence, scoring
from ..deps import Deps
from ..state import EvalResult, LaneState

SCREEN_LABEL = "screen "
FULL_LABEL = "candidate "


def evaluation_result(deps: Deps, evaluation_id: str, criterion: str, baselines: list) -> EvalResult:
    """An EvalResult read back from the store, scored on its per-question outcomes (``baselines``: best with
    theirs, ``deps.baseline_outcomes()``, so that dominance gets the bootstrap)."""
    ev = history.get_evaluation(deps.store, evaluation_id)
    if not ev.ok:
        err = ev.error or {}
        text = err.get("message", "evaluation failed")
        if err.get("details"):
            text += "\n" + "\n".join(err.get("details", [])[-12:])
        return EvalResult(evaluation_id=evaluation_id, ok=False, error_kind=err.get("kind", "runtime"), error=text)
    curve = evidence.curve_from_points(ev.points)
    return EvalResult(evaluation_id=evaluation_id, ok=True, curve=curve,
                      search_accuracy=scoring.search_accuracy(curve),
                      score=scoring.score(evidence.curve_outcomes(deps.store, evaluation_id) or curve, criterion,
                                          baselines))


def _evaluate_once(state: LaneState, deps: Deps, label: str, betas: list[float], seeds: int, what: str) -> str:
    """The candidate's evaluation with this label: found in the store, else run (in a sandbox slot)."""
    cfg, c = deps.config, state.candidate
    found = history.find_evaluation(deps.store, run_id=cfg.run_id, candidate_id=c.candidate_id, split="search",
                                    label_prefix=label)
    if found is not None:
        return found
    progress = (lambda d, t: deps.progress(f"{what} g{state.generation}s{state.slot}", d, t)) if deps.progress \
        else None
    with deps.sandbox_slots:
        summary = evaluate_controller(deps.ctx, EvaluateInput(
            source=c.source, envs=cfg.search_envs, betas=betas, seeds=seeds, trace_seeds=min(cfg.trace_seeds, seeds),
            label=f"{label}{c.name or c.candidate_id}", split="search", run_id=cfg.run_id,
            candidate_id=c.candidate_id), progress)
    return summary.evaluation_id


def screen(state: LaneState, deps: Deps, roles: dict[str, Any]) -> Command[Literal["evaluate", "diagnose"]]:
    """Stage 1, then the gate: on to the full evaluation, or diagnose the screen and end the slot.

    Without a cascade (``--no-cascade``, or a grid no larger than the screen's) it passes straight on."""
    cfg, c = deps.config, state.candidate
    if cfg.screen_is_full():
        return Command(goto="evaluate", update={"gate": "no cascade: straight to the full evaluation"})
    betas, seeds = cfg.screen_protocol()
    evaluation_id = _evaluate_once(state, deps, SCREEN_LABEL, betas, seeds, "screen")
    result = evaluation_result(deps, evaluation_id, cfg.selection, deps.baseline_outcomes())
    update: dict[str, Any] = {"screen": result, "screens": state.screens + 1}
    if not result.ok:
        deps.ledger.update_candidate(c.candidate_id, CandidateStatus.CRASHED, screen_evaluation_id=evaluation_id,
                                     evaluation_id=evaluation_id)
        return Command(goto="diagnose", update={**update, "outcome": CandidateStatus.CRASHED.value})
    tokens = archive.mean_tokens(result.curve)
    niche = archive.curve_niche(result.curve, c.genome)
    arch = archive.Archive.load(deps.store, cfg.run_id).before(state.generation)
    floor, why = arch.gate_reference(niche, cfg.screen_margin)
    twin = arch.same_screen(result.score, tokens)
    if twin is not None:
        promote, gate = False, (f"stopped: the screen is identical to {twin.candidate_id}'s (same fitness "
                                f"{result.score:.2f} and cost): the same behaviour is not evaluated again")
    elif floor is None:
        promote, gate = True, f"promoted: {why}"
    elif result.score is not None and result.score >= floor:
        promote, gate = True, f"promoted: screen {result.score:.2f} reaches the gate {floor:.2f} ({why})"
    else:
        score = f"{result.score:.2f}" if result.score is not None else "none"
        promote, gate = False, f"stopped: screen {score} is below the gate {floor:.2f} ({why})"
    deps.ledger.update_candidate(c.candidate_id, CandidateStatus.SCREENED, screen_evaluation_id=evaluation_id,
                                 evaluation_id=evaluation_id, stage=1, search_accuracy=result.search_accuracy)
    return Command(goto="evaluate" if promote else "diagnose",
                   update={**update, "outcome": CandidateStatus.SCREENED.value, "gate": gate})


def evaluate(state: LaneState, deps: Deps, roles: dict[str, Any]) -> Command[Literal["diagnose"]]:
    """Stage 2: the full β grid x all seeds (a re-run after a crash reuses the recorded evaluation)."""
    cfg, c = deps.config, state.candidate
    evaluation_id = _evaluate_once(state, deps, FULL_LABEL, cfg.betas, cfg.seeds, "evaluate")
    result = evaluation_result(deps, evaluation_id, cfg.selection, deps.baseline_outcomes())
    status = CandidateStatus.EVALUATED if result.ok else CandidateStatus.CRASHED
    update: dict[str, Any] = {"evaluation": result, "outcome": status.value}
    screened = {}
    if state.screen is None:  # no cascade: this evaluation is also the candidate's screen
        update.update(screen=result, screens=state.screens + 1)
        screened = {"screen_evaluation_id": evaluation_id}
    full = {"stage": 2, "search_accuracy": result.search_accuracy} if result.ok else {}
    deps.ledger.update_candidate(c.candidate_id, status, evaluation_id=evaluation_id, **full, **screened)
    return Command(goto="diagnose", update=update)
