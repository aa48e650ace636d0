"""The proposer played by several models: a UCB bandit picks the model of each proposal by the fitness gains
(child over parent) that each model's earlier candidates produced.

Each model is an ``LLMProposer`` of its own (its own client, spend and endpoint capabilities; the toolbox is
shared). ``--proposer-model A --proposer-models B,C`` (or ``models = [...]`` in the ``[proposer]`` table) makes
the ensemble; every member takes the proposer's other settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..configuration import RoleSettings
from .client import CallBudget, CallFailed, CallRecord
from .llm import LLMProposer
from .roles import HistoryEntry, Proposal, ProposerInput, Spend


class ModelBandit:
    """UCB1 over models. A model's reward per candidate is the fitness gain over the candidate's parent
    (``max(0, child - parent)``; a parentless candidate is compared with the best fitness of the history at
    large, and a candidate that failed its checks or crashed earns 0). Untried models go first, in order;
    ties go to the earlier model: the pick is a pure function of the history."""

    def __init__(self, models: list[str], explore: float = 1.0) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)
        self.explore = explore

    def rewards(self, history: list[HistoryEntry], failed: dict[str, int] | None = None) -> dict[str, list[float]]:
        """Per model, the rewards of its candidates in the history (attributed by ``origin == 'llm:<model>'``),
        plus a reward of 0 per proposal of it that failed before it became a candidate (``failed``)."""
        by_id = {h.candidate_id: h for h in history}
        scored = [h.fitness for h in history if h.fitness is not None]
        floor = max(scored) if scored else 0.0
        out: dict[str, list[float]] = {m: [] for m in self.models}
        for h in history:
            model = h.origin[4:] if h.origin.startswith("llm:") else None
            if model not in out:
                continue
            if h.fitness is None:
                out[model].append(0.0)
                continue
            parent = by_id.get(h.parent) if h.parent else None
            base = parent.fitness if parent is not None and parent.fitness is not None else floor
            out[model].append(max(0.0, h.fitness - base))
        for model, n in (failed or {}).items():
            if model in out:
                out[model] += [0.0] * n
        return out

    def pick(self, history: list[HistoryEntry], failed: dict[str, int] | None = None) -> str:
        """The model of the next proposal."""
        rewards = self.rewards(history, failed)
        for m in self.models:
            if not rewards[m]:
                return m
        total = sum(len(r) for r in rewards.values())
        return max(self.models, key=lambda m: (sum(rewards[m]) / len(rewards[m])
                                               + self.explore * math.sqrt(2 * math.log(total) / len(rewards[m])),
                                               -self.models.index(m)))


class EnsembleProposer:
    """Several LLM proposers (one per model); a bandit picks the model of each proposal.

    ``name`` is the picked model's ``llm:<model>`` while (and after) it proposes, so the graph records each
    candidate's origin per model: the bandit reads its rewards back from the history, which survives a
    resume. ``spend()`` is the sum, ``spend_by_model()`` the line of each model.
    """

    role = "proposer"

    def __init__(self, members: dict[str, LLMProposer], explore: float = 1.0) -> None:
        self.members = dict(members)
        self.bandit = ModelBandit(list(self.members), explore)
        self.name = f"llm:{next(iter(self.members))}"
        self.picks: list[str] = []
        # Proposals that failed before they became candidates (no code, a call cut off): tried, and no gain. Kept
        # for this process only; the candidates' history, which the bandit reads otherwise, survives a resume.
        self.failed: dict[str, int] = {}

    def spend(self) -> Spend:
        total = Spend()
        for m in self.members.values():
            s = m.spend()
            total.llm_tokens += s.llm_tokens
            total.usd += s.usd
            total.calls += s.calls
        return total

    def spend_by_model(self) -> dict[str, Spend]:
        return {model: m.spend() for model, m in self.members.items()}

    def take_calls(self) -> list[CallRecord]:
        """Every member's calls since the last take (each record names its model)."""
        return [r for m in self.members.values() for r in m.take_calls()]

    def set_budget(self, budget: CallBudget) -> None:
        """One budget for all members (they draw on the run's one budget)."""
        for m in self.members.values():
            m.set_budget(budget)

    def propose(self, inp: ProposerInput) -> Proposal:
        model = self.bandit.pick(inp.history, self.failed)
        self.picks.append(model)
        self.name = f"llm:{model}"
        try:
            proposal = self.members[model].propose(inp)
        except CallFailed:
            self.failed[model] = self.failed.get(model, 0) + 1
            raise
        proposal.rationale = f"[model {model}] {proposal.rationale}".strip()
        return proposal


def ensemble_models(settings: RoleSettings) -> list[str]:
    """The proposer's models: ``model`` first, then ``models`` (without repeats)."""
    names = [settings.model]
    for m in settings.models:
        if m not in names:
            names.append(m)
    return names


def make_ensemble(settings: RoleSettings, member: Callable[[RoleSettings], LLMProposer],
                  explore: float = 1.0) -> EnsembleProposer:
    """An ensemble over ``ensemble_models(settings)``; ``member`` builds each model's proposer from the role's
    settings with that model."""
    members = {}
    for name in ensemble_models(settings):
        proposer = member(settings.model_copy(update={"model": name, "models": []}))
        proposer.name = f"llm:{name}"
        members[name] = proposer
    return EnsembleProposer(members, explore)
