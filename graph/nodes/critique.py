"""``critique`` (lane): the critic approves the candidate or sends it back with reasons (the rule critic
reviews it when the LLM critic's call fails or the LLM budget is used up)."""

from __future__ import annotations

from typing import Any, Literal

from autotts_graph.store.ledger import CandidateStatus
from langgraph.types import Command

from .. import archive
from ..agents.roles import CriticInput, CriticVerdict
from ..deps import Deps
from ..state import LaneState
from .common import answer_or_offline, failed_attempt

NO_CRITIC = "no critic (--no-critic): approved without review"


def critique(state: LaneState, deps: Deps,
             roles: dict[str, Any]) -> Command[Literal["review", "screen", "propose", "__end__"]]:
    """Contract, novelty against the history (earlier generations and this slot), no oracle use."""
    c, chk = state.candidate, state.check
    if not deps.config.use_critic:
        # The --no-critic ablation: every checked candidate goes on, and its record says that no critic looked at
        # it (the report and the UI show "no critic", not an approval).
        verdict = CriticVerdict(approve=True, no_critic=True, reasons=[NO_CRITIC])
        deps.ledger.update_candidate(c.candidate_id, CandidateStatus.APPROVED, critic=verdict.model_dump(mode="json"))
        return Command(goto="review" if deps.config.review else "screen", update={"verdict": verdict})
    entries = [e for e in archive.history_entries(deps.store, deps.config.run_id, before_generation=state.generation,
                                                  own=(state.generation, state.slot))
               if e.candidate_id != c.candidate_id]
    inp = CriticInput(source=c.source, check_errors=chk.errors if chk else [],
                      check_warnings=chk.warnings if chk else [], schedule=chk.schedule if chk else {},
                      history=entries)
    verdict, failed = answer_or_offline(roles, "critic", "review", inp, deps)
    if failed:  # the candidate is paid for: the rule critic reviewed it instead, and the verdict says why
        verdict.reasons = [f"(reviewed by the rule critic: {failed})", *verdict.reasons]
    status = CandidateStatus.APPROVED if verdict.approve else CandidateStatus.REJECTED
    deps.ledger.update_candidate(c.candidate_id, status, critic=verdict.model_dump(mode="json"))
    if verdict.approve:
        return Command(goto="review" if deps.config.review else "screen", update={"verdict": verdict})
    reasons = verdict.reasons or ["the critic asked for a revision without giving a reason"]
    return failed_attempt(state, deps, [f"critic: {r}" for r in reasons], status, verdict=verdict)
