"""The field's other answer-only baselines (more-baselines spec) on hand-built questions whose outcome the
spec's rules fix: stop points, exit answers, tie-breaks, 'ERR' handling, branch exhaustion; then determinism,
no state across solves, observed answers only and beta monotonicity on the shipped data."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from autotts_graph.sandbox.runtime import bayes
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.sandbox.runtime.replay import Question, QuestionData, shuffle_order
from autotts_graph.sandbox.runtime.validate import check_schedule
from autotts_graph.tools import bayes_prior
from autotts_graph.tools.baselines import BUDGETS, METHODS, NEW_METHODS, baseline_source, bayes_schedule

DELTA = 500
NEW_SOURCES = sorted({METHODS[m].source for m in NEW_METHODS})


def cls_of(name: str):
    """The controller class of a source file under sandbox/controllers/."""
    path = Path(__file__).resolve().parents[2] / "sandbox" / "controllers" / f"{name}.py"
    return load_controller_class(path.read_text())


def helper(source: str, name: str):
    """A module-level function of a controller source (its globals, whatever module the loader made)."""
    return cls_of(source).solve.__globals__[name]


def question(branches: list[tuple[list[str], int, str]], seed: int = 0) -> Question:
    """A Question whose *shuffled* positions 0, 1, ... hold ``branches`` in the given order (probes, tokens, final)."""
    n = len(branches)
    file_order: list = [None] * n
    for pos, j in enumerate(shuffle_order(seed, n)):
        file_order[j] = branches[pos]
    data = QuestionData(probe_freq=DELTA, probes=tuple(tuple(b[0]) for b in file_order),
                        tokens=tuple(b[1] for b in file_order), finals=tuple(b[2] for b in file_order))
    return Question(data, seed)


def full(final: str, tokens: int = 1000) -> tuple[list[str], int, str]:
    """A branch meant for full reads (its probes are never seen)."""
    return ([final], tokens, final)


def chain(probes: list[str], final: str | None = None) -> tuple[list[str], int, str]:
    """A branch meant for probing: its tokens equal its probes' length, so a read to the end costs len*Δ."""
    return (probes, len(probes) * DELTA, final if final is not None else probes[-1])


def solve(source: str, branches, config: dict) -> tuple[str | None, int, list[str]]:
    """(answer, cost, trace events) of one solve with tracing on."""
    ctrl = cls_of(source)(config)
    ctrl.trace.enabled = True
    env = question(branches)
    answer = ctrl(env)
    events = [s["event"] for s in ctrl.trace.steps]
    assert events[0] == "start" and events[-1] == "finish" and events.count("finish") == 1
    json.dumps(ctrl.trace.steps)
    return answer, env.total_cost, events


# ---- Optimal Bayesian stopping (§1) ------------------------------------------------------------------------

def test_bayes_schedule_and_budget_labels_follow_the_spec():
    cls = cls_of("bayes_stop")
    for beta, thr, n_max in ((0.0, 0.9, 4), (0.5, 0.99, 16), (1.0, 0.999, 64)):
        p = cls({"beta": beta}).params
        assert p["threshold"] == pytest.approx(thr, abs=1e-12) and p["max_samples"] == n_max
        assert bayes_schedule({"beta": beta}) == (p["threshold"], p["max_samples"])


def test_bayes_stops_on_unanimity_where_the_posterior_crosses_the_threshold():
    # Parameter-free posterior of 1..5 unanimous reads: .464, .816, .952, .987, .997.
    assert [round(bayes.bayes_posterior(a, 0, a), 3) for a in range(1, 6)] == [0.464, 0.816, 0.952, 0.987, 0.997]
    branches = [full("7", 1000 + i) for i in range(20)]
    answer, cost, _ = solve("bayes_stop", branches, {"beta": 0.0})  # threshold 0.9: 3 reads
    assert (answer, cost) == ("7", 1000 + 1001 + 1002)
    answer, cost, _ = solve("bayes_stop", branches, {"beta": 0.5})  # threshold 0.99: 5 reads
    assert (answer, cost) == ("7", sum(1000 + i for i in range(5)))


def test_bayes_err_votes_and_ties_go_to_the_first_read():
    assert solve("bayes_stop", [full("ERR")] * 6, {"beta": 0.0})[0] == "ERR"
    # β = 0: at most 4 reads; A B B A never reaches 0.9, the 2-2 tie goes to A (read first).
    assert bayes.bayes_posterior(2, 2, 4) < 0.9
    answer, cost, events = solve("bayes_stop", [full("A"), full("B"), full("B"), full("A"), full("B")], {"beta": 0.0})
    assert (answer, cost) == ("A", 4000) and events.count("posterior_check") == 4


def test_bayes_branch_exhaustion_and_no_branch():
    answer, cost, events = solve("bayes_stop", [full("A"), full("B")], {"beta": 1.0})
    assert (answer, cost) == ("A", 2000) and "read_stop" in events
    assert solve("bayes_stop", [], {"beta": 1.0})[:2] == (None, 0)


def test_bayes_fitted_stop_table_is_used_when_given():
    # Stop at n = 2 with a = 2, b = 0 only (a table the host would build for a very peaked prior).
    stop_at = [[[]], [[]], [[2, 2], []]]
    answer, cost, _ = solve("bayes_stop", [full("5")] * 6, {"beta": 0.0, "stop_at": stop_at})
    assert (answer, cost) == ("5", 2000)
    # Beyond the table's rows: never stop, read to max_samples (4 at β = 0), then the majority.
    answer, cost, _ = solve("bayes_stop", [full("5"), full("6")] + [full("5")] * 4, {"beta": 0.0, "stop_at": stop_at})
    assert (answer, cost) == ("5", 4000)


def _brute_posterior(cands: list[list[float]], a: int, b: int, n: int) -> float:
    """The spec's formula summed term by term (independent of the DP): sums over integer vectors r."""
    s, c = n - a - b, (2 if a == b else 1)
    if b == 0 and s:
        return 0.0  # every read agreed, so n = a: any other state cannot occur
    num = den = 0.0
    for q in cands:
        if b == 0:
            num += q[0] ** a
            den += sum(x**a for x in q)
            continue
        for i, j in itertools.permutations(range(len(q)), 2):
            tail = [q[k] for k in range(len(q)) if k not in (i, j)]
            t_ij = 0.0
            for r in itertools.product(range(min(b, s) + 1), repeat=len(tail)):
                if sum(r) != s:
                    continue
                m = sum(1 for x in r if x == b)
                term = math.prod(qk**rk / math.factorial(rk) for qk, rk in zip(tail, r, strict=True))
                t_ij += term / math.comb(c + m, c)
            lik = q[i] ** a * q[j] ** b * t_ij
            den += lik
            num += lik if i == 0 else 0.0
    return num / den if den > 0 else 0.0


def test_posterior_dp_matches_the_formula_term_by_term():
    cands = [[0.5, 0.2, 0.15, 0.1, 0.05], [0.3, 0.3, 0.2, 0.1, 0.1], [0.9, 0.05, 0.05], [0.25] * 4]
    num, den = bayes_prior.posterior_parts(cands, n_max=10)
    p = bayes_prior.posterior(num, den)
    for a, b, n in bayes_prior.flat_states(10):
        assert p[a, b, n] == pytest.approx(_brute_posterior(cands, a, b, n), rel=1e-12, abs=1e-15)
    # Leaving a candidate out is the prior of the others (no subtraction).
    p_loo = bayes_prior.posterior(num, den, exclude=1)
    assert p_loo[3, 1, 6] == pytest.approx(_brute_posterior([cands[0], cands[2], cands[3]], 3, 1, 6), rel=1e-12)
    # s = 8 other answers, each at most b = 1, but no candidate has more than 3 tail answers: P = 0.
    assert p[1, 1, 10] == 0.0


def test_shipped_table_is_the_geometric_prior():
    """The stdlib-read table is the shipped file bit for bit (what the box reads under PyPy and CPython alike),
    and that file is a fresh numpy computation of the prior (scripts/make_bayes_table.py's output) to the last
    ulp or so: numpy's vectorised pow and sums may round differently from one release or CPU to another."""
    num, den = bayes_prior.posterior_parts(bayes_prior.geometric_prior())
    p = bayes_prior.posterior(num, den)
    from autotts_graph.sandbox.runtime.npyfile import load_npy

    path = Path(bayes.__file__).with_name("bayes_posterior.npy")
    assert load_npy(str(path)) == np.load(path).tolist()
    for a, b, n in bayes_prior.flat_states():
        assert bayes.bayes_posterior(a, b, n) == pytest.approx(float(p[a, b, n]), rel=1e-13, abs=1e-300)
    assert bayes.bayes_posterior(0, 0, 3) == bayes.bayes_posterior(3, 0, 65) == bayes.bayes_posterior(2, 3, 6) == 0.0


# ---- Dynasor-CoT (§2a) -------------------------------------------------------------------------------------

def test_dynasor_exits_on_n_identical_valid_probes():
    # β = 0: N = 2, k = 1. 'ERR ERR' does not count; '5 5' exits after 4 chunks with 5.
    answer, cost, _ = solve("dynasor", [chain(["ERR", "ERR", "5", "5", "7"])], {"beta": 0.0})
    assert (answer, cost) == ("5", 4 * DELTA)


def test_dynasor_runs_to_the_final_answer_without_a_window():
    answer, cost, _ = solve("dynasor", [chain(["ERR", "ERR", "ERR"], final="9")], {"beta": 0.0})
    assert (answer, cost) == ("9", 3 * DELTA)  # the finishing advance charges max(0, Tk - 3Δ) = 0
    answer, cost, _ = solve("dynasor", [(["1", "2", "3"], 1700, "3")], {"beta": 0.0})
    assert (answer, cost) == ("3", 1700)


def test_dynasor_exit_at_k_votes_in_opening_order():
    a, b = chain(["A", "A", "x"]), chain(["B", "B", "y"])
    answer, cost, events = solve("dynasor", [a, b, b, a], {"N": 2, "k": 3})
    assert (answer, cost, events.count("branch_exit")) == ("B", 3 * 2 * DELTA, 3)
    assert solve("dynasor", [a, b, b], {"N": 2, "k": 2})[0] == "A"  # 1-1: the branch opened first
    answer, cost, events = solve("dynasor", [a, b], {"N": 2, "k": 5})  # exhaustion
    assert (answer, cost, events.count("branch_exit")) == ("A", 4 * DELTA, 2) and "open_stop" in events


def test_dynasor_schedule():
    cls = cls_of("dynasor")
    assert [(cls({"beta": b}).params["N"], cls({"beta": b}).params["k"]) for b in (0.0, 0.5, 1.0)] == [
        (2, 1), (9, 8), (16, 64)]
    assert [round(64 ** (i / 10)) for i in range(11)] == [1, 2, 2, 3, 5, 8, 12, 18, 28, 42, 64]


# ---- ES-CoT (§3) -------------------------------------------------------------------------------------------

def test_es_cot_first_run_and_err_rules():
    # β = 0: d_min = 2. One run of length 2 stops.
    assert solve("es_cot", [chain(["A", "A", "B"])], {"beta": 0.0})[:2] == ("A", 2 * DELTA)
    # 'ERR' never stops, even in a long run.
    assert solve("es_cot", [chain(["ERR"] * 4, final="4")], {"beta": 0.0})[:2] == ("4", 4 * DELTA)


def test_es_cot_second_run_needs_d_min_growth_and_passes_without_history():
    # d_min = 3: runs [1, 4] give d = 3 with fewer than two earlier differences: stop at the 5th probe.
    assert solve("es_cot", [chain(["A", "B", "B", "B", "B", "B", "C"])], {"d_min": 3, "k": 1})[:2] == ("B", 5 * DELTA)


def test_es_cot_constant_history_passes_iff_its_mean_is_below_d():
    # Runs 1, 2, 3, then D: differences 1, 1 (sd 0, mean 1) and d = 2 at D's 5th probe.
    probes = ["A", "B", "B", "C", "C", "C"] + ["D"] * 7
    assert solve("es_cot", [chain(probes)], {"d_min": 2, "k": 1})[:2] == ("D", 11 * DELTA)


def test_es_cot_t_test_decides_the_stop():
    # Runs 2, 1, 2, then C: earlier differences -1, 1; d = r - 2. One-sided p of "mean < d" with df = 1 is
    # 0.5 - atan(d)/π: 0.078 (d 4), 0.063 (5), 0.053 (6), 0.045 (7): the stop is at C's 9th probe.
    t_less_pvalue = helper("es_cot", "t_less_pvalue")
    for d, p in ((4, 0.0780), (5, 0.0628), (6, 0.0526), (7, 0.0452)):
        assert t_less_pvalue([-1, 1], d) == pytest.approx(0.5 - math.atan(d) / math.pi, rel=1e-12)
        assert round(t_less_pvalue([-1, 1], d), 4) == p
    probes = ["A", "A", "B", "A", "A"] + ["C"] * 12
    assert solve("es_cot", [chain(probes)], {"d_min": 4, "k": 1})[:2] == ("C", 14 * DELTA)


def test_es_cot_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    t_less_pvalue = helper("es_cot", "t_less_pvalue")
    for sample, d in (([1, 3, 2], 4), ([0, -2, 5, 1], 3), ([2, 2, 3], 2.5), ([-3, 4, 1, 1, 0], 6)):
        assert t_less_pvalue(sample, d) == pytest.approx(
            stats.ttest_1samp(sample, d, alternative="less").pvalue, rel=1e-12)


# ---- Certaindex-SC (§2b) -----------------------------------------------------------------------------------

def test_certaindex_stops_only_on_unanimity_of_five():
    assert solve("certaindex", [full("3")] * 10, {"beta": 1.0})[:2] == ("3", 5000)
    # 4-1 gives 0.689 < 0.7: read on to the cap (8 here), then vote.
    answer, cost, events = solve("certaindex", [full("3")] * 4 + [full("4")] * 6, {"cap": 9})
    assert (answer, cost, events.count("finish")) == ("4", 9000, 1)
    assert round(helper("certaindex", "certaindex")(["3"] * 4 + ["4"]), 3) == 0.689


def test_certaindex_ties_err_and_exhaustion():
    answer, cost, _ = solve("certaindex", [full("A"), full("B"), full("A"), full("B"), full("C"), full("C")],
                            {"cap": 6})
    assert (answer, cost) == ("A", 6000)  # 2-2-2: the first read
    assert solve("certaindex", [full("ERR")] * 5, {"beta": 0.0})[0] == "ERR"
    assert solve("certaindex", [full("9")] * 3, {"beta": 1.0})[:2] == ("9", 3000)  # 3 unanimous reads: certain
    assert solve("certaindex", [full("9")], {"beta": 1.0})[:2] == ("9", 1000)
    assert solve("certaindex", [], {"beta": 1.0})[:2] == (None, 0)


# ---- short-m@k (§4) ----------------------------------------------------------------------------------------

def test_short_1_returns_the_first_finisher_and_leaves_the_rest():
    # k = 3, lengths 3, 1, 2. Round 1: branch 0 reads its 2nd probe, branch 1 finishes; branch 2 is not advanced.
    branches = [(["a", "a", "a"], 1500, "A"), (["b"], 800, "B"), (["c", "c"], 1000, "C")]
    answer, cost, _ = solve("short_m_at_k", branches, {"m": 1, "k": 3})
    assert (answer, cost) == ("B", 3 * DELTA + DELTA + max(0, 800 - DELTA))


def test_short_3_ties_go_to_the_shortest_then_the_first_opened():
    # Lengths 2, 1, 3, 1: finish order Q (round 1), S (round 1), P (round 2); 1-1-1 -> Q.
    branches = [(["p", "p"], 1000, "P"), (["q"], 500, "Q"), (["r", "r", "r"], 1500, "R"), (["s"], 500, "S")]
    answer, cost, events = solve("short_m_at_k", branches, {"m": 3, "k": 4})
    assert answer == "Q" and cost == 4 * DELTA + DELTA + DELTA  # R is advanced once in round 1 only
    # Two of three agree: majority wins over shortness.
    branches = [(["p", "p"], 1000, "P"), (["q"], 500, "Q"), (["r", "r"], 1000, "P")]
    assert solve("short_m_at_k", branches, {"m": 3, "k": 3})[0] == "P"


def test_short_m_votes_err_and_uses_fewer_than_m_finishers():
    branches = [(["x"], 500, "ERR"), (["x"], 500, "ERR"), (["x", "y"], 1000, "7")]
    assert solve("short_m_at_k", branches, {"m": 3, "k": 3})[0] == "ERR"
    answer, cost, events = solve("short_m_at_k", [chain(["1", "2"]), chain(["3"])], {"beta": 1.0})  # k = 64
    assert (answer, cost) == ("3", 3 * DELTA)  # both finished (fewer than 3): 1-1, the shorter
    assert solve("short_m_at_k", [], {"beta": 1.0})[:2] == (None, 0)


def test_short_schedule_keeps_k_at_least_m():
    cls = cls_of("short_m_at_k")
    assert cls({"beta": 0.0}).params == {"m": 3, "k": 3}
    assert cls({"beta": 0.0, "m": 1}).params == {"m": 1, "k": 1}
    assert cls({"beta": 1.0, "m": 1}).params["k"] == 64


# ---- DeepConf-consensus (§5) -------------------------------------------------------------------------------

def test_deepconf_share_threshold_after_warm_up():
    cls = cls_of("deepconf_consensus")
    assert cls({"beta": 0.0}).params == {"budget": 2, "n_init": 2}
    assert cls({"beta": 1.0}).params == {"budget": 64, "n_init": 16}
    assert solve("deepconf_consensus", [full("1")] * 30, {"beta": 1.0})[:2] == ("1", 16 * 1000)
    # One dissent among the first 16: 15/16, 16/17, 17/18, 18/19 < 0.95 <= 19/20.
    branches = [full("1")] * 5 + [full("2")] + [full("1")] * 30
    assert solve("deepconf_consensus", branches, {"beta": 1.0})[:2] == ("1", 20 * 1000)
    # β = 0: two reads; a 1-1 split hits the budget and goes to the first read.
    assert solve("deepconf_consensus", [full("2"), full("1"), full("1")], {"beta": 0.0})[:2] == ("2", 2000)
    assert solve("deepconf_consensus", [full("ERR")] * 3, {"beta": 0.0})[0] == "ERR"
    assert solve("deepconf_consensus", [], {"beta": 0.5})[:2] == (None, 0)


# ---- every new controller on the shipped data --------------------------------------------------------------

class Recording:
    """A Question proxy that remembers every answer the primitives returned."""

    def __init__(self, env: Question) -> None:
        self.env = env
        self.seen: set[str] = set()

    def probe_new(self):
        out = self.env.probe_new()
        self.seen.add(out[0])
        return out

    def probe_more(self, i):
        out = self.env.probe_more(i)
        self.seen.add(out[0])
        return out

    def get_new_branch_final_answer(self):
        out = self.env.get_new_branch_final_answer()
        self.seen.add(out)
        return out


@pytest.fixture(scope="module")
def shipped(records_4b) -> list[QuestionData]:
    return [QuestionData(probe_freq=r["probe_freq"], probes=tuple(tuple(b[0]) for b in r["each_branch"]),
                         tokens=tuple(b[1] for b in r["each_branch"]), finals=tuple(b[2] for b in r["each_branch"]))
            for r in records_4b]


@pytest.mark.parametrize("source", NEW_SOURCES)
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_deterministic_stateless_and_observed_only(shipped, source, beta):
    cls = cls_of(source)
    reused = cls({"beta": beta})
    first = []
    for seed in (0, 1):
        for data in shipped:
            env = Recording(Question(data, seed))
            answer = reused(env)
            assert answer is None or answer in env.seen  # an answer it was actually shown
            first.append((answer, env.env.total_cost))
    # A fresh controller per solve, in reverse order, gives the same answers and costs: no state across solves.
    fresh = {}
    for seed in (1, 0):
        for qi in reversed(range(len(shipped))):
            env = Question(shipped[qi], seed)
            fresh[(seed, qi)] = (cls({"beta": beta})(env), env.total_cost)
    assert first == [fresh[(seed, qi)] for seed in (0, 1) for qi in range(len(shipped))]


@pytest.mark.parametrize("source", NEW_SOURCES)
def test_schedules_pass_the_validator(source):
    _, errors = check_schedule(cls_of(source))
    assert errors == []


@pytest.mark.parametrize("method", [m for m in NEW_METHODS if METHODS[m].source != "bayes_stop"] + ["bayes"])
def test_table_labels_use_the_controllers_budgets(method):
    cls = load_controller_class(baseline_source(method))
    key = {"dynasor": "k", "es_cot": "k", "certaindex": "cap", "short1": "k", "short3": "k", "deepconf": "budget",
           "bayes": "max_samples"}[method]
    for config in METHODS[method].sweep:
        assert BUDGETS[method][0] == key and BUDGETS[method][1](config) == cls(config).params[key]
