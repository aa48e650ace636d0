"""``review`` (lane, with ``--review``): a human approves, edits or rejects the candidate before evaluation."""

from __future__ import annotations

from typing import Any, Literal

from autotts_graph.store import history
from autotts_graph.store.ledger import CandidateStatus
from langgraph.types import Command, interrupt

from ..deps import Deps
from ..state import Candidate, LaneState, ReviewDecision
from .common import controller_name, failed_attempt


def review(state: LaneState, deps: Deps,
           roles: dict[str, Any]) -> Command[Literal["screen", "check", "propose", "__end__"]]:
    """Pause with the candidate; resume with {"action": "approve"|"edit"|"reject", "source", "reason"}.

    Every lane of a generation pauses on its own; the runner answers each pending review."""
    c = state.candidate
    answer = interrupt({"candidate_id": c.candidate_id, "name": c.name, "round": c.round, "slot": state.slot,
                        "source": c.source, "rationale": c.rationale,
                        "critic": state.verdict.model_dump() if state.verdict else None})
    decision = ReviewDecision.model_validate(answer if isinstance(answer, dict) else {"action": str(answer)})
    if decision.action == "approve":
        return Command(goto="screen", update={"review": decision})
    if decision.action == "edit":
        if not decision.source or not decision.source.strip():
            decision = ReviewDecision(action="reject", reason="edit without a source")
        else:
            edited = Candidate(candidate_id=history.new_id("cand"), round=c.round, attempt=c.attempt,
                               source=decision.source, code_hash=history.code_hash(decision.source),
                               name=controller_name(decision.source), parent=c.candidate_id, origin="human",
                               rationale=decision.reason or "edited by a reviewer")
            deps.ledger.update_candidate(c.candidate_id, CandidateStatus.REJECTED,
                                         critic={"approve": False, "reasons": ["replaced by a reviewer's edit"]})
            return Command(goto="check", update={"review": decision, "candidate": edited, "check": None,
                                                 "verdict": None})
    reason = decision.reason or "rejected by the reviewer"
    deps.ledger.update_candidate(c.candidate_id, CandidateStatus.REJECTED,
                                 critic={"approve": False, "reasons": [f"human: {reason}"]})
    return failed_attempt(state, deps, [f"reviewer: {reason}"], CandidateStatus.REJECTED, review=decision)
