"""``propose`` (lane): the proposer writes a complete controller source from the history, the archive's
parent and inspirations for this slot, and the slot's latest feedback. A proposal whose LLM call fails (cut off
at its time or output limit, a prompt that cannot fit, no usable code) is a failed attempt of the slot, with
its reason as the next attempt's feedback; the LLM budget running out ends the slot."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history

from .. import archive
from ..agents.client import CallFailed
from ..agents.roles import ProposerInput
from ..deps import Deps
from ..state import Candidate, LaneState, budget_reason, total_of
from .common import PROPOSAL_FAILED, controller_name, failed_attempt


def lane_budget(state: LaneState, deps: Deps) -> str | None:
    """The run's budget as this lane sees it: the spend before the generation plus the lane's own."""
    spent = total_of({"before": state.spent_before, **state.spend})
    return budget_reason(deps.config, spent, state.wall_before + total_of(state.spend).seconds)


def propose(state: LaneState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Ask the proposer for a candidate (or stop for the budget: the lane-level guard lives here)."""
    reason = lane_budget(state, deps)
    if reason:
        return {"stop_reason": reason, "goto": "__end__"}
    cfg = deps.config
    entries = archive.history_entries(deps.store, cfg.run_id, before_generation=state.generation,
                                      own=(state.generation, state.slot))
    by_id = {e.candidate_id: e for e in entries}
    parent = by_id.get(state.parent_id) if state.parent_id else None
    inspirations = [by_id[i] for i in state.inspiration_ids if i in by_id]
    # The slot's own latest diagnosis after a failed try (a crash), else the parent's.
    diagnosis = state.diagnosis if state.feedback and state.diagnosis is not None else \
        (parent.diagnosis if parent is not None else None)
    last = state.candidate.source if state.candidate is not None and state.feedback else None
    inp = ProposerInput(round=state.generation, attempt=state.attempt, search_envs=cfg.search_envs, betas=cfg.betas,
                        history=entries, baselines=deps.baselines(), diagnosis=diagnosis, feedback=state.feedback,
                        last_source=last, seed=cfg.seed, parent=parent, inspirations=inspirations,
                        island=state.island, generation=state.generation, slot=state.slot)
    try:
        with deps.llm_slots:
            proposal = roles["proposer"].propose(inp)
    except CallFailed as exc:
        # One proposal failed (a call cut off, a prompt that cannot fit, no usable code): recorded with its reason
        # (the ledger's llm_calls, the lane's outcome and feedback); the slot retries while attempts last.
        if exc.kind == "budget":
            return {"stop_reason": str(exc), "goto": "__end__"}
        return {"candidate": None, "check": None, "verdict": None,
                **failed_attempt(state, deps, [str(exc)], PROPOSAL_FAILED)}
    parent_id = proposal.parent_id if proposal.parent_id in by_id else (parent.candidate_id if parent else None)
    candidate = Candidate(candidate_id=history.new_id("cand"), round=state.generation, attempt=state.attempt,
                          source=proposal.source, code_hash=history.code_hash(proposal.source),
                          name=controller_name(proposal.source), parent=parent_id, origin=roles["proposer"].name,
                          rationale=proposal.rationale, genome=proposal.genome)
    return {"candidate": candidate, "check": None, "verdict": None, "review": None, "screen": None,
            "evaluation": None, "promote": False, "gate": "", "outcome": "", "retry": False, "goto": "check"}
