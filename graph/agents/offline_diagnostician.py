"""The offline diagnostician: failure modes from per-question outcome statistics and sampled traces.

Points below the best baseline at similar cost, tokens spent after the answer had settled, premature stops,
correct branches pruned, never-converged questions, no scaling with β — each with counts, example ids and the
machine-usable actions the offline proposer maps to genome edits. No API key, no network.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from ..scoring import mean_curve
from .roles import DiagnoseInput, Diagnosis, FailureMode, Spend, TraceSample

# Finish reasons that mean "ran out of branches or steps" rather than a voluntary stop (baselines included).
EXHAUSTED_REASONS = frozenset({"loop_end", "no_branches", "max_steps", "max_samples_or_exhausted",
                               "max_windows_or_exhausted", "all_branches_done_or_no_active", "k_reads_or_exhausted",
                               "k_branches_or_exhausted", "cap_or_exhausted", "budget_or_exhausted",
                               "all_branches_done"})


def _accuracy_index(inp: DiagnoseInput) -> tuple[dict[tuple, float], dict[str, float]]:
    """Accuracy by (env, question, beta), and the largest beta evaluated per environment."""
    acc_at = {(o.env, o.question_index, o.beta): o.accuracy for o in inp.outcomes}
    top_beta: dict[str, float] = {}
    for o in inp.outcomes:
        if o.beta is not None and o.beta > top_beta.get(o.env, -1.0):
            top_beta[o.env] = o.beta
    return acc_at, top_beta


_SUGGESTIONS = {
    "hidden_information": "act only on what probe_new/probe_more/full reads returned in the current question: no "
                          "reading of replay data or internals, no memory across questions or seeds, and return an "
                          "answer the controller observed",
    "known_answers": "treat answers as opaque labels: compare them only for equality, by first-seen order, "
                     "lexicographically or with 'ERR'; no answer known in advance, no parsing them as numbers, no "
                     "iteration over a set of answers (use a list or a dict in first-seen order)",
    "contract_violation": "return a plain str the controller observed (or None) and touch only opened branches",
}


class StatsDiagnostician:
    """Failure modes from outcome statistics and sampled traces, with counts, examples and actions."""

    name = "offline-diagnostician"

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples

    def spend(self) -> Spend:
        """Offline: no LLM usage."""
        return Spend()

    def diagnose(self, inp: DiagnoseInput) -> Diagnosis:
        """Structured failure modes; ``actions`` ordered by how much each mode costs."""
        if inp.error_kind in ("audit", "contract"):
            # The judge refused the figures: no statistics to read, the code itself must change.
            kind = "contract_violation"
            if inp.error_kind == "audit":
                kind = "known_answers" if "relabelling audit" in (inp.error or "") else "hidden_information"
            mode = FailureMode(kind=kind, count=1, share=1.0, evidence=[(inp.error or "")[:400]],
                               suggestion=_SUGGESTIONS[kind])
            return Diagnosis(summary=f"{kind}: {(inp.error or inp.error_kind)[:200]}", failure_modes=[mode],
                             actions=["fix_crash"], crashed=True)
        if inp.error_kind:
            kind = "timeout" if "timeout" in inp.error_kind else "crash"
            action = "speed_up" if kind == "timeout" else "fix_crash"
            mode = FailureMode(kind=kind, count=1, share=1.0, evidence=[(inp.error or "")[:400]],
                               suggestion="make every solve path terminate quickly" if kind == "timeout"
                               else "fix the error in the controller's own code (see the traceback lines)")
            return Diagnosis(summary=f"{kind}: {(inp.error or inp.error_kind)[:200]}", failure_modes=[mode],
                             actions=[action], crashed=True)
        modes: list[tuple[float, FailureMode, list[str]]] = []
        gold = {(o.env, o.question_index): o.gold for o in inp.outcomes}
        for fn in (self._below_baseline, self._no_scaling, self._premature, self._wasted, self._pruned_correct,
                   self._never_converged):
            found = fn(inp, gold)
            if found is not None:
                modes.append(found)
        modes.sort(key=lambda t: -t[0])
        actions: list[str] = []
        for _, _, acts in modes:
            for a in acts:
                if a not in actions:
                    actions.append(a)
        mc = mean_curve(inp.curve)
        head = ""
        if mc:
            lo, hi = mc[0], mc[-1]
            n_envs = len({p.env for p in inp.curve})
            head = (f"mean over {n_envs} envs: {lo[1]:.1f}% at {lo[2] / 1000:.0f}k (β={lo[0]}) "
                    f"→ {hi[1]:.1f}% at {hi[2] / 1000:.0f}k (β={hi[0]}). ")
        summary = head + ("; ".join(f"{m.kind} ×{m.count}" for _, m, _ in modes) or "no failure mode stands out")
        return Diagnosis(summary=summary, failure_modes=[m for _, m, _ in modes], actions=actions)

    # Each detector returns (severity, mode, actions) or None; severity ~ accuracy points or token share at stake.

    def _below_baseline(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        if not inp.baselines or not inp.curve:
            return None
        low_cost, high_cost, examples, evidence, deficits = 0, 0, [], [], []
        costs = sorted(p.avg_cost for p in inp.curve)
        median_cost = costs[len(costs) // 2]
        for p in inp.curve:
            rivals = [b for b in inp.baselines if b.env == p.env and b.avg_cost <= 1.1 * p.avg_cost]
            if not rivals:
                continue
            best = max(rivals, key=lambda b: (b.accuracy, -b.avg_cost))
            gap = best.accuracy - p.accuracy
            if gap > 0.5:
                deficits.append(gap)
                if p.avg_cost <= median_cost:
                    low_cost += 1
                else:
                    high_cost += 1
                examples.append(f"{p.env} β={p.beta}")
                evidence.append(f"{p.env} β={p.beta}: {p.accuracy:.1f}% at {p.avg_cost / 1000:.0f}k vs {best.label} "
                                f"{best.accuracy:.1f}% at {best.avg_cost / 1000:.0f}k")
        if not deficits:
            return None
        actions = []
        if high_cost >= low_cost:
            actions += ["stricter_stop", "more_width"]
        if low_cost:
            actions += ["less_width", "looser_stop"] if low_cost > high_cost else ["deeper_probing"]
        mode = FailureMode(kind="below_baseline", count=len(deficits), share=len(deficits) / len(inp.curve),
                           evidence=evidence[: self.max_examples], examples=examples[: self.max_examples],
                           suggestion="at high β spend where it buys accuracy (stricter stop, more width); "
                                      "at low β be cheaper (narrower start, earlier stop)")
        return statistics.fmean(deficits) * len(deficits) / len(inp.curve), mode, actions

    def _no_scaling(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        mc = mean_curve(inp.curve)
        if len(mc) < 2:
            return None
        (_, a0, c0), (_, a1, c1) = mc[0], mc[-1]
        base_top = max((b.accuracy for b in inp.baselines), default=None)
        gain = a1 - a0
        if gain >= 1.0 and c1 >= 0.3 * max((b.avg_cost for b in inp.baselines), default=c1):
            return None
        evidence = [f"mean accuracy {a0:.1f}% → {a1:.1f}% while cost {c0 / 1000:.0f}k → {c1 / 1000:.0f}k"]
        if base_top is not None:
            evidence.append(f"best baseline accuracy on any env {base_top:.1f}%")
        mode = FailureMode(kind="no_scaling", count=1, share=1.0, evidence=evidence,
                           suggestion="β=1 should be evidence-hungry: open more branches and stop later")
        return max(0.5, 2.0 - gain), mode, ["more_width", "stricter_stop"]

    def _premature(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        acc_at, top_beta = _accuracy_index(inp)
        wrong_stops, helped, examples = 0, 0, []
        for t in inp.traces:
            reason = _finish_reason(t.steps)
            if t.is_correct or reason is None or reason in EXHAUSTED_REASONS:
                continue
            wrong_stops += 1
            best = acc_at.get((t.env, t.question_index, top_beta.get(t.env)))
            here = acc_at.get((t.env, t.question_index, t.beta))
            if best is not None and here is not None and best - here >= 0.2:
                helped += 1
            examples.append(_example(t))
        # Outcome view: questions that more budget solves clearly more often.
        rescued = sum(1 for o in inp.outcomes if o.beta is not None and o.beta < top_beta.get(o.env, 0.0)
                      and acc_at.get((o.env, o.question_index, top_beta[o.env]), 0.0) - o.accuracy >= 0.3)
        if not wrong_stops and not rescued:
            return None
        voluntary = sum(1 for t in inp.traces if (_finish_reason(t.steps) or "loop_end") not in EXHAUSTED_REASONS)
        mode = FailureMode(kind="premature_stop", count=wrong_stops, share=wrong_stops / max(1, voluntary),
                           evidence=[f"{wrong_stops} of {voluntary} sampled voluntary stops returned a wrong answer; "
                                     f"{helped} of those questions are solved ≥20 points more often at the top β",
                                     f"{rescued} (question, β) outcomes gain ≥30 points at the top β"],
                           examples=examples[: self.max_examples],
                           suggestion="demand more completed votes or a higher confidence before stopping, "
                                      "or open more branches before trusting an early consensus")
        severity = 100.0 * (wrong_stops / max(1, len(inp.traces))) * (0.5 + helped / max(1, wrong_stops))
        return severity, mode, ["stricter_stop", "more_width"]

    def _wasted(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        shares, examples = [], []
        for t in inp.traces:
            settled, total = _settled_effort(t.steps)
            if total <= 0 or settled is None:
                continue
            share = (total - settled) / total
            if share >= 0.5:
                shares.append(share)
                examples.append(_example(t))
        # Outcome view: tokens at a β with no accuracy gain over the cheapest β of the same question.
        by_q: dict[tuple[str, int], list] = defaultdict(list)
        for o in inp.outcomes:
            if o.beta is not None:
                by_q[(o.env, o.question_index)].append(o)
        flat, flat_tokens, all_tokens = 0, 0.0, 0.0
        for outs in by_q.values():
            outs.sort(key=lambda o: o.beta)
            base = outs[0]
            for o in outs[1:]:
                all_tokens += o.mean_tokens
                if o.accuracy <= base.accuracy + 0.02 and o.mean_tokens > 2 * base.mean_tokens:
                    flat += 1
                    flat_tokens += o.mean_tokens - base.mean_tokens
        if not shares and not flat:
            return None
        evidence = []
        if shares:
            evidence.append(f"{len(shares)} of {len(inp.traces)} sampled solves spent ≥50% of their chunks after the "
                            f"winner had settled (mean {statistics.fmean(shares):.0%})")
        if flat:
            evidence.append(f"{flat} (question, β) outcomes cost >2× the cheapest β with no accuracy gain "
                            f"({flat_tokens / max(1.0, all_tokens):.0%} of tokens above the cheapest β)")
        mode = FailureMode(kind="wasted_tokens", count=len(shares) + flat,
                           share=len(shares) / max(1, len(inp.traces)), evidence=evidence,
                           examples=examples[: self.max_examples],
                           suggestion="stop sooner once the winner is settled, or prune settled minorities")
        severity = 10.0 * (len(shares) / max(1, len(inp.traces))) + 10.0 * flat_tokens / max(1.0, all_tokens)
        return severity, mode, ["looser_stop", "more_pruning"]

    def _pruned_correct(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        hit, lost, examples = 0, 0, []
        for t in inp.traces:
            g = gold.get((t.env, t.question_index))
            if g is None:
                continue
            pruned = [a for s in t.steps if s.get("event") == "prune"
                      for a in (_as_dict(s.get("output")).get("answers") or [])]
            if g not in pruned:
                continue
            hit += 1
            if not t.is_correct:
                lost += 1
                examples.append(_example(t))
        if not hit:
            return None
        mode = FailureMode(kind="pruned_correct", count=hit, share=hit / max(1, len(inp.traces)),
                           evidence=[f"{hit} sampled solves pruned a branch holding the gold answer; {lost} of them "
                                     "ended wrong"], examples=examples[: self.max_examples],
                           suggestion="prune later (more patience), keep more branches alive, or spare minority "
                                      "clusters")
        return 100.0 * lost / max(1, len(inp.traces)) + 1.0, mode, ["less_pruning"]

    def _never_converged(self, inp: DiagnoseInput, gold: dict) -> tuple[float, FailureMode, list[str]] | None:
        acc_at, top_beta = _accuracy_index(inp)
        n, wrong, rescuable, examples = 0, 0, 0, []
        for t in inp.traces:
            if _finish_reason(t.steps) in EXHAUSTED_REASONS:
                n += 1
                if not t.is_correct:
                    wrong += 1
                    here = acc_at.get((t.env, t.question_index, t.beta))
                    best = acc_at.get((t.env, t.question_index, top_beta.get(t.env)))
                    # Only questions that more budget actually solves make this actionable (hopeless ones do not).
                    if here is not None and best is not None and best - here >= 0.2:
                        rescuable += 1
                        examples.append(_example(t))
        if not n:
            return None
        mode = FailureMode(kind="never_converged", count=n, share=n / max(1, len(inp.traces)),
                           evidence=[f"{n} of {len(inp.traces)} sampled solves ran out of branches or steps without "
                                     f"a stop; {wrong} of them ended wrong, {rescuable} on questions the top β solves "
                                     "≥20 points more often"],
                           examples=examples[: self.max_examples],
                           suggestion="probe deeper so answers complete, and widen while the pool disagrees")
        return 100.0 * rescuable / max(1, len(inp.traces)) * 0.5, mode, ["deeper_probing", "more_width"]


def _example(t: TraceSample) -> str:
    """A sampled solve's id as the evidence lists name it."""
    return f"{t.env} q{t.question_index} β={t.beta} seed {t.seed}"


def _as_dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _finish_reason(steps: list[dict[str, Any]]) -> str | None:
    for s in reversed(steps):
        if s.get("event") == "finish":
            return str(_as_dict(s.get("decision")).get("reason") or "")
    return None


def _settled_effort(steps: list[dict[str, Any]]) -> tuple[float | None, float]:
    """(effort when the final winner last took the lead for good, total effort); effort = chunks or steps."""
    answer = None
    for s in reversed(steps):
        if s.get("event") == "finish":
            answer = _as_dict(s.get("output")).get("answer")
            break
    if answer is None:
        return None, 0.0
    effort = 0.0
    timeline: list[tuple[float, Any]] = []
    for i, s in enumerate(steps):
        out = _as_dict(s.get("output"))
        if s.get("event") == "forward":
            effort = float(out.get("chunks", i))
        elif s.get("event") == "terminate_check" and "winner" in out:
            timeline.append((effort, out["winner"]))
    if not timeline:
        return None, 0.0
    settled = None
    for e, w in timeline:
        if w == answer:
            if settled is None:
                settled = e
        else:
            settled = None
    return settled, effort
