"""The discovery graph's state: pydantic models that the checkpointer saves after every node.

``DiscoveryState`` is the run: configuration, the generation in progress, the lanes ``plan`` sends out and
their results, per-generation summaries, the best candidate so far, the archive's size and the spend per
node. ``LaneState`` is one candidate slot of a generation (its own subgraph and checkpoints): the candidate
with its check, verdict, screen, evaluation and diagnosis. Nothing here is a live object (no store handle,
no sandbox, no model client): those are the node dependencies (``graph/deps.py``), rebuilt after a resume.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from autotts_graph.store.rows import SpendTotals
from pydantic import BaseModel, Field

from .agents.roles import BaselinePoint, CriticVerdict, CurvePoint, Diagnosis

# The configuration lives in configuration.py; it is imported here under its old address too, because checkpoints
# written before the move name their classes by it.
from .configuration import RoleSettings, RunConfig  # noqa: F401

# The label prefix of the strict-audit re-evaluation of the candidate about to be selected (graph/nodes/select.py).
STRICT_LABEL = "strict audit "


class Candidate(BaseModel):
    """The controller in flight."""

    candidate_id: str
    round: int
    attempt: int
    source: str
    code_hash: str
    name: str = ""
    parent: str | None = None
    origin: str = ""
    rationale: str = ""
    genome: dict[str, Any] | None = None


class CheckResult(BaseModel):
    """Static and sandbox validation of the candidate."""

    ok: bool
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    schedule: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ReviewDecision(BaseModel):
    """A human's decision on a candidate before its evaluation (``--review``)."""

    action: Literal["approve", "edit", "reject"]
    source: str | None = None  # the edited source, for "edit"
    reason: str = ""


class EvalResult(BaseModel):
    """The search-environment evaluation of the candidate."""

    evaluation_id: str
    ok: bool
    error_kind: str | None = None
    error: str | None = None
    curve: list[CurvePoint] = Field(default_factory=list)
    search_accuracy: float | None = None  # best mean-over-envs accuracy over the beta grid
    score: float | None = None  # by the run's selection criterion


class Best(BaseModel):
    """The best candidate so far by the selection criterion (search environments only)."""

    candidate_id: str
    name: str = ""
    round: int
    score: float
    search_accuracy: float | None = None
    evaluation_id: str


class NodeSpend(SpendTotals):
    """What one node has consumed over the run: the ledger's spend row shape, as a type of the graph's state (the
    checkpoint serializer restores the state's own types only)."""


class Finalist(BaseModel):
    """One of the top candidates re-evaluated before the selection (on the search set, fresh seeds, strictly
    audited)."""

    candidate_id: str
    name: str = ""
    rank: int  # by the point estimate of fitness on the candidate's own evaluation (0: the best)
    fitness: float  # that point estimate
    fresh_fitness: float | None = None  # on the fresh seeds (None: the re-evaluation failed or was flagged)
    lower_bound: float | None = None  # its bootstrap lower bound over questions: what the selection ranks by
    audit: Literal["passed", "flagged"] = "passed"
    evaluation_id: str = ""  # the re-evaluation


class SelectionRecord(BaseModel):
    """How the selection chose: its finalists, the pick by the point estimate, the pick it made and why they
    differ (the run report's "selection" section)."""

    finalists: list[Finalist] = Field(default_factory=list)
    first_seed: int = 0  # the fresh seeds are first_seed .. first_seed + seeds - 1
    point_pick: str | None = None  # the best point estimate
    selected: str | None = None
    changed: bool = False  # the selected candidate is not the point estimate's pick
    why: str = ""


class HeldoutResult(BaseModel):
    """The one held-out evaluation of the selected candidate."""

    evaluation_id: str
    ok: bool
    error: str | None = None
    curve: list[CurvePoint] = Field(default_factory=list)


Status = Literal["new", "running", "done", "failed", "no_candidate"]


def _sum_spend(old: dict[str, NodeSpend] | None, new: dict[str, NodeSpend] | None) -> dict[str, NodeSpend]:
    """Reducer of ``spend``: every node (and every parallel lane) reports what it consumed; they add up."""
    out = {k: NodeSpend.model_validate(v) for k, v in (old or {}).items()}
    for k, v in (new or {}).items():
        v = NodeSpend.model_validate(v)
        prev = out.get(k, NodeSpend())
        out[k] = NodeSpend(llm_tokens=prev.llm_tokens + v.llm_tokens, usd=prev.usd + v.usd,
                           seconds=prev.seconds + v.seconds, calls=prev.calls + v.calls)
    return out


def _merge(old: dict | None, new: dict | None) -> dict:
    """Reducer of keyed results written by parallel lanes (a key written again replaces its value)."""
    return {**(old or {}), **(new or {})}


def total_of(spend: dict[str, SpendTotals]) -> NodeSpend:
    """Spend summed over nodes."""
    total = NodeSpend()
    for s in spend.values():
        total.llm_tokens += s.llm_tokens
        total.usd += s.usd
        total.seconds += s.seconds
        total.calls += s.calls
    return total


def budget_reason(cfg: RunConfig, total: NodeSpend, wall_s: float) -> str | None:
    """Why the run's budget is used up (LLM $, tokens, wall-clock), or None."""
    if cfg.max_usd is not None and total.usd >= cfg.max_usd:
        return f"LLM spend ${total.usd:.4f} reached the limit ${cfg.max_usd:g}"
    if cfg.max_llm_tokens is not None and total.llm_tokens >= cfg.max_llm_tokens:
        return f"LLM tokens {total.llm_tokens} reached the limit {cfg.max_llm_tokens}"
    if cfg.max_wall_s is not None and wall_s >= cfg.max_wall_s:
        return f"wall time {wall_s:.0f} s reached the limit {cfg.max_wall_s:g} s"
    return None


class LaneState(BaseModel):
    """One candidate slot of a generation: the state of the lane subgraph
    (propose → check → critique → [review] → screen → [evaluate] → diagnose, with bounded retries).

    A lane is started by a ``Send`` from ``plan`` with its slot, island, the archive's choice of parent and
    inspirations (ids: the proposer reads them from the store), and the budget used before the generation.
    """

    config: RunConfig = Field(default_factory=RunConfig)
    generation: int = 0
    slot: int = 0
    island: int = 0
    parent_id: str | None = None
    inspiration_ids: list[str] = Field(default_factory=list)
    spent_before: NodeSpend = Field(default_factory=NodeSpend)  # the run's spend when the generation started
    wall_before: float = 0.0  # the run's wall time when the generation started
    attempt: int = 0  # failed proposals of this slot so far (bounded by config.max_attempts)
    # Where the last lane node's Command sent the lane; written by the node wrapper only (nodes.common.wrap), so
    # that an edit of a paused lane's state (update_state, LangGraph Studio) keeps its next node.
    route: str = ""
    node: str = ""
    candidate: Candidate | None = None
    check: CheckResult | None = None
    verdict: CriticVerdict | None = None
    review: ReviewDecision | None = None
    screen: EvalResult | None = None  # stage 1 of the cascade
    gate: str = ""  # why the screen was (or was not) promoted
    screens: int = 0  # screens run by this slot (a crashed screen is retried with a new proposal)
    evaluation: EvalResult | None = None  # stage 2 (the full β grid x seeds)
    diagnosis: Diagnosis | None = None
    feedback: list[str] = Field(default_factory=list)  # errors or reasons for the proposer's next attempt
    outcome: str = ""  # screened, evaluated, check_failed, rejected, crashed
    stop_reason: str | None = None  # the budget ran out before this slot's proposal
    spend: Annotated[dict[str, NodeSpend], _sum_spend] = Field(default_factory=dict)


class LaneResult(BaseModel):
    """What a finished lane hands to the fan-in (``record``)."""

    generation: int
    slot: int
    island: int = 0
    candidate_id: str | None = None
    name: str = ""
    outcome: str = ""
    stage: int = 0  # 0 = not evaluated, 1 = screened only, 2 = fully evaluated
    screen_fitness: float | None = None
    fitness: float | None = None
    search_accuracy: float | None = None
    evaluation_id: str | None = None
    screen_evaluation_id: str | None = None
    screens: int = 0
    seconds: float = 0.0  # the lane's own node time (its share of the generation's wall time)
    stop_reason: str | None = None


class GenerationSummary(BaseModel):
    """One finished generation, for the live view, the report and the benchmark."""

    generation: int
    candidates: int = 0  # lanes that produced a candidate
    screened: int = 0
    promoted: int = 0  # fully evaluated
    failed: int = 0  # check failures, rejections, crashes, audit flags (after the slot's retries)
    best_fitness: float | None = None  # the run's best (stage 2) after this generation
    generation_best: float | None = None  # the best stage-2 fitness found in this generation
    archive_members: int = 0
    archive_cells: int = 0
    wall_s: float = 0.0


class DiscoveryState(BaseModel):
    """The whole state of a discovery run (see the module docstring)."""

    config: RunConfig = Field(default_factory=RunConfig)
    status: Status = "new"
    round: int = 0  # generations finished so far (the next generation's index)
    node: str = ""  # the last node that ran
    pending: list[LaneState] = Field(default_factory=list)  # the lanes ``plan`` sends out
    lanes: Annotated[dict[str, LaneResult], _merge] = Field(default_factory=dict)  # "generation:slot" -> result
    generations: list[GenerationSummary] = Field(default_factory=list)
    best: Best | None = None
    baselines: list[BaselinePoint] = Field(default_factory=list)  # search environments only
    baseline_evaluations: dict[str, str] = Field(default_factory=dict)  # "method@split" -> evaluation id
    evaluated: list[str] = Field(default_factory=list)  # candidate ids fully evaluated (stage 2) without error
    screened: int = 0  # candidates screened (stage 1), crashed screens included
    archive_members: int = 0
    archive_cells: int = 0
    spend: Annotated[dict[str, NodeSpend], _sum_spend] = Field(default_factory=dict)
    wall_s: float = 0.0  # wall-clock time of the run so far (baselines plus generations)
    stop_reason: str | None = None
    error: str | None = None
    selected: str | None = None
    heldout: HeldoutResult | None = None

    @property
    def generation(self) -> int:
        """The generation in progress (or next)."""
        return self.round

    def total_spend(self) -> NodeSpend:
        """Spend summed over nodes."""
        return total_of(self.spend)

    def budget_exhausted(self) -> str | None:
        """Why the graph-level budget stops the run now, or None."""
        return budget_reason(self.config, self.total_spend(), self.wall_s)
