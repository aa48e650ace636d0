"""What agents get to see, built from the store: history entries, curves, outcomes and trace samples.

Everything here reads search-split evaluations of one run through ``store/history.py`` and the caller's
``ToolContext`` (which hides held-out environments), and computes the selection scores.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from autotts_graph.store import history
from autotts_graph.tools.context import ToolContext

from . import scoring
from .agents.roles import BaselinePoint, CurvePoint, Diagnosis, HistoryEntry, QuestionOutcome, TraceSample

STATUS_FOR_AGENTS = {"evaluated": "evaluated", "check_failed": "check_failed", "rejected": "rejected",
                     "crashed": "crashed"}


def curve_from_points(points: list[Any]) -> list[CurvePoint]:
    """Curve points from evaluation point dicts (``get_evaluation``) or ``PointSummary`` objects."""
    out = []
    for p in points:
        d = p if isinstance(p, dict) else p.model_dump()
        out.append(CurvePoint(env=d["env"], beta=d.get("beta"), accuracy=float(d["accuracy"]),
                              avg_cost=float(d["avg_cost"])))
    return out


def mean_curve(curve: list[CurvePoint]) -> list[tuple[float, float, float]]:
    """(beta, mean accuracy over envs, mean tokens over envs) per beta, for betas measured on every env."""
    return [r for r in scoring.mean_curve(curve) if r[0] is not None]


def search_accuracy(curve: list[CurvePoint]) -> float | None:
    """The best mean-over-environments accuracy over the beta grid."""
    return scoring.search_accuracy(curve)


def frontier_score(curve: list[CurvePoint], baselines: list[BaselinePoint]) -> float | None:
    """Area under the accuracy-vs-log-tokens frontier, averaged over environments (``scoring.frontier_area``)."""
    return scoring.frontier_area(curve, baselines)


def fitness(curve: list[CurvePoint], baselines: list[BaselinePoint]) -> float:
    """The search fitness: mean over β and environments of the accuracy margin over the whole baseline
    frontier (CMC at every β included) at equal cost (``scoring.fitness``)."""
    return scoring.fitness(curve, baselines)


CRITERIA = ("fitness", "frontier", "frontier_area", "best_accuracy")


def score(curve: list[CurvePoint], criterion: str, baselines: list[BaselinePoint]) -> float | None:
    """The selection score of a curve (higher is better; ties go to fewer tokens, see ``scoring.rank_key``).

    ``fitness`` or ``frontier``: the margin over the whole baseline frontier at equal cost (the archive's and
    the search's fitness); ``frontier_area``: the area under the curve's own accuracy-vs-log-tokens frontier;
    ``best_accuracy``: the best mean accuracy over β.
    """
    if not curve:
        return None
    if criterion in ("fitness", "frontier"):
        return fitness(curve, baselines)
    if criterion == "frontier_area":
        return frontier_score(curve, baselines)
    return search_accuracy(curve)


def history_entries(store: Any, run_id: str, *, with_source: bool = True) -> list[HistoryEntry]:
    """Every candidate of a run as agents see it: code, search curve, status, diagnosis, notes."""
    diagnoses = history.get_diagnoses(store, run_id)
    entries = []
    for c in history.list_candidates(store, run_id):
        status = STATUS_FOR_AGENTS.get(c["status"] or "")
        if status is None:
            continue  # still in flight
        curve: list[CurvePoint] = []
        if c["evaluation_id"]:
            ev = history.get_evaluation(store, c["evaluation_id"])
            if ev["split"] == "search":
                curve = curve_from_points(ev["points"])
        notes: list[str] = []
        if c["check_result"] and not c["check_result"].get("ok", True):
            notes += [f"check: {e}" for e in c["check_result"].get("errors", [])]
        if c["critic"] and not c["critic"].get("approve", True):
            notes += [f"critic: {r}" for r in c["critic"].get("reasons", [])]
        diag = diagnoses.get(c["candidate_id"])
        entries.append(HistoryEntry(
            candidate_id=c["candidate_id"], round=c["round"], name=c["name"] or "", origin=c["origin"] or "",
            parent=c["parent"], code_hash=c["code_hash"] or "", source=c["source"] if with_source else "",
            status=status, curve=curve, search_accuracy=c["search_accuracy"], genome=c["genome"],
            diagnosis=Diagnosis.model_validate(diag) if diag else None, notes=notes))
    return entries


def question_outcomes(ctx: ToolContext, evaluation_id: str) -> list[QuestionOutcome]:
    """Per (env, beta, question) accuracy over seeds, mean tokens and modal answer (visible envs only)."""
    from autotts_graph.store.trajectories import describe_environment

    rows = history.get_outcomes(ctx.store, evaluation_id)
    visible = {e.name for e in ctx.environments()}
    gold: dict[str, list[str]] = {}
    agg: dict[tuple[str, float | None, int], list[tuple[bool, int, str | None]]] = {}
    for r in rows:
        if r["env"] not in visible:
            continue
        if r["env"] not in gold:
            gold[r["env"]] = [q["gold_answer"] for q in describe_environment(ctx.store, r["env"])["questions"]]
        for qi, (ok, tok, ans) in enumerate(zip(r["correct"], r["tokens"], r["answers"], strict=True)):
            agg.setdefault((r["env"], r["beta"], qi), []).append((bool(ok), int(tok), ans))
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
    if ev["status"] != "ok":
        return []
    rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for o in history.get_outcomes(store, evaluation_id):
        rows.setdefault((o["point_index"], o["env"]), []).append(o)
    out = []
    for p in ev["points"]:
        seeds = rows.get((p["point_index"], p["env"]), [])
        out.append({**p, "correct": [[int(x) for x in o["correct"]] for o in seeds],
                    "tokens": [list(o["tokens"]) for o in seeds]})
    return out


def cmc_verdicts(store: Any, evaluation_id: str | None, cmc_evaluation_id: str | None) -> list[scoring.Verdict]:
    """Per β and environment (and the mean over environments): does the controller of ``evaluation_id``
    dominate CMC at the same β, is it dominated, or neither, with the bootstrap CI of the accuracy difference."""
    return scoring.dominance_table(points_with_outcomes(store, evaluation_id),
                                   points_with_outcomes(store, cmc_evaluation_id))
