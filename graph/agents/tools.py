"""The tools of the graph's LLM proposer: the registry's tools (``tools/registry.py``, the very ones the MCP
server serves) plus two run-scoped tools next to them, ``read_history`` and ``submit_controller``.

Everything is bound to the run's ToolContext, which hides every environment but the run's search ones and
carries the run's defaults (``RunScope``): an ``evaluate_controller`` call without seeds or betas gets the
run's quick protocol and is recorded under the run, never the stand-alone 100 seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autotts_graph.store import history
from autotts_graph.tools.context import RunScope, ToolContext
from autotts_graph.tools.langchain import langchain_tool
from autotts_graph.tools.registry import TOOL_SPECS, ToolSpec, thread_safe
from pydantic import BaseModel, Field

from .. import archive
from .roles import HistoryEntry

SUBMIT_TOOL = "submit_controller"
HISTORY_TOOL = "read_history"


class ReadHistoryInput(BaseModel):
    """Which part of the run's history to show."""

    candidate_id: str | None = Field(
        default=None, description="Show this candidate in full (source, curve, diagnosis, notes); omit for a "
                                  "one-line summary of every candidate of this run.")


class CandidateBrief(BaseModel):
    """One candidate of the run in a line: what it is, how it ended, where its evaluation is."""

    candidate_id: str
    round: int
    name: str
    origin: str
    parent: str | None
    status: str = Field(description="evaluated, check_failed, rejected or crashed.")
    evaluation_id: str | None = Field(description="The full evaluation, for get_evaluation and get_traces (None: "
                                                  "not fully evaluated).")
    screen_evaluation_id: str | None = Field(description="The cheap screening evaluation, when it had one.")
    search_accuracy: float | None = Field(description="Best mean accuracy over the beta grid, percent.")
    diagnosis: str | None = Field(description="The diagnostician's summary, when there is one.")
    notes: list[str] = Field(description="Check errors and critic reasons.")


class RunHistory(BaseModel):
    """The run's candidates so far, and one of them in full when asked for."""

    run_id: str
    candidates: list[CandidateBrief]
    detail: HistoryEntry | None = Field(default=None, description="The candidate asked for, in full.")


class SubmitInput(BaseModel):
    """The proposal that ends the turn."""

    source: str = Field(min_length=1, description="The complete controller source file, or SEARCH/REPLACE "
                                                  "blocks against the parent.")
    rationale: str = Field(default="", description="Why this design should do better, in a few sentences.")
    parent_id: str | None = Field(default=None, description="The candidate this builds on, if any.")


class SubmitReceipt(BaseModel):
    """What happens to a submission next."""

    received: bool
    message: str


def read_history(ctx: ToolContext, inp: ReadHistoryInput) -> RunHistory:
    """The run's candidates (search environments only), one in full when ``candidate_id`` is given."""
    if ctx.run is None:
        raise ValueError(f"{HISTORY_TOOL} works inside a discovery run only")
    run_id = ctx.run.run_id
    entries = archive.history_entries(ctx.store, run_id)
    rows = {c["candidate_id"]: c for c in history.list_candidates(ctx.store, run_id)}
    briefs = [CandidateBrief(candidate_id=e.candidate_id, round=e.round, name=e.name, origin=e.origin,
                             parent=e.parent, status=e.status, evaluation_id=rows[e.candidate_id]["evaluation_id"],
                             screen_evaluation_id=rows[e.candidate_id]["screen_evaluation_id"],
                             search_accuracy=e.search_accuracy,
                             diagnosis=e.diagnosis.summary if e.diagnosis else None, notes=e.notes)
              for e in entries]
    detail = None
    if inp.candidate_id is not None:
        detail = next((e for e in entries if e.candidate_id == inp.candidate_id), None)
        if detail is None:
            known = ", ".join(b.candidate_id for b in briefs) or "none yet"
            raise ValueError(f"unknown candidate {inp.candidate_id!r} in this run (known: {known})")
    return RunHistory(run_id=run_id, candidates=briefs, detail=detail)


def submit_controller(ctx: ToolContext, inp: SubmitInput) -> SubmitReceipt:
    """Accept a proposal; the proposer loop takes it from the call's arguments and checks it next."""
    return SubmitReceipt(received=True, message="submitted: the source is checked, reviewed and evaluated next")


RUN_TOOL_SPECS: list[ToolSpec] = [
    ToolSpec(
        HISTORY_TOOL,
        "Earlier candidates of this discovery run: one line each (status, best search accuracy, diagnosis, "
        "evaluation_id for get_evaluation and get_traces), or one candidate in full (source, curve, diagnosis) "
        "with candidate_id.",
        ReadHistoryInput, RunHistory, read_history),
    ToolSpec(
        SUBMIT_TOOL,
        "Submit your controller: the complete source, or SEARCH/REPLACE blocks against the parent; ends your "
        "turn.",
        SubmitInput, SubmitReceipt, submit_controller),
]
RUN_TOOL_NAMES: tuple[str, ...] = tuple(t.name for t in RUN_TOOL_SPECS)
# The tools through which a proposer reads the run's own history (strategy random shows it none) and those that
# show diagnoses or execution traces (--no-diagnosis: scores only; its prompt still lists the history's scores).
HISTORY_TOOLS: tuple[str, ...] = (HISTORY_TOOL, "query_store", "get_evaluation", "get_traces")
DIAGNOSIS_TOOLS: tuple[str, ...] = (HISTORY_TOOL, "query_store", "get_traces")


def hidden_tools(strategy: str, use_diagnosis: bool) -> tuple[str, ...]:
    """The tools a run's proposer does not get: what its strategy and ablations keep from it."""
    hidden = set(HISTORY_TOOLS) if strategy == "random" else set()
    if not use_diagnosis:
        hidden |= set(DIAGNOSIS_TOOLS)
    return tuple(sorted(hidden))


@dataclass
class ProposerToolbox:
    """The proposer's tools for one run: every registry tool plus the run-scoped ones, bound to ``ctx``.

    ``quick_betas`` and ``quick_seeds`` become the run's tool defaults (``ctx.run``) unless the context
    already carries a run scope. ``calls`` records the names of the tools called.
    """

    ctx: ToolContext | None
    run_id: str
    search_envs: list[str]
    quick_betas: list[float]
    quick_seeds: int
    trace_seeds: int = 1
    calls: list[str] = field(default_factory=list)
    hidden: tuple[str, ...] = ()  # tools left out (``hidden_tools``: the strategy's and the ablations')

    def __post_init__(self) -> None:
        if self.ctx is not None and self.ctx.run is None:
            self.ctx.run = RunScope(run_id=self.run_id, betas=self.quick_betas, seeds=self.quick_seeds,
                                    trace_seeds=self.trace_seeds)

    def specs(self) -> list[ToolSpec]:
        """The registry's tools, then the run-scoped ones (less the hidden ones)."""
        return [s for s in (*TOOL_SPECS, *RUN_TOOL_SPECS) if s.name not in self.hidden]

    def tools(self) -> list[Any]:
        """The tools as LangChain StructuredTools bound to the run's context."""
        if self.ctx is not None:
            thread_safe(self.ctx)
        return [langchain_tool(spec, self.ctx) for spec in self.specs()]  # type: ignore[arg-type]
