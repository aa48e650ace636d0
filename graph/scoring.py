"""Curves, frontiers, fitness and dominance: the one place discovery, the report and the tools score from.

Vocabulary. A *curve* is a controller's points, one per (environment, β), each with an accuracy (percent)
and an average cost (tokens per question). *Baselines* are points of other controllers (one label per
configuration, e.g. ``ASC(16)`` or ``CMC β=0.5``) on the same environments.

* **Frontier.** Per environment, the baselines' Pareto frontier (every configuration of every baseline:
  SC@k, ASC, ESC, Parallel-Probe, CMC at every β, the more-baselines methods). Its accuracy at a cost is
  interpolated linearly in log-cost between frontier points; below the cheapest point it is that point's
  accuracy, above the dearest the best accuracy.
* **Margin.** The mean over β and environments of the curve's accuracy margin over the frontier at equal
  cost, in points (``frontier_margin``).
* **Fitness** (the search objective, ``fitness_parts``). The margin, less two penalties read per
  environment (per model), so that a mean over models cannot hide one model's failure:

  - *dominated points*: ``DOMINATED_PENALTY`` points times the share of the environment's β points that some
    baseline configuration dominates by the report's rule below (with the bootstrap over questions when the
    points carry per-question outcomes, else the cost route only);
  - *scaling shortfall*: ``SCALING_WEIGHT`` times how much less the curve gains over the top half of its β
    range (the median β to the largest) than CMC (``SCALING_REFERENCE``, independent sampling at the same β)
    gains over the same β range on that environment: a curve that goes flat or falls where more samples
    still pay loses fitness.

  Ties are broken by tokens (``rank_key``).
* **Dominance versus a reference controller at the same β** (CMC in the report). The candidate dominates
  when it costs no more and either its accuracy gain is real — the 95 % bootstrap interval over questions
  of the accuracy difference lies above zero — or it costs at least 10 % less at no lower accuracy.
  The reference dominates the candidate by the same rule with the roles swapped; otherwise neither.
  The bootstrap resamples questions (within each environment, for a mean over environments) with a seeded
  generator, so the same outcomes always give the same interval.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COST_MARGIN = 0.10  # "at least 10 % cheaper at no lower accuracy" counts as dominating
# Fitness points lost by an environment whose every β point a baseline configuration dominates (pro rata for
# fewer): one more dominated point of 11 costs 5/11 points on that model, more than the margins that separate
# a run's best candidates (see the module docstring).
DOMINATED_PENALTY = 5.0
# Fitness points lost per point of accuracy gain the curve falls short of the baselines' over its top β half.
SCALING_WEIGHT = 0.5
# The baseline whose gain with β a curve must keep up with: CMC's β is the same knob as a controller's (the other
# β-parameterised baselines read it as a budget of their own, and their gains are not comparable).
SCALING_REFERENCE = "cmc"
CONFIDENCE = 0.95
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 20240


def _get(p: Any, key: str) -> Any:
    return p[key] if isinstance(p, dict) else getattr(p, key)


def _label(p: Any) -> str:
    if isinstance(p, dict):
        return str(p.get("label") or p.get("method") or "")
    return str(getattr(p, "label", "") or getattr(p, "method", ""))


# --------------------------------------------------------------------------- curves

def mean_curve(curve: Iterable[Any]) -> list[tuple[float | None, float, float]]:
    """(β, mean accuracy, mean cost) over the environments, for the β values measured on every environment."""
    pts = list(curve)
    envs = {_get(p, "env") for p in pts}
    by_beta: dict[Any, list[Any]] = defaultdict(list)
    for p in pts:
        by_beta[_get(p, "beta")].append(p)
    out = []
    for beta, group in by_beta.items():
        if {_get(p, "env") for p in group} == envs:
            out.append((beta, statistics.fmean(_get(p, "accuracy") for p in group),
                        statistics.fmean(_get(p, "avg_cost") for p in group)))
    return sorted(out, key=lambda t: (t[0] is None, t[0] or 0.0))


def search_accuracy(curve: Iterable[Any]) -> float | None:
    """The best mean-over-environments accuracy over the β grid."""
    rows = [r for r in mean_curve(curve) if r[0] is not None]
    return max(r[1] for r in rows) if rows else None


def mean_tokens(curve: Iterable[Any]) -> float:
    """Mean cost over every point of a curve (the tie-breaker of equal fitness)."""
    costs = [_get(p, "avg_cost") for p in curve]
    return statistics.fmean(costs) if costs else math.inf


def baseline_means(baselines: Iterable[Any], envs: set[str]) -> list[tuple[str, float, float]]:
    """(label, mean accuracy, mean cost) of every baseline configuration run on all of ``envs``."""
    by_label: dict[str, dict[str, Any]] = defaultdict(dict)
    for b in baselines:
        if _get(b, "env") in envs:
            by_label[_label(b)][_get(b, "env")] = b
    return [(label, statistics.fmean(_get(b, "accuracy") for b in pts.values()),
             statistics.fmean(_get(b, "avg_cost") for b in pts.values()))
            for label, pts in sorted(by_label.items()) if set(pts) == envs]


# --------------------------------------------------------------------------- frontier and fitness

def pareto(points: Iterable[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The (label, accuracy, cost) points no other point weakly dominates, by increasing cost."""
    out: list[tuple[str, float, float]] = []
    for label, acc, cost in sorted(points, key=lambda t: (t[2], -t[1])):
        if not out or acc > out[-1][1]:
            out.append((label, acc, cost))
    return out


def frontier_accuracy(cost: float, points: Sequence[tuple[str, float, float]]) -> float:
    """The frontier's accuracy at ``cost``: log-linear between Pareto points, flat beyond both ends."""
    front = pareto(points)
    if not front:
        raise ValueError("an empty frontier")
    return _on_front(cost, front)


def _on_front(cost: float, front: Sequence[tuple[str, float, float]]) -> float:
    """``frontier_accuracy`` on an already computed Pareto front."""
    if cost <= front[0][2]:
        return front[0][1]
    for (_, a0, c0), (_, a1, c1) in zip(front, front[1:], strict=False):
        if c0 <= cost <= c1:
            if c1 <= c0 or c0 <= 0:
                return a1
            t = (math.log(cost) - math.log(c0)) / (math.log(c1) - math.log(c0))
            return a0 + t * (a1 - a0)
    return front[-1][1]


def env_frontiers(baselines: Iterable[Any]) -> dict[str, list[tuple[str, float, float]]]:
    """Per environment, the baseline points as (label, accuracy, cost)."""
    out: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for b in baselines:
        out[_get(b, "env")].append((_label(b), float(_get(b, "accuracy")), float(_get(b, "avg_cost"))))
    return dict(out)


def margins(curve: Iterable[Any], baselines: Iterable[Any]) -> list[tuple[str, Any, float]]:
    """(env, β, accuracy margin over that environment's frontier at the point's cost), for every point with
    baselines on its environment."""
    fronts = {env: pareto(pts) for env, pts in env_frontiers(baselines).items()}
    out = []
    for p in curve:
        front = fronts.get(_get(p, "env"))
        if front:
            out.append((_get(p, "env"), _get(p, "beta"),
                        float(_get(p, "accuracy")) - _on_front(float(_get(p, "avg_cost")), front)))
    return out


def frontier_margin(curve: Iterable[Any], baselines: Iterable[Any]) -> float:
    """Mean over environments and β of the accuracy margin over the whole baseline frontier at equal cost.

    Positive: the curve lies above the frontier on average. Without baselines: the curve's mean accuracy.
    An empty curve scores -inf.
    """
    pts = list(curve)
    if not pts:
        return -math.inf
    ms = margins(pts, baselines)
    if not ms:
        return statistics.fmean(float(_get(p, "accuracy")) for p in pts)
    per_env: dict[str, list[float]] = defaultdict(list)
    for env, _, m in ms:
        per_env[env].append(m)
    return statistics.fmean(statistics.fmean(v) for v in per_env.values())


@dataclass
class DominatedPoint:
    """A curve point that a baseline configuration dominates (the first such label, best accuracy first)."""

    env: str
    beta: float | None
    by: str
    why: str


def _acc_q(p: Any) -> list[float]:
    return list(getattr(p, "acc_q", None) or [])


def frontier_dominance(curve: Iterable[Any], baselines: Iterable[Any], *, seed: int = BOOTSTRAP_SEED,
                       n_boot: int = BOOTSTRAP) -> list[DominatedPoint]:
    """The curve's points that some baseline configuration on the same environment dominates, by ``judge``'s
    rule with the baseline as the reference: it costs no more and either the 95 % bootstrap interval over
    questions of the accuracy difference lies below zero, or it is at least 10 % cheaper at no lower accuracy.

    Points and baselines with per-question outcomes (``Outcomes``) get the bootstrap (the same resampling as
    ``bootstrap_diff`` with ``seed``, for every baseline at once); without them only the cost route decides.
    Only a more accurate baseline is bootstrapped: the interval of a difference of at least zero does not lie
    below zero.
    """
    by_env: dict[str, list[Any]] = defaultdict(list)
    for b in baselines:
        by_env[_get(b, "env")].append(b)
    resamples: dict[int, np.ndarray] = {}
    out: list[DominatedPoint] = []
    for p in curve:
        acc, cost = float(_get(p, "accuracy")), float(_get(p, "avg_cost"))
        cheaper = [b for b in by_env.get(_get(p, "env"), []) if float(_get(b, "avg_cost")) <= cost]
        if not cheaper:
            continue
        mine = _acc_q(p)
        paired = [b for b in cheaper if mine and len(_acc_q(b)) == len(mine) and float(_get(b, "accuracy")) > acc]
        cis: dict[int, tuple[float, float]] = {}
        if paired:
            if len(mine) not in resamples:
                resamples[len(mine)] = _resample_counts(len(mine), seed=seed, n_boot=n_boot)
            diffs = 100.0 * (np.asarray(mine)[None, :] - np.asarray([_acc_q(b) for b in paired]))
            lo, hi = _interval_rows(diffs, resamples[len(mine)])
            cis = {id(b): (float(lo[i]), float(hi[i])) for i, b in enumerate(paired)}
        hits = []
        for b in cheaper:
            status, why = judge(acc, cost, float(_get(b, "accuracy")), float(_get(b, "avg_cost")), cis.get(id(b)))
            if status == "dominated":
                hits.append((-float(_get(b, "accuracy")), float(_get(b, "avg_cost")), _label(b), why))
        if hits:
            _, _, label, why = min(hits)
            out.append(DominatedPoint(env=_get(p, "env"), beta=_get(p, "beta"), by=label, why=why))
    return out


def _resample_counts(n_q: int, *, seed: int, n_boot: int) -> np.ndarray:
    """How often each of ``n_q`` questions is drawn in each of ``n_boot`` resamples (n_boot x n_q): the
    resamples ``bootstrap_diff`` draws for one pair with ``seed``."""
    idx = np.random.default_rng(seed).integers(0, n_q, size=(n_boot, n_q))
    counts = np.zeros((n_boot, n_q))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def _interval_rows(diffs: np.ndarray, counts: np.ndarray,
                   confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean of each row of ``diffs`` (rows x questions) over the resamples
    ``counts`` (one matrix product for every row)."""
    boot = diffs @ counts.T / diffs.shape[1]
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=1)
    return lo, hi


def _top_half(betas: Iterable[float]) -> tuple[float, float] | None:
    """(median β, largest β) of a curve's β values: the top of the curve; None when it has one β only."""
    bs = sorted(set(betas))
    if len(bs) < 2:
        return None
    return statistics.median_low(bs), bs[-1]


def scaling_shortfalls(curve: Iterable[Any], baselines: Iterable[Any]) -> dict[str, float]:
    """Per environment: how many accuracy points less the curve gains from its median β to its largest than CMC
    (``SCALING_REFERENCE``) gains over the same β range there.

    Zero where the curve keeps up (or CMC lacks either β); a flat or falling top where CMC still rises is the
    shortfall that a mean margin, read on one dataset, does not see.
    """
    acc_at: dict[str, dict[float, float]] = defaultdict(dict)
    for p in curve:
        if _get(p, "beta") is not None:
            acc_at[_get(p, "env")][float(_get(p, "beta"))] = float(_get(p, "accuracy"))
    ref_at: dict[str, dict[float, float]] = defaultdict(dict)
    for b in baselines:
        beta = b.get("beta") if isinstance(b, dict) else getattr(b, "beta", None)
        method = b.get("method") if isinstance(b, dict) else getattr(b, "method", "")
        if beta is not None and method == SCALING_REFERENCE:
            ref_at[_get(b, "env")][float(beta)] = float(_get(b, "accuracy"))
    out: dict[str, float] = {}
    for env, accs in acc_at.items():
        top, ref = _top_half(accs), ref_at.get(env, {})
        if top is None or top[0] not in ref or top[1] not in ref:
            continue
        lo, hi = top
        out[env] = max(0.0, (ref[hi] - ref[lo]) - (accs[hi] - accs[lo]))
    return out


@dataclass
class Fitness:
    """The search objective and its parts (points; per environment where it says so)."""

    value: float  # margin less both penalties: what the search, the archive and the selection rank by
    margin: float  # frontier_margin
    points: dict[str, int] = field(default_factory=dict)  # β points judged per environment
    dominated: dict[str, int] = field(default_factory=dict)  # of which a baseline configuration dominates
    shortfall: dict[str, float] = field(default_factory=dict)  # scaling shortfall per environment

    @property
    def dominated_total(self) -> int:
        return sum(self.dominated.values())

    @property
    def points_total(self) -> int:
        return sum(self.points.values())


def fitness_parts(curve: Iterable[Any], baselines: Iterable[Any]) -> Fitness:
    """The fitness of a curve against the baselines, with its parts (see the module docstring).

    Per environment: the margin, less ``DOMINATED_PENALTY`` x the share of its β points a baseline
    configuration dominates, less ``SCALING_WEIGHT`` x its scaling shortfall; averaged over environments.
    Without baselines: the curve's mean accuracy; an empty curve: -inf.
    """
    pts, base = list(curve), list(baselines)
    margin = frontier_margin(pts, base)
    if not pts or not base or not margins(pts, base):
        return Fitness(value=margin, margin=margin)
    envs = {env for env, _, _ in margins(pts, base)}
    points = {env: sum(1 for p in pts if _get(p, "env") == env) for env in sorted(envs)}
    dominated = dict.fromkeys(points, 0)
    for d in frontier_dominance([p for p in pts if _get(p, "env") in envs], base):
        dominated[d.env] += 1
    shortfall = {env: s for env, s in scaling_shortfalls(pts, base).items() if env in envs}
    penalty = statistics.fmean(DOMINATED_PENALTY * dominated[env] / points[env]
                               + SCALING_WEIGHT * shortfall.get(env, 0.0) for env in points)
    return Fitness(value=margin - penalty, margin=margin, points=points, dominated=dominated, shortfall=shortfall)


def fitness(curve: Iterable[Any], baselines: Iterable[Any]) -> float:
    """The search objective: the frontier margin less the dominated-points and scaling penalties
    (``fitness_parts``). Without baselines: the curve's mean accuracy; an empty curve scores -inf."""
    return fitness_parts(curve, baselines).value


@dataclass
class _Point:
    """A resampled point (what ``frontier_margin`` and ``scaling_shortfalls`` read)."""

    env: str
    beta: float | None
    accuracy: float
    avg_cost: float
    method: str = ""
    label: str = ""


LOWER_BOUND = 0.05  # the one-sided 95 % lower bound of the fitness that the selection ranks finalists by
BOUND_BOOTSTRAP = 400


def fitness_lower_bound(curve: Sequence[Outcomes], baselines: Sequence[Any], *, seed: int = BOOTSTRAP_SEED,
                        n_boot: int = BOUND_BOOTSTRAP, quantile: float = LOWER_BOUND) -> tuple[float, float]:
    """(fitness, its lower confidence bound): the ``quantile`` of the fitness over a bootstrap over questions.

    Each replicate resamples the questions of every environment once and recomputes every point's accuracy
    and tokens from them, the curve's and the baselines' alike (paired: the same questions), then the frontier
    margin and the scaling shortfall; the dominated-points penalty is the point estimate's (it has its own
    bootstrap). Without baselines: the bound of the mean accuracy. Points without per-question outcomes keep
    their figures. Deterministic for a given ``seed``.
    """
    point = fitness_parts(curve, baselines)
    base = list(baselines)
    envs = list(point.points) or sorted({_get(p, "env") for p in curve})  # without baselines: every env
    if not curve:
        return point.value, point.value
    dominated_penalty = statistics.fmean(DOMINATED_PENALTY * point.dominated[e] / point.points[e]
                                         for e in point.points) if point.points else 0.0
    rng = np.random.default_rng(seed)
    # Per environment, the points with outcomes as one matrix each (accuracy and tokens per question), so that
    # a replicate recomputes them all with one fancy index.
    everyone = [*curve, *base]
    fixed: dict[int, _Point] = {}
    stacks: dict[str, tuple[list[int], np.ndarray, np.ndarray]] = {}
    for env in envs:
        ps = [p for p in everyone if _get(p, "env") == env]
        n = max((len(_acc_q(p)) for p in ps), default=0)
        with_q = [p for p in ps if n and len(_acc_q(p)) == n and len(getattr(p, "cost_q", None) or []) == n]
        if with_q:
            stacks[env] = ([id(p) for p in with_q], np.asarray([_acc_q(p) for p in with_q]),
                           np.asarray([p.cost_q for p in with_q], dtype=float))
        for p in ps:
            fixed[id(p)] = _Point(env=env, beta=_get(p, "beta"), accuracy=float(_get(p, "accuracy")),
                                  avg_cost=float(_get(p, "avg_cost")), method=getattr(p, "method", ""),
                                  label=_label(p))
    values = []
    for _ in range(n_boot):
        now = dict(fixed)
        for env, (ids, acc_q, cost_q) in stacks.items():
            idx = rng.integers(0, acc_q.shape[1], size=acc_q.shape[1])
            accs, costs = 100.0 * acc_q[:, idx].mean(axis=1), cost_q[:, idx].mean(axis=1)
            for i, key in enumerate(ids):
                f = fixed[key]
                now[key] = _Point(env=env, beta=f.beta, accuracy=float(accs[i]), avg_cost=float(costs[i]),
                                  method=f.method, label=f.label)
        mine = [now[id(p)] for p in curve if id(p) in now]
        theirs = [now[id(b)] for b in base if id(b) in now]
        short = scaling_shortfalls(mine, theirs) if theirs else {}
        values.append(frontier_margin(mine, theirs) - dominated_penalty
                      - statistics.fmean(SCALING_WEIGHT * short.get(e, 0.0) for e in envs))
    return point.value, float(np.quantile(values, quantile))


CRITERIA = ("fitness", "frontier", "frontier_area", "best_accuracy")


def score(curve: Sequence[Any], criterion: str, baselines: Iterable[Any]) -> float | None:
    """The selection score of a curve (higher is better; ties go to fewer tokens, see ``rank_key``); None for an
    empty curve.

    ``fitness`` or ``frontier``: the margin over the whole baseline frontier at equal cost (the archive's and
    the search's fitness); ``frontier_area``: the area under the curve's own accuracy-vs-log-tokens frontier;
    ``best_accuracy``: the best mean accuracy over β.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown selection criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    if not curve:
        return None
    if criterion in ("fitness", "frontier"):
        return fitness(curve, baselines)
    if criterion == "frontier_area":
        return frontier_area(curve, baselines)
    return search_accuracy(curve)


def rank_key(curve: Iterable[Any], baselines: Iterable[Any]) -> tuple[float, float]:
    """Sort key, best first: higher fitness, then fewer tokens."""
    pts = list(curve)
    return -fitness(pts, baselines), mean_tokens(pts)


def dominated_by(acc: float, cost: float, points: Iterable[tuple[str, float, float]]) -> str | None:
    """Label of a point with accuracy >= acc and cost <= cost, one strict (None: nothing dominates)."""
    for label, a, c in points:
        if a >= acc and c <= cost and (a > acc or c < cost):
            return label
    return None


def dominated_by_all(acc: float, cost: float, points: Iterable[tuple[str, float, float]]) -> list[str]:
    """Every label that weakly dominates (acc, cost) with one strict inequality, best accuracy first."""
    hits = [(a, -c, label) for label, a, c in points if a >= acc and c <= cost and (a > acc or c < cost)]
    return [label for _, _, label in sorted(hits, reverse=True)]


def non_dominated_points(curve: list[Any], baselines: list[Any], mode: str = "mean") -> list[dict[str, Any]]:
    """Every curve point with whether a baseline configuration dominates it.

    ``mode="mean"``: on the mean over the environments; ``mode="env"``: per environment.
    """
    rows: list[dict[str, Any]] = []
    if mode == "mean":
        base = baseline_means(baselines, {_get(p, "env") for p in curve})
        for beta, acc, cost in mean_curve(curve):
            rows.append({"env": "mean", "beta": beta, "accuracy": acc, "avg_cost": cost,
                         "dominated_by": dominated_by(acc, cost, base)})
        return rows
    fronts = env_frontiers(baselines)
    for p in curve:
        rows.append({"env": _get(p, "env"), "beta": _get(p, "beta"), "accuracy": _get(p, "accuracy"),
                     "avg_cost": _get(p, "avg_cost"),
                     "dominated_by": dominated_by(_get(p, "accuracy"), _get(p, "avg_cost"),
                                                  fronts.get(_get(p, "env"), []))})
    return rows


def frontier_area(curve: Iterable[Any], baselines: Iterable[Any]) -> float | None:
    """Area under the accuracy-vs-log-tokens frontier of the curve, averaged over environments.

    Per environment, the best accuracy reachable within a budget c (the curve's points with cost <= c) is
    averaged over a log-spaced grid of budgets spanning the baselines' costs on that environment (or the
    curve's own range when there are no baselines).
    """
    pts = list(curve)
    base = list(baselines)
    scores = []
    for env in sorted({_get(p, "env") for p in pts}):
        mine = sorted((float(_get(p, "avg_cost")), float(_get(p, "accuracy"))) for p in pts if _get(p, "env") == env)
        costs = [float(_get(b, "avg_cost")) for b in base if _get(b, "env") == env] or [c for c, _ in mine]
        lo, hi = max(min(costs), 1.0), max(max(costs), 1.0)
        if hi <= lo:
            hi = lo * 10
        grid = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / 63) for i in range(64)]
        scores.append(sum(max((a for c, a in mine if c <= budget), default=0.0) for budget in grid) / len(grid))
    return sum(scores) / len(scores) if scores else None


# --------------------------------------------------------------------------- per-question outcomes, bootstrap

@dataclass
class Outcomes:
    """One (environment, configuration) point with its per-question outcomes.

    ``acc_q``: per question, the fraction of seeds answered correctly; ``cost_q``: per question, the mean
    tokens over seeds. ``accuracy`` / ``avg_cost`` are the point's reported figures.
    """

    env: str
    beta: float | None
    accuracy: float
    avg_cost: float
    acc_q: list[float] = field(default_factory=list)
    cost_q: list[float] = field(default_factory=list)
    method: str = ""  # a baseline's method and configuration label (empty for a candidate's point)
    label: str = ""


def outcomes_from_point(p: dict[str, Any]) -> Outcomes:
    """Outcomes of an evaluation point dict (``correct`` and ``tokens`` are seeds x questions rows)."""
    correct = p.get("correct") or []
    tokens = p.get("tokens") or []
    acc_q: list[float] = []
    cost_q: list[float] = []
    if correct:
        arr = np.asarray(correct, dtype=float)
        acc_q = arr.mean(axis=0).tolist()
    if tokens:
        cost_q = np.asarray(tokens, dtype=float).mean(axis=0).tolist()
    beta = p.get("beta")
    if beta is None and isinstance(p.get("config"), dict):
        beta = p["config"].get("beta")
    return Outcomes(env=p["env"], beta=beta, accuracy=float(p["accuracy"]), avg_cost=float(p["avg_cost"]),
                    acc_q=acc_q, cost_q=cost_q, method=str(p.get("method") or ""), label=str(p.get("label") or ""))


def bootstrap_diff(ours: Sequence[Outcomes], theirs: Sequence[Outcomes], *, n_boot: int = BOOTSTRAP,
                   seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """(difference, low, high) of the accuracy (points) of ``ours`` minus ``theirs``, averaged over the
    paired environments, with a percentile bootstrap over questions (resampled within each environment).

    Pairs are matched by environment; every pair needs per-question outcomes of equal length. None when
    there is nothing to pair. Deterministic for a given ``seed``.
    """
    theirs_by_env = {t.env: t for t in theirs}
    pairs = [(o, theirs_by_env[o.env]) for o in ours if o.env in theirs_by_env]
    if not pairs:
        return None
    diffs = []
    for o, t in pairs:
        if not o.acc_q or len(o.acc_q) != len(t.acc_q):
            return None
        diffs.append(100.0 * (np.asarray(o.acc_q) - np.asarray(t.acc_q)))
    point = float(np.mean([d.mean() for d in diffs]))
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        boot += d[idx].mean(axis=1)
    boot /= len(diffs)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(lo), float(hi)


@dataclass
class Verdict:
    """The candidate against a reference at one β (on one environment or on the mean over environments)."""

    env: str
    beta: float | None
    accuracy: float
    avg_cost: float
    ref_accuracy: float
    ref_avg_cost: float
    diff: float | None  # accuracy difference (points), candidate minus reference
    ci: tuple[float, float] | None  # its 95 % bootstrap interval over questions
    status: str  # "dominates", "dominated" or "neither"
    why: str = ""

    @property
    def cost_ratio(self) -> float:
        return self.avg_cost / self.ref_avg_cost if self.ref_avg_cost > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able row for tools: env, β, both points, the difference with its CI, the verdict."""
        return {"env": self.env, "beta": self.beta, "accuracy": round(self.accuracy, 4),
                "avg_cost": round(self.avg_cost, 1), "ref_accuracy": round(self.ref_accuracy, 4),
                "ref_avg_cost": round(self.ref_avg_cost, 1),
                "diff": None if self.diff is None else round(self.diff, 4),
                "ci": None if self.ci is None else [round(self.ci[0], 4), round(self.ci[1], 4)],
                "cost_ratio": round(self.cost_ratio, 4), "status": self.status, "why": self.why}


def judge(acc: float, cost: float, ref_acc: float, ref_cost: float,
          ci: tuple[float, float] | None, cost_margin: float = COST_MARGIN) -> tuple[str, str]:
    """(status, reason) of a candidate point against a reference point (see the module docstring).

    Without a CI (no per-question outcomes) only the cost route can establish dominance.
    """
    if cost <= ref_cost:
        if ci is not None and ci[0] > 0:
            return "dominates", "accuracy gain outside the 95% interval at no higher cost"
        if cost <= (1.0 - cost_margin) * ref_cost and acc >= ref_acc:
            return "dominates", f"{1 - cost / ref_cost:.0%} cheaper at no lower accuracy"
    if ref_cost <= cost:
        if ci is not None and ci[1] < 0:
            return "dominated", "accuracy loss outside the 95% interval at no lower cost"
        if ref_cost <= (1.0 - cost_margin) * cost and ref_acc >= acc:
            return "dominated", f"the reference is {1 - ref_cost / cost:.0%} cheaper at no lower accuracy"
    return "neither", ""


def compare(ours: Sequence[Outcomes], theirs: Sequence[Outcomes], env: str, beta: float | None, *,
            seed: int = BOOTSTRAP_SEED, n_boot: int = BOOTSTRAP) -> Verdict:
    """Verdict of the candidate's points against the reference's at one β (several envs: their mean)."""
    theirs_by_env = {t.env: t for t in theirs}
    paired = [o for o in ours if o.env in theirs_by_env]
    refs = [theirs_by_env[o.env] for o in paired]
    acc = statistics.fmean(o.accuracy for o in paired)
    cost = statistics.fmean(o.avg_cost for o in paired)
    racc = statistics.fmean(t.accuracy for t in refs)
    rcost = statistics.fmean(t.avg_cost for t in refs)
    boot = bootstrap_diff(paired, refs, seed=seed, n_boot=n_boot)
    diff, ci = (boot[0], (boot[1], boot[2])) if boot else (acc - racc, None)
    status, why = judge(acc, cost, racc, rcost, ci)
    return Verdict(env=env, beta=beta, accuracy=acc, avg_cost=cost, ref_accuracy=racc, ref_avg_cost=rcost,
                   diff=diff, ci=ci, status=status, why=why)


def dominance_table(ours: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]], *,
                    seed: int = BOOTSTRAP_SEED, n_boot: int = BOOTSTRAP,
                    with_mean: bool = True) -> list[Verdict]:
    """Per β (matched by the ``beta`` of the points) and per environment, plus the mean over the
    environments both share at that β: the candidate's verdict against the reference.

    ``ours`` and ``reference`` are evaluation point dicts (``env``, ``beta`` or ``config.beta``, ``accuracy``,
    ``avg_cost``, optionally ``correct``/``tokens`` rows for the bootstrap).
    """
    mine = [outcomes_from_point(p) for p in ours]
    refs = [outcomes_from_point(p) for p in reference]
    ref_at: dict[tuple[str, float], Outcomes] = {(r.env, r.beta): r for r in refs if r.beta is not None}
    betas = sorted({o.beta for o in mine if o.beta is not None})
    rows: list[Verdict] = []
    for beta in betas:
        at = [o for o in mine if o.beta == beta and (o.env, beta) in ref_at]
        for o in sorted(at, key=lambda o: o.env):
            rows.append(compare([o], [ref_at[(o.env, beta)]], o.env, beta, seed=seed, n_boot=n_boot))
        if with_mean and len(at) > 1:
            rows.append(compare(at, [ref_at[(o.env, beta)] for o in at], "mean", beta, seed=seed, n_boot=n_boot))
    return rows


def dominance_counts(rows: Iterable[Verdict]) -> dict[str, dict[str, int]]:
    """Per environment (and "mean"): how many β points the candidate dominates, is dominated at, or neither."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        c = out.setdefault(r.env, {"dominates": 0, "dominated": 0, "neither": 0})
        c[r.status] += 1
    return out
