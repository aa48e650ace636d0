"""The three agent roles and the typed messages between them and the graph.

Every role has an LLM implementation (``llm.py``) and an offline one (``offline_proposer.py``,
``offline_critic.py``, ``offline_diagnostician.py``); the graph only
knows these protocols, so roles are interchangeable one by one (``--proposer offline --critic llm``).
Nothing here may carry held-out data: the graph builds these inputs from search environments only.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field


class Spend(BaseModel):
    """LLM usage of a role (zero for offline roles)."""

    llm_tokens: int = 0
    usd: float = 0.0
    calls: int = 0


class CurvePoint(BaseModel):
    """One point of a scaling curve on a search environment."""

    env: str
    beta: float | None
    accuracy: float  # percent
    avg_cost: float  # tokens per question


class BaselinePoint(BaseModel):
    """One baseline configuration on a search environment (e.g. ASC(64))."""

    method: str
    label: str
    env: str
    accuracy: float
    avg_cost: float
    beta: float | None = None  # β-parameterised baselines (CMC): the fitness compares scaling at equal β


class FailureMode(BaseModel):
    """A named way the controller lost accuracy or wasted tokens, with evidence."""

    kind: str = Field(description="e.g. premature_stop, wasted_tokens, pruned_correct, never_converged, "
                                  "below_baseline, crash, timeout, no_scaling, hidden_information (flagged by the "
                                  "counterfactual audit), known_answers (flagged by the relabelling audit), "
                                  "contract_violation (refused by the judge)")
    count: int = 0
    share: float = 0.0  # fraction of the relevant (question, seed) cases
    evidence: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)  # e.g. "Qwen3-4B/aime24 q7 β=0.5 seed 0"
    suggestion: str = ""


class Diagnosis(BaseModel):
    """The diagnostician's structured verdict on one candidate."""

    summary: str
    failure_modes: list[FailureMode] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list,
                               description="Machine-usable hints: stricter_stop, looser_stop, more_width, "
                                           "less_width, deeper_probing, less_pruning, more_pruning, fix_crash, "
                                           "speed_up")
    crashed: bool = False


class HistoryEntry(BaseModel):
    """One candidate of the run as agents see it (search environments only)."""

    candidate_id: str
    round: int
    name: str = ""
    origin: str = ""
    parent: str | None = None
    code_hash: str = ""
    source: str = ""
    status: Literal["evaluated", "check_failed", "rejected", "crashed"] = "evaluated"
    curve: list[CurvePoint] = Field(default_factory=list)
    search_accuracy: float | None = None  # best mean-over-envs accuracy over the beta grid
    diagnosis: Diagnosis | None = None
    notes: list[str] = Field(default_factory=list)  # check errors / critic reasons
    genome: dict[str, Any] | None = None  # structured description when the proposer has one
    fitness: float | None = None  # the run's fitness on the search set (stage 2: full grid; stage 1: the screen)
    niche: str | None = None  # archive niche "c<cost band>|<mechanism family>"; None outside the archive
    stage: int | None = None  # 1 = screened only (few seeds and betas), 2 = fully evaluated; None = not evaluated


class Proposal(BaseModel):
    """A complete controller source and why it was written."""

    source: str
    rationale: str = ""
    parent_id: str | None = None
    genome: dict[str, Any] | None = None


class CriticVerdict(BaseModel):
    """Approve, or ask for a revision with reasons a proposer can act on."""

    approve: bool
    reasons: list[str] = Field(default_factory=list)
    max_similarity: float = 0.0  # to the most similar earlier candidate, 0..1
    no_critic: bool = False  # --no-critic: no critic reviewed it; approved by pass-through


class ProposerInput(BaseModel):
    round: int
    attempt: int = 0  # retries within the round so far
    search_envs: list[str]
    betas: list[float]
    history: list[HistoryEntry] = Field(default_factory=list)
    baselines: list[BaselinePoint] = Field(default_factory=list)
    diagnosis: Diagnosis | None = None  # of the latest evaluated or crashed candidate
    feedback: list[str] = Field(default_factory=list)  # check errors or critic reasons for the last attempt
    last_source: str | None = None  # the source that feedback refers to
    seed: int = 0
    parent: HistoryEntry | None = None  # the parent the archive chose for this proposal (None: start afresh)
    inspirations: list[HistoryEntry] = Field(default_factory=list)  # best and most different archive members
    island: int = 0  # the archive island this proposal belongs to
    generation: int = 0  # the generation (== round)
    slot: int = 0  # index of this proposal within its generation
    # Strategy random: an independent proposal (no history, parent, inspirations or diagnosis is shown); draw a
    # fresh program, different for each (generation, slot).
    independent: bool = False


class CriticInput(BaseModel):
    source: str
    check_errors: list[str] = Field(default_factory=list)
    check_warnings: list[str] = Field(default_factory=list)
    schedule: dict[str, dict[str, Any]] = Field(default_factory=dict)  # beta -> params, from validation
    history: list[HistoryEntry] = Field(default_factory=list)


class QuestionOutcome(BaseModel):
    """One question at one beta, aggregated over seeds."""

    env: str
    beta: float | None
    question_index: int
    gold: str
    accuracy: float  # fraction of seeds correct
    mean_tokens: float
    modal_answer: str | None


class TraceSample(BaseModel):
    """A full trace of one (seed, question) solve."""

    env: str
    beta: float | None
    seed: int
    question_index: int
    is_correct: bool
    cost: int
    answer: str | None
    steps: list[dict[str, Any]]


class DiagnoseInput(BaseModel):
    candidate_id: str
    source: str
    error_kind: str | None = None  # set when the evaluation crashed or timed out
    error: str | None = None  # message plus the controller's own traceback lines
    curve: list[CurvePoint] = Field(default_factory=list)
    baselines: list[BaselinePoint] = Field(default_factory=list)
    outcomes: list[QuestionOutcome] = Field(default_factory=list)
    traces: list[TraceSample] = Field(default_factory=list)


class Proposer(Protocol):
    name: str

    def propose(self, inp: ProposerInput) -> Proposal: ...

    def spend(self) -> Spend: ...


class Critic(Protocol):
    name: str

    def review(self, inp: CriticInput) -> CriticVerdict: ...

    def spend(self) -> Spend: ...


class Diagnostician(Protocol):
    name: str

    def diagnose(self, inp: DiagnoseInput) -> Diagnosis: ...

    def spend(self) -> Spend: ...
