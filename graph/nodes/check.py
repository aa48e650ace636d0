"""``check`` (lane): record the candidate, then validate it statically and in the sandbox."""

from __future__ import annotations

from typing import Any, Literal

from autotts_graph.store.ledger import CandidateRow, CandidateStatus
from autotts_graph.tools.validate import ValidateInput, validate_controller
from langgraph.types import Command

from ..deps import Deps
from ..state import CheckResult, LaneState
from .common import failed_attempt


def record_candidate(deps: Deps, state: LaneState) -> None:
    """Write the candidate in flight to the ledger, pending (idempotent by id)."""
    c = state.candidate
    deps.ledger.add_candidate(CandidateRow(candidate_id=c.candidate_id, run_id=deps.config.run_id, round=c.round,
                                           attempt=c.attempt, source=c.source, parent=c.parent, origin=c.origin,
                                           name=c.name, rationale=c.rationale, genome=c.genome, slot=state.slot))


def _duplicate(deps: Deps, state: LaneState) -> CandidateRow | None:
    """An evaluated candidate with the same code from an earlier generation or from this slot.

    Other slots of this generation are left out: whether they were evaluated yet depends on timing, and a
    seeded run must not. (Identical code in one generation costs nothing twice: the evaluation cache.)"""
    c = state.candidate
    for x in deps.ledger.candidates():
        mine = x.round == state.generation and x.slot == state.slot
        if (x.code_hash == c.code_hash and x.evaluation_id and x.candidate_id != c.candidate_id
                and (x.round < state.generation or mine)):
            return x
    return None


def check(state: LaneState, deps: Deps, roles: dict[str, Any]) -> Command[Literal["critique", "propose", "__end__"]]:
    """Syntax, contract, forbidden imports, monotone schedule, smoke solve; duplicates of evaluated code."""
    c = state.candidate
    record_candidate(deps, state)
    duplicate = _duplicate(deps, state)
    if duplicate is not None:
        result = CheckResult(ok=False, errors=[f"identical to candidate {duplicate.candidate_id}, which was "
                                               "already evaluated: propose something different"])
    else:
        with deps.sandbox_slots:
            report = validate_controller(deps.ctx, ValidateInput(source=c.source, env=deps.config.search_envs[0]))
        errors = list(report.errors)
        result = CheckResult(ok=report.ok and not errors, errors=errors, warnings=report.warnings,
                             schedule=report.schedule)
    status = CandidateStatus.CHECKED if result.ok else CandidateStatus.CHECK_FAILED
    deps.ledger.update_candidate(c.candidate_id, status, check_result=result.model_dump(mode="json"))
    if result.ok:
        return Command(goto="critique", update={"check": result, "feedback": []})
    return failed_attempt(state, deps, [f"check: {e}" for e in result.errors], status, check=result)
