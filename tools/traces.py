"""Tools: read back an evaluation and its sampled traces, with held-out filtering and size caps.

An evaluation is visible to a caller only when every environment it touched is visible to that caller
and it was not recorded as a held-out evaluation; otherwise it is reported exactly like an unknown id,
so its existence does not leak either.
"""

from __future__ import annotations

import json
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.db import StoreError
from autotts_graph.store.rows import EvaluationRow, OutcomeRow, TraceRow
from pydantic import BaseModel, Field

from .context import ToolContext
from .environments import ENV_NAME_CHARS

# The one set of trace limits, for every reader: the MCP tool, the graph's agents and the diagnose node.
MAX_PAGE = 50
# Whole traces up to here: CMC and Parallel-Probe run 20-403 steps (at most 44k characters) on the shipped
# replay data, and the diagnostician's statistics read the whole decision sequence.
MAX_STEPS_PER_TRACE = 500
MAX_TRACE_CHARS = 50_000  # a longer trace (JSON) keeps fewer steps, still head and tail
MAX_STEP_CHARS = 2_000
# A page fits what an agent may read in one tool answer (tools/langchain.py); follow next_offset for more.
MAX_PAGE_CHARS = 56_000
OMITTED_EVENT = "omitted"
EVALUATION_ID_CHARS = 100  # ids are 'ev-' and ten hex digits


class GetEvaluationInput(BaseModel):
    """Which evaluation to show."""

    evaluation_id: str = Field(
        max_length=EVALUATION_ID_CHARS,
        description="The id returned by evaluate_controller or run_baseline, e.g. 'ev-3f2a9c1b0d'.")
    per_question: bool = Field(
        default=False, description="Also return, for every (env, beta), each question's accuracy over seeds "
        "and mean tokens (to find the questions a controller gets wrong).")


class EvaluationPoint(BaseModel):
    """Accuracy and cost of one (environment, configuration) of an evaluation."""

    point_index: int = Field(description="Index of the configuration (beta) in the evaluation's sweep.")
    env: str
    beta: float | None
    config: dict[str, Any]
    description: str
    accuracy: float = Field(description="Percent of (seed, question) pairs answered right, 2 decimals.")
    avg_cost: float = Field(description="Mean tokens per question.")
    std_acc: float = Field(description="Standard deviation of the per-seed accuracy, percent.")
    params: dict[str, Any] = Field(description="The controller's hyper-parameters at this beta.")
    question_accuracy: list[float] | None = Field(
        default=None, description="Per question (in question order): fraction of seeds answered right.")
    question_tokens: list[float] | None = Field(
        default=None, description="Per question (in question order): mean tokens over seeds.")


class EvaluationDetail(BaseModel):
    """An evaluation's metadata and per-(env, beta) results."""

    evaluation_id: str
    status: str = Field(description="'ok' or 'error'.")
    error: dict[str, Any] | None = Field(default=None, description="Why it failed (kind, message, details).")
    label: str
    code_hash: str
    run_id: str | None = None
    candidate_id: str | None = None
    protocol: dict[str, Any] = Field(description="Seeds, trace seeds, envs, configs, runtime, backend.")
    elapsed_s: float
    created_at: str
    points: list[EvaluationPoint]


class GetTracesInput(BaseModel):
    """Filters and page of the sampled traces of one evaluation."""

    evaluation_id: str = Field(max_length=EVALUATION_ID_CHARS, description="The evaluation to read traces from.")
    env: str | None = Field(default=None, max_length=ENV_NAME_CHARS,
                            description="Only this environment, e.g. 'Qwen3-4B/aime24'.")
    beta: float | None = Field(default=None, ge=0.0, le=1.0, description="Only this beta.")
    question_index: int | None = Field(default=None, ge=0, description="Only this question (0-based).")
    failures_only: bool = Field(default=False, description="Only questions answered wrongly.")
    offset: int = Field(default=0, ge=0, description="Skip this many matching traces (pagination).")
    limit: int = Field(default=10, ge=1, le=MAX_PAGE, description=f"Page size, at most {MAX_PAGE}.")


class TraceRecord(BaseModel):
    """What the controller did on one question for one seed."""

    env: str
    beta: float | None
    point_index: int
    seed: int
    question_index: int
    is_correct: bool
    cost: int = Field(description="Tokens spent on the question.")
    answer: str | None
    steps: list[dict[str, Any]] = Field(description="Steps: event, goal, input, output, state, decision. A very "
                                        "long trace has one 'omitted' step in place of its middle (output: how "
                                        "many steps of which events); the finish step is always kept.")
    steps_total: int = Field(description="Steps recorded (long traces are shortened: see steps_omitted).")
    steps_omitted: int = Field(default=0, description="Steps left out of the middle of a very long trace.")


class TracePage(BaseModel):
    """One page of traces; fetch the next with offset=next_offset."""

    evaluation_id: str
    total: int = Field(description="Traces matching the filters.")
    offset: int
    traces: list[TraceRecord]
    next_offset: int | None = Field(description="Offset of the next page, None when this is the last.")
    truncated: bool = Field(description="True when the page was cut short or steps shortened (size cap).")


def evaluation_visible(ctx: ToolContext, evaluation: EvaluationRow) -> bool:
    """May this caller see the evaluation (all its environments visible, not a held-out evaluation)?"""
    if ctx.expose_heldout:
        return True
    if evaluation.split == "heldout":
        return False
    visible = {e.name for e in ctx.environments()}
    envs = set(evaluation.protocol.get("envs") or [])
    envs |= {p.env for p in evaluation.points}
    return envs <= visible


def load_visible_evaluation(ctx: ToolContext, evaluation_id: str) -> EvaluationRow:
    """The evaluation from the history, or StoreError 'unknown evaluation' when hidden or missing."""
    try:
        evaluation = history.get_evaluation(ctx.store, evaluation_id)
    except StoreError:
        raise StoreError(f"unknown evaluation {evaluation_id!r}") from None
    if not evaluation_visible(ctx, evaluation):
        raise StoreError(f"unknown evaluation {evaluation_id!r}")
    return evaluation


def get_evaluation(ctx: ToolContext, inp: GetEvaluationInput) -> EvaluationDetail:
    """An evaluation's metadata and results per (environment, beta)."""
    ev = load_visible_evaluation(ctx, inp.evaluation_id)
    per_q: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    if inp.per_question and ev.points:
        rows: dict[tuple[str, int], list[OutcomeRow]] = {}
        for o in history.get_outcomes(ctx.store, inp.evaluation_id):
            rows.setdefault((o.env, o.point_index), []).append(o)
        for key, seeds in rows.items():
            n = len(seeds)
            acc = [sum(bool(s.correct[q]) for s in seeds) / n for q in range(len(seeds[0].correct))]
            tok = [sum(s.tokens[q] for s in seeds) / n for q in range(len(seeds[0].tokens))]
            per_q[key] = (acc, tok)
    points = []
    for p in ev.points:
        acc_tok = per_q.get((p.env, p.point_index))
        points.append(EvaluationPoint(**p.model_dump(), question_accuracy=acc_tok[0] if acc_tok else None,
                                      question_tokens=acc_tok[1] if acc_tok else None))
    return EvaluationDetail(evaluation_id=ev.evaluation_id, status=ev.status, error=ev.error,
                            label=ev.label or "", code_hash=ev.code_hash or "", run_id=ev.run_id,
                            candidate_id=ev.candidate_id, protocol=ev.protocol,
                            elapsed_s=float(ev.elapsed_s or 0.0), created_at=ev.created_at,
                            points=points)


def _cap_step(step: Any) -> dict[str, Any]:
    """A trace step whose JSON stays under MAX_STEP_CHARS (oversized fields replaced by a short prefix)."""
    if not isinstance(step, dict):
        step = {"event": "?", "output": step}
    text = json.dumps(step, default=str)
    if len(text) <= MAX_STEP_CHARS:
        return step
    capped: dict[str, Any] = {}
    budget = MAX_STEP_CHARS // max(1, len(step))
    for key, value in step.items():
        body = json.dumps(value, default=str)
        capped[key] = value if len(body) <= budget else body[:budget] + f"... [{len(body)} chars]"
    return capped


def _step_size(step: dict[str, Any]) -> int:
    return len(json.dumps(step, default=str, separators=(",", ":")))


def _omitted_marker(dropped: list[dict[str, Any]]) -> dict[str, Any]:
    """One step standing for a run of left-out steps: how many, and of which events (markers of an earlier
    shortening count with their own totals, so shortening twice reports the original numbers)."""
    count = 0
    events: dict[str, int] = {}
    for s in dropped:
        if s.get("event") == OMITTED_EVENT and isinstance(s.get("output"), dict):
            count += int(s["output"].get("steps", 0))
            for event, n in (s["output"].get("events") or {}).items():
                events[event] = events.get(event, 0) + int(n)
        else:
            count += 1
            event = str(s.get("event", "?"))
            events[event] = events.get(event, 0) + 1
    return {"event": OMITTED_EVENT, "goal": "", "input": None, "output": {"steps": count, "events": events},
            "state": None, "decision": None}


def _keep(steps: list[dict[str, Any]], n: int) -> list[int]:
    """Indices kept when ``n`` steps fit: the first three quarters from the head, the rest from the tail
    (the tail holds the finish step), plus the last ``finish`` step wherever it is."""
    tail = max(1, n // 4)
    kept = set(range(min(len(steps), n - tail))) | set(range(max(0, len(steps) - tail), len(steps)))
    finishes = [i for i, s in enumerate(steps) if s.get("event") == "finish"]
    if finishes:
        kept.add(finishes[-1])
    return sorted(kept)


def cap_steps(steps: list[Any], max_steps: int = MAX_STEPS_PER_TRACE,
              max_chars: int = MAX_TRACE_CHARS) -> tuple[list[dict[str, Any]], int, bool]:
    """Shorten a trace the one way every reader uses: (steps, omitted, shortened).

    Oversized steps are cut to MAX_STEP_CHARS; a trace of more than ``max_steps`` steps, or longer than
    ``max_chars`` characters of JSON, keeps its head and its tail (where the ``finish`` step is, which is
    kept in any case) and one ``omitted`` step in place of the middle, counting the steps and events left
    out. ``omitted`` is the number of the given steps left out.
    """
    if max_steps < 2:
        raise ValueError(f"max_steps must be at least 2 (a start and a finish step), got {max_steps}")
    capped = [_cap_step(s) for s in steps]
    changed = any(c is not s for c, s in zip(capped, steps, strict=True))
    sizes = [_step_size(s) for s in capped]
    n = min(max_steps, len(capped))
    if n == len(capped) and sum(sizes) + len(sizes) <= max_chars:
        return capped, 0, changed
    while True:
        kept = _keep(capped, n)
        if n <= 2 or sum(sizes[i] + 1 for i in kept) + 200 <= max_chars:
            break
        n = max(2, int(n * 0.8))
    out: list[dict[str, Any]] = []
    prev = -1
    for i in [*kept, len(capped)]:
        if i - prev > 1:
            out.append(_omitted_marker(capped[prev + 1:i]))
        if i < len(capped):
            out.append(capped[i])
        prev = i
    return out, len(capped) - len(kept), True


def trace_record(row: TraceRow) -> tuple[TraceRecord, bool]:
    """A stored trace as every reader gets it (shortened by ``cap_steps``), and whether it was shortened."""
    steps, omitted, shortened = cap_steps(row.steps)
    return TraceRecord(env=row.env, beta=row.beta, point_index=row.point_index, seed=row.seed,
                       question_index=row.question_index, is_correct=bool(row.is_correct), cost=int(row.cost),
                       answer=row.answer, steps=steps, steps_total=len(row.steps),
                       steps_omitted=omitted), shortened


def get_traces(ctx: ToolContext, inp: GetTracesInput) -> TracePage:
    """A filtered, paginated, size-capped page of the sampled traces of one evaluation."""
    load_visible_evaluation(ctx, inp.evaluation_id)
    if inp.env is not None:
        ctx.require_visible([inp.env])
    rows, total = history.get_traces(ctx.store, inp.evaluation_id, env=inp.env, beta=inp.beta,
                                     question_index=inp.question_index, failures_only=inp.failures_only,
                                     offset=inp.offset, limit=inp.limit)
    traces: list[TraceRecord] = []
    used = 0
    truncated = False
    for r in rows:
        rec, shortened = trace_record(r)
        size = len(rec.model_dump_json())
        truncated = truncated or shortened
        if traces and used + size > MAX_PAGE_CHARS:
            truncated = True
            break
        traces.append(rec)
        used += size
    end = inp.offset + len(traces)
    return TracePage(evaluation_id=inp.evaluation_id, total=total, offset=inp.offset, traces=traces,
                     next_offset=end if end < total else None, truncated=truncated)
