"""LangChain tools the LLM proposer calls, bound to one run's ToolContext (held-out environments hidden).

They wrap ``tools/`` (validate, evaluate) and the run's history in the store; every answer is plain text
built from search environments only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from autotts_graph.tools.context import ToolContext
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller
from autotts_graph.tools.validate import ValidateInput, validate_controller
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from .. import evidence

SUBMIT_TOOL = "submit_controller"


class ReadHistoryArgs(BaseModel):
    candidate_id: str | None = Field(None, description="Show this candidate in full (source, curve, diagnosis);"
                                                       " omit for a summary of all candidates.")


class GetTracesArgs(BaseModel):
    candidate_id: str = Field(description="An evaluated candidate.")
    env: str | None = Field(None, description="Only this search environment.")
    beta: float | None = Field(None, description="Only this beta.")
    failures_only: bool = Field(True, description="Only solves that ended on a wrong answer.")
    limit: int = Field(4, ge=1, le=10)


class SourceArgs(BaseModel):
    source: str = Field(description="The complete controller source.")


class SubmitArgs(BaseModel):
    source: str = Field(description="The complete controller source file.")
    rationale: str = Field("", description="Why this design should do better, in a few sentences.")
    parent_id: str | None = Field(None, description="The candidate this builds on, if any.")


@dataclass
class ProposerToolbox:
    """The proposer's tools for one run; ``submitted`` holds the last submit_controller arguments."""

    ctx: ToolContext
    run_id: str
    search_envs: list[str]
    quick_betas: list[float]
    quick_seeds: int
    submitted: SubmitArgs | None = None
    calls: list[str] = field(default_factory=list)

    def read_history(self, candidate_id: str | None = None) -> str:
        """Earlier candidates of this run: summary, or one candidate in full."""
        entries = evidence.history_entries(self.ctx.store, self.run_id)
        if candidate_id is None:
            if not entries:
                return "No candidates yet in this run."
            lines = []
            for e in entries:
                acc = f"{e.search_accuracy:.2f}%" if e.search_accuracy is not None else "-"
                diag = f" | diagnosis: {e.diagnosis.summary[:200]}" if e.diagnosis else ""
                notes = f" | {'; '.join(e.notes)[:300]}" if e.notes else ""
                lines.append(f"{e.candidate_id} round {e.round} {e.name or '?'} ({e.origin}, parent {e.parent}):"
                             f" {e.status}, best search accuracy {acc}{diag}{notes}")
            return "\n".join(lines)
        for e in entries:
            if e.candidate_id == candidate_id:
                return json.dumps(e.model_dump(mode="json"), indent=1)
        return f"unknown candidate {candidate_id!r}"

    def get_traces(self, candidate_id: str, env: str | None = None, beta: float | None = None,
                   failures_only: bool = True, limit: int = 4) -> str:
        """Sampled execution traces of an evaluated candidate on the search environments."""
        entries = {e.candidate_id: e for e in evidence.history_entries(self.ctx.store, self.run_id)}
        from autotts_graph.store import history

        cands = {c["candidate_id"]: c for c in history.list_candidates(self.ctx.store, self.run_id)}
        if candidate_id not in entries or not cands[candidate_id]["evaluation_id"]:
            return f"candidate {candidate_id!r} has no evaluation in this run"
        samples = evidence.trace_samples(self.ctx, cands[candidate_id]["evaluation_id"], limit=limit, env=env,
                                         beta=beta, failures_only=failures_only)
        if not samples:
            return "no traces match"
        return "\n".join(json.dumps(s.model_dump(mode="json")) for s in samples)

    def validate(self, source: str) -> str:
        """Static checks, schedule monotonicity and a smoke solve in the sandbox."""
        report = validate_controller(self.ctx, ValidateInput(source=source, env=self.search_envs[0]))
        return json.dumps(report.model_dump(mode="json", exclude={"sandbox_error"}), indent=1)

    def quick_evaluate(self, source: str) -> str:
        """A cheap low-seed beta sweep on the search environments."""
        summary = evaluate_controller(self.ctx, EvaluateInput(
            source=source, envs=self.search_envs, betas=self.quick_betas, seeds=self.quick_seeds, trace_seeds=0,
            label="quick", split="search", run_id=self.run_id))
        if not summary.ok:
            err = summary.error
            return f"evaluation failed: {err.kind.value}: {err.message}\n" + "\n".join(err.details[-8:])
        return (f"quick evaluation ({self.quick_seeds} seeds):\n"
                + evidence.format_curve(evidence.curve_from_points(summary.points)))

    def submit(self, source: str, rationale: str = "", parent_id: str | None = None) -> str:
        """Submit the final controller source (ends the turn)."""
        self.submitted = SubmitArgs(source=source, rationale=rationale, parent_id=parent_id)
        return "submitted"

    def tools(self) -> list[BaseTool]:
        """The tools as LangChain StructuredTools."""
        return [
            StructuredTool.from_function(self.read_history, name="read_history", args_schema=ReadHistoryArgs,
                                         description="Earlier candidates of this run (summary, or one in full)."),
            StructuredTool.from_function(self.get_traces, name="get_traces", args_schema=GetTracesArgs,
                                         description="Sampled execution traces of an evaluated candidate."),
            StructuredTool.from_function(self.validate, name="validate_controller", args_schema=SourceArgs,
                                         description="Check a source: contract, monotone schedule, smoke solve."),
            StructuredTool.from_function(self.quick_evaluate, name="quick_evaluate", args_schema=SourceArgs,
                                         description="Cheap low-seed beta sweep on the search environments."),
            StructuredTool.from_function(self.submit, name=SUBMIT_TOOL, args_schema=SubmitArgs,
                                         description="Submit the complete controller source; ends your turn."),
        ]
