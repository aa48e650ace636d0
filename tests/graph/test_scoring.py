"""graph/scoring.py: frontier, fitness against the whole baseline frontier (CMC included), dominance, bootstrap."""

import math

import pytest
from autotts_graph.graph import scoring
from autotts_graph.graph.agents.roles import BaselinePoint, CurvePoint
from autotts_graph.graph.scoring import (
    Outcomes,
    bootstrap_diff,
    compare,
    fitness,
    frontier_accuracy,
    frontier_area,
    judge,
    margins,
    pareto,
    rank_key,
    score,
)


def bp(method, label, env, acc, cost):
    return BaselinePoint(method=method, label=label, env=env, accuracy=acc, avg_cost=cost)


def cp(env, beta, acc, cost):
    return CurvePoint(env=env, beta=beta, accuracy=acc, avg_cost=cost)


# CMC at three β and one ASC point on two environments; CMC is the frontier except ASC's cheap point on "a".
BASE = [bp("cmc", "CMC β=0", "a", 50, 1_000), bp("cmc", "CMC β=0.5", "a", 60, 10_000),
        bp("cmc", "CMC β=1", "a", 62, 100_000), bp("asc", "ASC(1)", "a", 52, 1_000),
        bp("cmc", "CMC β=0", "b", 70, 2_000), bp("cmc", "CMC β=0.5", "b", 75, 20_000),
        bp("cmc", "CMC β=1", "b", 76, 200_000)]


def test_pareto_and_log_linear_frontier():
    pts = [("x", 50, 1_000), ("y", 52, 1_000), ("z", 51, 5_000), ("w", 60, 10_000)]
    assert [p[0] for p in pareto(pts)] == ["y", "w"]
    assert frontier_accuracy(500, pts) == 52  # below the cheapest: flat
    assert frontier_accuracy(10_000, pts) == 60
    assert frontier_accuracy(1e6, pts) == 60  # beyond the dearest: flat
    mid = math.sqrt(1_000 * 10_000)  # halfway in log-cost
    assert frontier_accuracy(mid, pts) == pytest.approx(56.0)


def test_fitness_is_the_mean_margin_over_envs_and_betas_with_cmc_on_the_frontier():
    on_cmc = [cp("a", 0.5, 60, 10_000), cp("b", 0.5, 75, 20_000), cp("a", 1.0, 62, 100_000), cp("b", 1.0, 76, 200_000)]
    assert fitness(on_cmc, BASE) == pytest.approx(0.0)
    # Two points above CMC at equal cost on "a"; on "b" one point 1 below.
    better = [cp("a", 0.5, 63, 10_000), cp("a", 1.0, 64, 100_000), cp("b", 0.5, 74, 20_000)]
    ms = {(e, b): m for e, b, m in margins(better, BASE)}
    assert ms[("a", 0.5)] == pytest.approx(3) and ms[("b", 0.5)] == pytest.approx(-1)
    assert fitness(better, BASE) == pytest.approx(((3 + 2) / 2 + -1) / 2)
    # ASC(1) is on "a"'s frontier: the same accuracy as CMC β=0 but cheaper points count against it.
    assert fitness([cp("a", 0.0, 50, 1_000)], BASE) == pytest.approx(-2)
    # Without baselines: the mean accuracy; an empty curve: -inf.
    assert fitness(better, []) == pytest.approx((63 + 64 + 74) / 3)
    assert fitness([], BASE) == -math.inf


def test_ties_in_fitness_go_to_fewer_tokens():
    a = [cp("a", 0.5, 60, 10_000)]
    b = [cp("a", 0.5, 60, 10_000), cp("a", 1.0, 62, 100_000)]  # also on the frontier, but dearer
    assert fitness(a, BASE) == fitness(b, BASE) == pytest.approx(0.0)
    assert sorted([b, a], key=lambda c: rank_key(c, BASE))[0] is a


def test_score_criteria():
    curve = [cp("a", 0.5, 63, 10_000), cp("b", 0.5, 74, 20_000)]
    assert score(curve, "fitness", BASE) == score(curve, "frontier", BASE) == fitness(curve, BASE)
    assert score(curve, "best_accuracy", BASE) == pytest.approx(68.5)
    assert score(curve, "frontier_area", BASE) == frontier_area(curve, BASE)
    assert score([], "fitness", BASE) is None
    with pytest.raises(ValueError, match="unknown selection criterion 'cheapest'"):
        score(curve, "cheapest", BASE)


def _outcomes(env, acc_q, cost=1000.0):
    return Outcomes(env=env, beta=0.5, accuracy=100 * sum(acc_q) / len(acc_q), avg_cost=cost, acc_q=acc_q,
                    cost_q=[cost] * len(acc_q))


def test_bootstrap_ci_is_deterministic_and_brackets_the_difference():
    ours = [_outcomes("a", [1.0, 0.9, 0.2, 0.6, 0.0, 1.0, 0.5, 0.7] * 4)]
    theirs = [_outcomes("a", [0.9, 0.8, 0.3, 0.4, 0.0, 1.0, 0.4, 0.5] * 4)]
    first = bootstrap_diff(ours, theirs)
    assert first == bootstrap_diff(ours, theirs)  # the same seed, the same interval
    diff, lo, hi = first
    assert diff == pytest.approx(100 * (sum(ours[0].acc_q) - sum(theirs[0].acc_q)) / 32)
    assert lo < diff < hi
    other = bootstrap_diff(ours, theirs, seed=7)
    assert other[0] == diff and other[1:] != (lo, hi)
    # Mean over environments: questions are resampled within each environment.
    two = bootstrap_diff(ours + [_outcomes("b", [0.5] * 32)], theirs + [_outcomes("b", [0.5] * 32)])
    assert two[0] == pytest.approx(diff / 2)
    assert bootstrap_diff(ours, [_outcomes("c", [0.5] * 32)]) is None  # nothing to pair


def test_dominance_needs_a_real_difference():
    # A same-cost reweighting that gains 0.1 points is noise, not a win.
    assert judge(60.1, 1000, 60.0, 1000, (-0.8, 1.0))[0] == "neither"
    # A gain outside the interval at no higher cost dominates; at a higher cost it does not.
    assert judge(63.0, 1000, 60.0, 1000, (1.0, 5.0))[0] == "dominates"
    assert judge(63.0, 1100, 60.0, 1000, (1.0, 5.0))[0] == "neither"
    # At least 10 % cheaper at no lower accuracy dominates; 5 % cheaper does not; lower accuracy does not.
    assert judge(60.0, 900, 60.0, 1000, (-1.0, 1.0))[0] == "dominates"
    assert judge(60.0, 950, 60.0, 1000, (-1.0, 1.0))[0] == "neither"
    assert judge(59.9, 800, 60.0, 1000, (-1.0, 1.0))[0] == "neither"
    # The same rules the other way round.
    assert judge(60.0, 1000, 60.0, 900, (-1.0, 1.0))[0] == "dominated"
    assert judge(57.0, 1000, 60.0, 1000, (-5.0, -1.0))[0] == "dominated"
    # Without outcomes (no CI) only the cost route decides.
    assert judge(70.0, 1000, 60.0, 1000, None)[0] == "neither"


def test_compare_on_the_mean_over_environments():
    ours = [_outcomes("a", [1.0] * 20 + [0.0] * 10, cost=800), _outcomes("b", [1.0] * 15 + [0.0] * 15, cost=800)]
    theirs = [_outcomes("a", [1.0] * 10 + [0.0] * 20), _outcomes("b", [1.0] * 15 + [0.0] * 15)]
    v = compare(ours, theirs, "mean", 0.5)
    assert v.status == "dominates" and v.diff == pytest.approx(100 * 10 / 30 / 2)
    assert v.cost_ratio == pytest.approx(0.8) and v.ci[0] > 0


# --------------------------------------------------------------------------- fitness against the frontier per model

def _cmc(env, rises=True):
    """CMC on one environment: 50 % at 1k tokens (β 0), 55 % at 10k (β 0.5), 60 % (or 55 %) at 100k (β 1)."""
    top = 60 if rises else 55
    return [BaselinePoint(method="cmc", label=f"CMC β={b}", env=env, accuracy=a, avg_cost=c, beta=b)
            for b, a, c in ((0.0, 50, 1_000), (0.5, 55, 10_000), (1.0, top, 100_000))]


def test_a_flat_top_loses_fitness_against_a_rising_one_at_equal_margin():
    base = _cmc("a")
    rising = [cp("a", 0.0, 50.5, 1_000), cp("a", 0.5, 55, 10_000), cp("a", 1.0, 59.5, 100_000)]
    flat = [cp("a", 0.0, 55, 10_000), cp("a", 0.5, 55, 10_000), cp("a", 1.0, 55, 10_000)]  # ignores β
    assert scoring.frontier_margin(rising, base) == pytest.approx(scoring.frontier_margin(flat, base)) == \
        pytest.approx(0.0)
    assert scoring.scaling_shortfalls(rising, base) == {"a": pytest.approx(0.5)}  # gains 4.5 where CMC gains 5
    assert scoring.scaling_shortfalls(flat, base) == {"a": pytest.approx(5.0)}
    assert fitness(flat, base) < fitness(rising, base)
    assert fitness(flat, base) == pytest.approx(-scoring.SCALING_WEIGHT * 5.0)
    # Where CMC stops paying too, a flat top costs nothing.
    assert scoring.scaling_shortfalls(flat, _cmc("a", rises=False)) == {"a": 0.0}
    # Per model: a flat top on one environment is not averaged away by a rising one on another.
    two = [*rising, *[p.model_copy(update={"env": "b"}) for p in flat]]
    parts = scoring.fitness_parts(two, [*base, *_cmc("b")])
    assert parts.shortfall == {"a": pytest.approx(0.5), "b": pytest.approx(5.0)}


def _q(env, beta, hits, cost, n=30, spread=False, method="", label=""):
    """Per-question outcomes with ``hits`` of ``n`` questions right: every question at hits/n (spread=False) or
    ``hits`` questions always right and the rest never (spread=True)."""
    acc_q = [1.0] * hits + [0.0] * (n - hits) if spread else [hits / n] * n
    return Outcomes(env=env, beta=beta, accuracy=100 * hits / n, avg_cost=cost, acc_q=acc_q, cost_q=[cost] * n,
                    method=method, label=label)


def test_more_dominated_points_rank_below_fewer_at_equal_margin():
    base = [_q("a", None, 15, 1_000, method="sc", label="SC@1"), _q("a", None, 21, 100_000, method="sc",
                                                                     label="SC@64")]
    # Both curves trail the frontier by the same 10 points at both costs. Where a curve trails it by 10 points
    # on every question, the loss lies outside the bootstrap interval (dominated); where it is right on 12
    # questions every time and never on the rest, the interval spans zero (not dominated).
    sure = [_q("a", 0.0, 12, 1_000), _q("a", 1.0, 18, 100_000)]
    noisy = [_q("a", 0.0, 12, 1_000, spread=True), _q("a", 1.0, 18, 100_000)]
    assert scoring.frontier_margin(sure, base) == pytest.approx(scoring.frontier_margin(noisy, base))
    hit = {(d.env, d.beta): d.by for d in scoring.frontier_dominance(sure, base)}
    assert hit == {("a", 0.0): "SC@1", ("a", 1.0): "SC@64"}
    assert [(d.beta, d.by) for d in scoring.frontier_dominance(noisy, base)] == [(1.0, "SC@64")]
    assert scoring.fitness_parts(sure, base).dominated == {"a": 2}
    assert scoring.fitness_parts(noisy, base).dominated == {"a": 1}
    assert sorted([sure, noisy], key=lambda c: rank_key(c, base))[0] is noisy


def test_frontier_dominance_is_the_reports_rule_against_every_configuration():
    """The vectorised bootstrap gives each baseline the verdict ``compare`` gives that pair alone."""
    import random

    rng = random.Random(3)
    cand = [Outcomes(env="a", beta=b, accuracy=0, avg_cost=c, acc_q=[rng.random() for _ in range(30)],
                     cost_q=[c] * 30) for b, c in ((0.0, 2_000), (0.5, 20_000), (1.0, 200_000))]
    for o in cand:
        o.accuracy = 100 * sum(o.acc_q) / 30
    base = []
    for i in range(12):
        acc_q = [min(1.0, rng.random() + 0.1 * (i % 4)) for _ in range(30)]
        cost = 1_000 * 2 ** i
        base.append(Outcomes(env="a", beta=None, accuracy=100 * sum(acc_q) / 30, avg_cost=cost, acc_q=acc_q,
                             cost_q=[cost] * 30, method="sc", label=f"SC@{i}"))
    found = {(d.beta, d.by) for d in scoring.frontier_dominance(cand, base)}
    for o in cand:
        by_compare = {b.label for b in base if compare([o], [b], "a", o.beta).status == "dominated"}
        mine = {label for beta, label in found if beta == o.beta}
        assert mine <= by_compare and bool(mine) == bool(by_compare)


def test_the_fitness_lower_bound_is_reproducible_and_wider_for_a_noisier_curve():
    base = [_q("a", None, 15, 1_000, method="sc", label="SC@1")]
    steady = [_q("a", 0.5, 16, 1_000)]  # every question at 16/30 over seeds
    noisy = [_q("a", 0.5, 16, 1_000, spread=True)]  # 16 questions always right, 14 never
    value, low = scoring.fitness_lower_bound(noisy, base, seed=5)
    assert (value, low) == scoring.fitness_lower_bound(noisy, base, seed=5)
    assert scoring.fitness_lower_bound(noisy, base, seed=6)[1] != low
    steady_value, steady_low = scoring.fitness_lower_bound(steady, base, seed=5)
    assert value == pytest.approx(steady_value) and low < steady_low == pytest.approx(steady_value)
