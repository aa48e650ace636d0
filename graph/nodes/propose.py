"""``propose`` (lane): the proposer writes a complete controller source from the history, the archive's
parent and inspirations for this slot, and the slot's latest feedback. A proposal whose LLM call fails (cut off
at its time or output limit, a prompt that cannot fit, no usable code) is a failed attempt of the slot, with
its reason as the next attempt's feedback; the LLM budget running out ends the slot."""

from __future__ import annotations

from typing import Any, Literal

from autotts_graph.store import history
from langgraph.types import Command

from .. import archive
from ..agents.client import CallFailed
from ..agents.roles import HistoryEntry, ProposerInput
from ..deps import Deps
from ..state import Candidate, LaneState, budget_reason, total_of
from .common import DIAGNOSIS_FEEDBACK, PROPOSAL_FAILED, controller_name, failed_attempt


def lane_budget(state: LaneState, deps: Deps) -> str | None:
    """The run's budget as this lane sees it: the spend before the generation plus the lane's own."""
    spent = total_of({"before": state.spent_before, **state.spend})
    return budget_reason(deps.config, spent, state.wall_before + total_of(state.spend).seconds)


def _without_diagnosis(entry: HistoryEntry) -> HistoryEntry:
    return entry.model_copy(update={"diagnosis": None})


def proposer_input(state: LaneState, deps: Deps) -> ProposerInput:
    """What the proposer is shown for this slot, by the run's strategy and ablations.

    ``evolve`` and ``greedy``: the history (earlier generations and this slot's own tries), the parent the plan
    chose, its inspirations and the latest diagnosis. ``random``: none of it (``independent``): only the task,
    the baselines and this slot's own retry feedback (check errors, critic reasons: they make one proposal
    valid, they are not feedback from evaluations). ``--no-diagnosis``: scores only, every diagnosis removed
    (the history's, the parent's, the crash feedback's)."""
    cfg = deps.config
    independent = cfg.strategy == "random"
    entries = [] if independent else archive.history_entries(
        deps.store, cfg.run_id, before_generation=state.generation, own=(state.generation, state.slot))
    by_id = {e.candidate_id: e for e in entries}
    parent = by_id.get(state.parent_id) if state.parent_id else None
    inspirations = [by_id[i] for i in state.inspiration_ids if i in by_id]
    # The slot's own latest diagnosis after a failed try (a crash), else the parent's.
    diagnosis = state.diagnosis if state.feedback and state.diagnosis is not None else \
        (parent.diagnosis if parent is not None else None)
    feedback = list(state.feedback)
    if independent or not cfg.use_diagnosis:
        diagnosis = None
        feedback = [f for f in feedback if not f.startswith(DIAGNOSIS_FEEDBACK)]
    if not cfg.use_diagnosis:
        entries = [_without_diagnosis(e) for e in entries]
        parent = _without_diagnosis(parent) if parent is not None else None
        inspirations = [_without_diagnosis(e) for e in inspirations]
    last = state.candidate.source if state.candidate is not None and state.feedback else None
    return ProposerInput(round=state.generation, attempt=state.attempt, search_envs=cfg.search_envs, betas=cfg.betas,
                         history=entries, baselines=deps.baselines(), diagnosis=diagnosis, feedback=feedback,
                         last_source=last, seed=cfg.seed, parent=parent, inspirations=inspirations,
                         island=state.island, generation=state.generation, slot=state.slot, independent=independent)


def propose(state: LaneState, deps: Deps, roles: dict[str, Any]) -> Command[Literal["check", "propose", "__end__"]]:
    """Ask the proposer for a candidate (or stop for the budget: the lane-level guard lives here)."""
    reason = lane_budget(state, deps)
    if reason:
        return Command(goto="__end__", update={"stop_reason": reason})
    inp = proposer_input(state, deps)
    by_id = {e.candidate_id: e for e in inp.history}
    parent = inp.parent
    try:
        with deps.llm_slots:
            proposal = roles["proposer"].propose(inp)
    except CallFailed as exc:
        # One proposal failed (a call cut off, a prompt that cannot fit, no usable code): recorded with its reason
        # (the ledger's llm_calls, the lane's outcome and feedback); the slot retries while attempts last.
        if exc.kind == "budget":
            return Command(goto="__end__", update={"stop_reason": str(exc)})
        return failed_attempt(state, deps, [str(exc)], PROPOSAL_FAILED, candidate=None, check=None, verdict=None)
    parent_id = proposal.parent_id if proposal.parent_id in by_id else (parent.candidate_id if parent else None)
    candidate = Candidate(candidate_id=history.new_id("cand"), round=state.generation, attempt=state.attempt,
                          source=proposal.source, code_hash=history.code_hash(proposal.source),
                          name=controller_name(proposal.source), parent=parent_id, origin=roles["proposer"].name,
                          rationale=proposal.rationale, genome=proposal.genome)
    return Command(goto="check", update={"candidate": candidate, "check": None, "verdict": None, "review": None,
                                         "screen": None, "evaluation": None, "gate": "", "outcome": ""})
