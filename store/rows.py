"""The history's rows as pydantic models: what ``history`` reads back and what the run ledger writes.

One model per stored shape, so every reader (the graph's nodes, the tools, the report, the run browser) sees
the same typed fields instead of a dict whose keys each reader spells again. A candidate has exactly one
read shape, :class:`CandidateRow` (the store's ``candidates`` row); its place in the archive is an
:class:`ArchiveRow`, its evaluations :class:`EvaluationRow` s, its spend a :class:`SpendTotals`.
Statuses are enums whose values are the strings stored, so stores written before these models read the same.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RunStatus(StrEnum):
    """Where a run stands (``runs.status``)."""

    RUNNING = "running"
    DONE = "done"  # selected and evaluated on the held-out environments
    FAILED = "failed"  # stopped by an error; resumable from its checkpoint
    NO_CANDIDATE = "no_candidate"  # finished without a candidate to select


class CandidateStatus(StrEnum):
    """Where a candidate stands (``candidates.status``)."""

    PENDING = "pending"  # recorded, not checked yet
    CHECKED = "checked"
    CHECK_FAILED = "check_failed"
    APPROVED = "approved"  # by the critic (and the reviewer, with --review)
    REJECTED = "rejected"
    SCREENED = "screened"  # stage 1 of the cascade
    EVALUATED = "evaluated"  # stage 2: the full β grid x seeds
    CRASHED = "crashed"  # an evaluation stage failed (crash, timeout, contract, audit)
    FLAGGED = "flagged"  # fully evaluated, then flagged by the strict audit before selection: never selected


class RunRow(BaseModel):
    """A run as stored."""

    run_id: str
    status: RunStatus
    config: dict[str, Any] = Field(default_factory=dict)
    search_envs: list[str] = Field(default_factory=list)
    heldout_envs: list[str] = Field(default_factory=list)
    best_candidate: str | None = None
    report: dict[str, Any] | None = None
    created_at: str = ""
    finished_at: str | None = None
    error: str | None = None
    wall_s: float | None = None  # the run's wall time so far (parallel lanes counted once)

    @field_validator("search_envs", "heldout_envs", mode="before")
    @classmethod
    def _no_null_list(cls, v: Any) -> Any:
        return [] if v is None else v

    @property
    def finished(self) -> bool:
        """Whether the run has stopped (done, failed or without a candidate)."""
        return self.status is not RunStatus.RUNNING

    @property
    def selected(self) -> bool:
        """Whether selection is over (a candidate was chosen and the held-out evaluation may be shown)."""
        return self.status is RunStatus.DONE and self.best_candidate is not None


class CandidateRow(BaseModel):
    """A candidate as stored. ``code_hash`` is the ledger's (derived from ``source`` when written) and
    ``created_at`` the store's: both are read back, never set by a writer."""

    candidate_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    round: int = Field(ge=0)
    attempt: int = Field(0, ge=0)
    source: str
    parent: str | None = None
    origin: str = ""
    name: str = ""
    rationale: str = ""
    status: CandidateStatus = CandidateStatus.PENDING
    check_result: dict[str, Any] | None = None
    critic: dict[str, Any] | None = None
    evaluation_id: str | None = None
    search_accuracy: float | None = None
    genome: dict[str, Any] | None = None  # the offline proposer's structured description of the code
    slot: int = Field(0, ge=0)  # index in its generation (``round``)
    stage: int | None = Field(None, ge=1, le=2)  # how far the cascade took it: 1 screened, 2 full
    screen_evaluation_id: str | None = None
    code_hash: str = ""
    created_at: str = ""

    @field_validator("attempt", "slot", mode="before")
    @classmethod
    def _null_is_zero(cls, v: Any) -> Any:
        return 0 if v is None else v

    @field_validator("status", mode="before")
    @classmethod
    def _null_is_pending(cls, v: Any) -> Any:
        return CandidateStatus.PENDING if v is None else v

    @field_validator("origin", "name", "rationale", "code_hash", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v

    @property
    def title(self) -> str:
        """The controller's name, else its id."""
        return self.name or self.candidate_id

    def problems(self) -> list[str]:
        """Why it went no further: the check's errors and the critic's reasons (empty when they passed)."""
        why = []
        if self.check_result and not self.check_result.get("ok", True):
            why += [str(e) for e in self.check_result.get("errors", [])]
        if self.critic and not self.critic.get("approve", True):
            why += [str(r) for r in self.critic.get("reasons", [])]
        return why


class PointSummary(BaseModel):
    """One (environment, β) point of an evaluation: accuracy (percent) and tokens per question."""

    env: str
    beta: float | None = None
    accuracy: float
    avg_cost: float


class PointRow(PointSummary):
    """An evaluation point in full (``evaluation_points`` without the per-seed lists)."""

    point_index: int
    config: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    std_acc: float = 0.0
    params: dict[str, Any] = Field(default_factory=dict)


class EvaluationSummary(BaseModel):
    """An evaluation's split, status and point summaries (``history.evaluation_points``)."""

    evaluation_id: str
    split: str | None = None
    status: str
    candidate_id: str | None = None
    label: str | None = None
    points: list[PointSummary] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class EvaluationRow(BaseModel):
    """An evaluation's metadata and its points."""

    evaluation_id: str
    run_id: str | None = None
    candidate_id: str | None = None
    code_hash: str | None = None
    label: str | None = None
    split: str | None = None
    protocol: dict[str, Any] = Field(default_factory=dict)
    status: str
    error: dict[str, Any] | None = None
    elapsed_s: float | None = None
    created_at: str = ""
    points: list[PointRow] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def error_line(self) -> str | None:
        """'kind: message' of a failed evaluation (None when it succeeded)."""
        if self.ok:
            return None
        err = self.error or {}
        return f"{err.get('kind', 'error')}: {err.get('message', 'evaluation failed')}"


class OutcomeRow(BaseModel):
    """One seed of one evaluation point: per question, correct or not, tokens and the answer."""

    point_index: int
    env: str
    beta: float | None = None
    seed: int
    correct: list[bool]
    tokens: list[int]
    answers: list[str | None]


class TraceRow(BaseModel):
    """A sampled trace as stored: what the controller did on one question for one seed."""

    env: str
    beta: float | None = None
    point_index: int
    seed: int
    question_index: int
    is_correct: bool
    cost: int
    answer: str | None = None
    steps: list[Any] = Field(default_factory=list)


class SpendTotals(BaseModel):
    """Spend summed over node executions (of one node, or of one candidate's lane nodes)."""

    llm_tokens: int = 0
    usd: float = 0.0
    seconds: float = 0.0
    calls: int = 0


class RunTotals(BaseModel):
    """A run's counts in a line: generations and candidates proposed, screened, fully evaluated, best fitness."""

    run_id: str
    generations: int = 0
    candidates: int = 0
    screened: int = 0
    fully_evaluated: int = 0
    best_fitness: float | None = None


class ArchiveRow(BaseModel):
    """A member of the program archive: a candidate on an island, in a niche (graph/archive.py)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    candidate_id: str
    island: int
    generation: int
    slot: int
    niche: str
    cost_band: int
    family: str
    stage: int
    fitness: float | None = None  # stage 2 only
    screen_fitness: float | None = None
    mean_tokens: float | None = None
    search_accuracy: float | None = None
    code_hash: str = ""
    evaluation_id: str | None = None
    screen_evaluation_id: str | None = None
    migrated_from: int | None = None  # a migrant: the island it was copied from

    @property
    def order(self) -> tuple[int, int]:
        """Its place in the run's reproducible order (generation, slot)."""
        return (self.generation, self.slot)

    @property
    def score(self) -> float | None:
        """Its fitness as far as the cascade took it: the full evaluation's, else the screen's."""
        return self.fitness if self.stage >= 2 else self.screen_fitness

    @property
    def band(self) -> str:
        """The cost band part of the niche (``c12``)."""
        return self.niche.partition("|")[0]
