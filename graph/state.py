"""The discovery graph's state: a pydantic model that the checkpointer saves after every node.

It holds the run configuration, where the run is (round, attempt and their bounds), the candidate in
flight with its check, verdict, evaluation and diagnosis, the best candidate so far, and the spend per node.
Nothing here is a live object (no store handle, no sandbox, no model client): those are the node
dependencies (``graph/deps.py``), rebuilt from ``config`` after a resume.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from .agents.roles import BaselinePoint, CriticVerdict, CurvePoint, Diagnosis

RoleKind = str  # "offline", "llm", or "module:Class" (any importable class implementing the role protocol)
DEFAULT_BETAS = [round(0.1 * i, 1) for i in range(11)]



def _all_baselines() -> list[str]:
    """Every baseline of ``tools/baselines.py``: the discovery fitness frontier is the same list."""
    from autotts_graph.tools.baselines import SWEEPS

    return list(SWEEPS)


DEFAULT_BASELINES = _all_baselines()


class RoleSettings(BaseModel):
    """How one agent role is played: offline heuristics, an LLM, or a class named by import path."""

    kind: RoleKind = "offline"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.2
    max_output_tokens: int = 8192
    timeout_s: float = 300.0
    usd_per_mtok_in: float = Field(0.0, ge=0, description="Price per million input tokens (for the $ budget).")
    usd_per_mtok_out: float = Field(0.0, ge=0, description="Price per million output tokens.")
    max_tool_steps: int = Field(12, ge=1, le=100, description="Proposer: tool calls before it must submit.")


class RunConfig(BaseModel):
    """Everything a run was started with; stored with the run and in every checkpoint."""

    run_id: str = ""
    search_envs: list[str] = Field(default_factory=list)
    heldout_envs: list[str] = Field(default_factory=list)
    betas: list[float] = Field(default_factory=lambda: list(DEFAULT_BETAS))
    seeds: int = Field(20, ge=1, le=1000)
    trace_seeds: int = Field(1, ge=0, le=10)
    quick_seeds: int = Field(4, ge=1, le=100, description="Seeds of the proposer's quick evaluation tool.")
    rounds: int = Field(3, ge=1, le=1000)
    max_attempts: int = Field(3, ge=1, le=50, description="Proposals per round (first try plus retries).")
    max_usd: float | None = Field(None, ge=0)
    max_llm_tokens: int | None = Field(None, ge=0)
    max_wall_s: float | None = Field(None, gt=0, description="Budget of summed node wall time, seconds.")
    selection: Literal["best_accuracy", "frontier"] = "best_accuracy"
    baselines: list[str] = Field(default_factory=lambda: list(DEFAULT_BASELINES))
    review: bool = False
    sandbox: str = "auto"
    workers: int | None = None
    eval_timeout_s: float | None = Field(None, gt=0, description="A fixed limit of one sandbox task (default: "
                                                                  "it scales with the task's work).")
    solve_timeout_s: float = Field(10.0, gt=0, description="Per-solve watchdog: a solve() running longer is "
                                                          "stopped and reported with its question and seed.")
    seed: int = 0
    proposer: RoleSettings = Field(default_factory=RoleSettings)
    critic: RoleSettings = Field(default_factory=RoleSettings)
    diagnostician: RoleSettings = Field(default_factory=RoleSettings)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one beta")
        if any(not 0.0 <= b <= 1.0 for b in v):
            raise ValueError("every beta must lie in [0, 1]")
        return sorted({float(b) for b in v})


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


class NodeSpend(BaseModel):
    """What one node has consumed over the run."""

    llm_tokens: int = 0
    usd: float = 0.0
    seconds: float = 0.0
    calls: int = 0


class HeldoutResult(BaseModel):
    """The one held-out evaluation of the selected candidate."""

    evaluation_id: str
    ok: bool
    error: str | None = None
    curve: list[CurvePoint] = Field(default_factory=list)


Status = Literal["new", "running", "done", "failed", "no_candidate"]


class DiscoveryState(BaseModel):
    """The whole state of a discovery run (see the module docstring)."""

    config: RunConfig = Field(default_factory=RunConfig)
    status: Status = "new"
    round: int = 0
    attempt: int = 0  # failed proposals in the current round so far (bounded by config.max_attempts)
    node: str = ""  # the last node that ran
    candidate: Candidate | None = None
    check: CheckResult | None = None
    verdict: CriticVerdict | None = None
    review: ReviewDecision | None = None
    evaluation: EvalResult | None = None
    diagnosis: Diagnosis | None = None
    feedback: list[str] = Field(default_factory=list)  # errors or reasons for the proposer's next attempt
    outcome: str = ""  # what happened to the candidate in flight: evaluated, check_failed, rejected, crashed
    best: Best | None = None
    baselines: list[BaselinePoint] = Field(default_factory=list)  # search environments only
    baseline_evaluations: dict[str, str] = Field(default_factory=dict)  # "method@split" -> evaluation id
    evaluated: list[str] = Field(default_factory=list)  # candidate ids with a search evaluation
    spend: dict[str, NodeSpend] = Field(default_factory=dict)
    stop_reason: str | None = None
    error: str | None = None
    selected: str | None = None
    heldout: HeldoutResult | None = None

    def total_spend(self) -> NodeSpend:
        """Spend summed over nodes."""
        total = NodeSpend()
        for s in self.spend.values():
            total.llm_tokens += s.llm_tokens
            total.usd += s.usd
            total.seconds += s.seconds
            total.calls += s.calls
        return total

    def budget_exhausted(self) -> str | None:
        """Why the graph-level budget stops the run now, or None."""
        cfg, total = self.config, self.total_spend()
        if cfg.max_usd is not None and total.usd >= cfg.max_usd:
            return f"LLM spend ${total.usd:.4f} reached the limit ${cfg.max_usd:g}"
        if cfg.max_llm_tokens is not None and total.llm_tokens >= cfg.max_llm_tokens:
            return f"LLM tokens {total.llm_tokens} reached the limit {cfg.max_llm_tokens}"
        if cfg.max_wall_s is not None and total.seconds >= cfg.max_wall_s:
            return f"wall time {total.seconds:.0f} s reached the limit {cfg.max_wall_s:g} s"
        return None
