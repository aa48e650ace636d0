"""``propose``: the proposer writes a complete controller source from the history and the latest feedback."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history

from .. import evidence
from ..agents.roles import ProposerInput
from ..deps import Deps
from ..state import Candidate, DiscoveryState
from .common import controller_name


def propose(state: DiscoveryState, deps: Deps) -> dict[str, Any]:
    """Ask the proposer for a candidate (or stop for the budget: the graph-level guard lives here)."""
    reason = state.budget_exhausted()
    if reason:
        return {"stop_reason": reason}
    cfg = state.config
    entries = evidence.history_entries(deps.store, cfg.run_id)
    last = state.candidate.source if state.candidate is not None and state.feedback else None
    inp = ProposerInput(round=state.round, attempt=state.attempt, search_envs=cfg.search_envs, betas=cfg.betas,
                        history=entries, baselines=state.baselines, diagnosis=state.diagnosis,
                        feedback=state.feedback, last_source=last, seed=cfg.seed)
    proposal = deps.proposer.propose(inp)
    known = {e.candidate_id for e in entries}
    parent = proposal.parent_id if proposal.parent_id in known else None
    candidate = Candidate(candidate_id=history.new_id("cand"), round=state.round, attempt=state.attempt,
                          source=proposal.source, code_hash=history.code_hash(proposal.source),
                          name=controller_name(proposal.source), parent=parent, origin=deps.proposer.name,
                          rationale=proposal.rationale, genome=proposal.genome)
    return {"candidate": candidate, "check": None, "verdict": None, "review": None, "evaluation": None,
            "outcome": "", "stop_reason": None}
