"""What agents get to see, built from the store: curves, per-question outcomes and trace samples, and the
evaluation points the report compares with CMC.

Everything here reads evaluations through ``store/history.py`` and the caller's ``ToolContext`` (which hides
held-out environments). Scores (fitness, frontiers, dominance) are computed by ``scoring.py``; a run's
history as agents see it is ``archive.history_entries``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.rows import OutcomeRow
from autotts_graph.tools.context import ToolContext

from . import scoring
from .agents.roles import BaselinePoint, CurvePoint, QuestionOutcome, TraceSample


def curve_from_points(points: list[Any]) -> list[CurvePoint]:
    """Curve points from evaluation points (the history's rows or a tool's ``PointSummary``)."""
    return [CurvePoint(env=p.env, beta=p.beta, accuracy=float(p.accuracy), avg_cost=float(p.avg_cost))
            for p in points]


def mean_curve(curve: list[CurvePoint]) -> list[tuple[float, float, float]]:
    """``scoring.mean_curve`` without the β-less rows: (β, mean accuracy, mean tokens) per β measured on every
    environment (the archive's cost bands are computed from it)."""
    return [r for r in scoring.mean_curve(curve) if r[0] is not None]


def question_outcomes(ctx: ToolContext, evaluation_id: str) -> list[QuestionOutcome]:
    """Per (env, beta, question) accuracy over seeds, mean tokens and modal answer (visible envs only)."""
    from autotts_graph.store.trajectories import describe_environment

    rows = history.get_outcomes(ctx.store, evaluation_id)
    visible = {e.name for e in ctx.environments()}
    gold: dict[str, list[str]] = {}
    agg: dict[tuple[str, float | None, int], list[tuple[bool, int, str | None]]] = {}
    for r in rows:
        if r.env not in visible:
            continue
        if r.env not in gold:
            gold[r.env] = [q.gold_answer or "" for q in describe_environment(ctx.store, r.env).questions]
        for qi, (ok, tok, ans) in enumerate(zip(r.correct, r.tokens, r.answers, strict=True)):
            agg.setdefault((r.env, r.beta, qi), []).append((bool(ok), int(tok), ans))
    out = []
    for (env, beta, qi), cases in sorted(agg.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0, kv[0][2])):
        answers = Counter(a for _, _, a in cases if a is not None)
        out.append(QuestionOutcome(env=env, beta=beta, question_index=qi,
                                   gold=gold[env][qi] if qi < len(gold[env]) else "",
                                   accuracy=sum(ok for ok, _, _ in cases) / len(cases),
                                   mean_tokens=sum(t for _, t, _ in cases) / len(cases),
                                   modal_answer=answers.most_common(1)[0][0] if answers else None))
    return out


def trace_samples(ctx: ToolContext, evaluation_id: str, *, limit: int = 12, env: str | None = None,
                  beta: float | None = None, failures_only: bool = True) -> list[TraceSample]:
    """Sampled traces of an evaluation (failed solves first, spread over environments and betas), read
    through the registry's ``get_traces`` tool: the same visibility, paging and shortening every agent gets
    (whole traces up to the registry's limits, else head and tail with the finish step). Empty when the
    evaluation or ``env`` is not visible to ``ctx``."""
    from autotts_graph.store.db import StoreError
    from autotts_graph.tools.traces import MAX_PAGE, GetTracesInput, TraceRecord, get_traces

    def read(want: int, failures: bool) -> list[TraceRecord]:
        rows: list[TraceRecord] = []
        offset: int | None = 0
        while offset is not None and len(rows) < want:
            page = get_traces(ctx, GetTracesInput(evaluation_id=evaluation_id, env=env, beta=beta,
                                                  failures_only=failures, offset=offset,
                                                  limit=min(MAX_PAGE, want - len(rows))))
            rows += page.traces
            offset = page.next_offset
        return rows

    want = limit * 4  # a wider pool than asked for, so the sample can spread over (env, beta)
    try:
        pool = read(want, failures_only)
        if failures_only and len(pool) < limit:
            pool += [t for t in read(want, False) if t.is_correct]
    except StoreError:
        return []  # hidden or unknown: reported like no traces, so nothing about it leaks
    buckets: dict[tuple, list[TraceRecord]] = {}
    for t in pool:
        buckets.setdefault((t.env, t.beta), []).append(t)
    picked: list[TraceRecord] = []
    while len(picked) < limit and any(buckets.values()):
        for key in list(buckets):
            if buckets[key] and len(picked) < limit:
                picked.append(buckets[key].pop(0))
    return [TraceSample(env=t.env, beta=t.beta, seed=t.seed, question_index=t.question_index,
                        is_correct=t.is_correct, cost=t.cost, answer=t.answer, steps=t.steps) for t in picked]


def format_curve(curve: list[CurvePoint]) -> str:
    """A compact text table of a curve: one line per (env, beta)."""
    return "\n".join(f"  {p.env} β={p.beta}: {p.accuracy:.2f}% at {p.avg_cost:,.0f} tokens" for p in curve)


def format_baselines(baselines: list[BaselinePoint]) -> str:
    """A compact text table of baseline points."""
    return "\n".join(f"  {b.env} {b.label}: {b.accuracy:.2f}% at {b.avg_cost:,.0f} tokens" for b in baselines)


def points_with_outcomes(store: Any, evaluation_id: str | None) -> list[dict[str, Any]]:
    """An evaluation's points with their per-question outcomes attached (``correct`` and ``tokens``: seeds x
    questions rows), as ``scoring.dominance_table`` takes them. Empty for a missing or failed evaluation."""
    if not evaluation_id:
        return []
    try:
        ev = history.get_evaluation(store, evaluation_id)
    except Exception:  # noqa: BLE001 - an id from an edited store
        return []
    if not ev.ok:
        return []
    rows: dict[tuple[int, str], list[OutcomeRow]] = {}
    for o in history.get_outcomes(store, evaluation_id):
        rows.setdefault((o.point_index, o.env), []).append(o)
    out = []
    for p in ev.points:
        seeds = rows.get((p.point_index, p.env), [])
        out.append({**p.model_dump(), "correct": [[int(x) for x in o.correct] for o in seeds],
                    "tokens": [list(o.tokens) for o in seeds]})
    return out


def curve_outcomes(store: Any, evaluation_id: str | None) -> list[scoring.Outcomes]:
    """An evaluation's points as ``scoring.Outcomes`` (per-question accuracy and tokens over its seeds): what the
    fitness judges dominance with."""
    return [scoring.outcomes_from_point(p) for p in points_with_outcomes(store, evaluation_id)]


def baseline_outcomes(store: Any, run_id: str) -> list[scoring.Outcomes]:
    """The run's baseline configurations on the search environments with their per-question outcomes (one
    ``Outcomes`` per configuration and environment, labelled as the report labels them, with its β)."""
    from autotts_graph.tools.baselines import point_label

    report = history.get_run(store, run_id).report or {}
    out: list[scoring.Outcomes] = []
    for key, evaluation_id in sorted((report.get("baseline_evaluations") or {}).items()):
        method, _, split = key.partition("@")
        if split != "search":
            continue
        for p in points_with_outcomes(store, evaluation_id):
            o = scoring.outcomes_from_point(p)
            o.method, o.label = method, point_label(method, p.get("config") or {})
            out.append(o)
    return out


def cmc_verdicts(store: Any, evaluation_id: str | None, cmc_evaluation_id: str | None) -> list[scoring.Verdict]:
    """Per β and environment (and the mean over environments): does the controller of ``evaluation_id``
    dominate CMC at the same β, is it dominated, or neither, with the bootstrap CI of the accuracy difference."""
    return scoring.dominance_table(points_with_outcomes(store, evaluation_id),
                                   points_with_outcomes(store, cmc_evaluation_id))
