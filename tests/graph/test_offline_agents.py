"""The offline roles: proposer (grammar search), critic (static rules) and diagnostician (statistics)."""

from __future__ import annotations

import random

import pytest
from autotts_graph.graph.agents.codegen import generate_source
from autotts_graph.graph.agents.genome import KNOBS, Genome, explore, seed_genomes
from autotts_graph.graph.agents.offline_critic import RuleCritic, normalised_tokens, similarity
from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician
from autotts_graph.graph.agents.offline_proposer import HeuristicProposer
from autotts_graph.graph.agents.roles import (
    BaselinePoint,
    CriticInput,
    CurvePoint,
    DiagnoseInput,
    Diagnosis,
    HistoryEntry,
    ProposerInput,
    QuestionOutcome,
    TraceSample,
)
from autotts_graph.graph.scoring import fitness, non_dominated_points
from autotts_graph.sandbox.judge import score_in_process
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.sandbox.runtime.validate import BETA_GRID, validate_source
from autotts_graph.store.packs import write_pack
from autotts_graph.tools.validate import static_issues

BETAS = [0.0, 0.5, 1.0]


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory, tiny_records):
    records = tiny_records(n_questions=4, n_branches=24, seed=5)
    return write_pack("tiny/offline", records, tmp_path_factory.mktemp("packs"))


def _curve(acc0: float, acc1: float, cost0: float = 50_000, cost1: float = 400_000) -> list[CurvePoint]:
    return [CurvePoint(env=e, beta=b, accuracy=acc0 + (acc1 - acc0) * b, avg_cost=cost0 + (cost1 - cost0) * b)
            for e in ("m/a", "m/b") for b in BETAS]


BASELINES = [BaselinePoint(method="asc", label=f"ASC({k})", env=e, accuracy=50 + 4 * i, avg_cost=30_000 * 2 ** i)
             for e in ("m/a", "m/b") for i, k in enumerate((1, 2, 4, 8, 16))]


def _inp(history=(), **over) -> ProposerInput:
    base = dict(round=len(history), search_envs=["m/a", "m/b"], betas=BETAS, history=list(history),
                baselines=BASELINES, seed=0)
    base.update(over)
    return ProposerInput(**base)


def _evaluated(cid: str, genome: Genome, curve: list[CurvePoint], actions: list[str] | None = None) -> HistoryEntry:
    diagnosis = Diagnosis(summary="test", actions=actions or [])
    return HistoryEntry(candidate_id=cid, round=int(cid[1:]), source=generate_source(genome), curve=curve,
                        diagnosis=diagnosis, genome=genome.model_dump())


# --------------------------------------------------------------------------- genome and codegen

def test_random_genomes_have_monotone_schedules_in_the_declared_direction():
    rng = random.Random(3)
    genome = seed_genomes()[0]
    for _ in range(300):
        genome = explore(genome, rng)[0]
        table = [genome.schedule(b) for b in BETA_GRID]
        for knob in genome.active_knobs():
            values = [row[knob] for row in table]
            pairs = list(zip(values, values[1:], strict=False))
            if KNOBS[knob].direction == "up":
                assert all(a <= b for a, b in pairs), (knob, values)
            else:
                assert all(a >= b for a, b in pairs), (knob, values)


def test_genome_validator_orders_and_clips_ramps():
    g = Genome.model_validate({"ramps": {"n_init": {"lo": 9, "hi": 2}, "ema_alpha": {"lo": 0.1, "hi": 0.9},
                                         "max_branches": {"lo": 10, "hi": 500}}})
    assert (g.ramps["n_init"].lo, g.ramps["n_init"].hi) == (2, 9)
    assert g.ramps["ema_alpha"].lo >= g.ramps["ema_alpha"].hi
    assert g.schedule(1.0)["max_branches"] == 64
    with pytest.raises(ValueError):
        Genome.model_validate({"ramps": {"not_a_knob": {"lo": 1, "hi": 2}}})


def test_generated_schedule_equals_the_genome_schedule(tiny_pack):
    for genome in seed_genomes():
        cls = load_controller_class(generate_source(genome))
        for beta in BETA_GRID:
            assert cls({"beta": beta}).params == genome.schedule(beta)


def test_generated_controllers_pass_the_contract_and_run(tiny_pack):
    for genome in seed_genomes():
        source = generate_source(genome, title="T", rationale="why")
        assert static_issues(source) == ([], [])
        report = validate_source(source, load_pack(tiny_pack))
        assert report["ok"], report["errors"]
        cls = load_controller_class(source)
        costs = []
        for beta in (0.0, 1.0):
            res = score_in_process(cls, tiny_pack, {"beta": beta}, seeds=[0, 1], trace_seeds=frozenset({0}))
            costs.append(res["avg_cost"])
            events = [s["event"] for s in res["traces"][0]["trace"]]
            assert events[0] == "start" and events[-1] == "finish" and events.count("finish") == 1
            assert {"init_branches", "forward", "terminate_check"} <= set(events)
        assert costs[1] >= costs[0]  # more beta, more budget


# --------------------------------------------------------------------------- proposer

def test_round_zero_is_the_seed_mix_and_proposals_are_reproducible():
    p = HeuristicProposer(seed=1)
    first = p.propose(_inp())
    assert Genome.model_validate(first.genome).key() == seed_genomes()[0].key()
    history = [_evaluated("r0", seed_genomes()[0], _curve(60, 70), ["stricter_stop", "more_width"])]
    a = HeuristicProposer(seed=1).propose(_inp(history))
    b = HeuristicProposer(seed=1).propose(_inp(history))
    assert a.source == b.source and a.genome == b.genome
    others = {HeuristicProposer(seed=s).propose(_inp(history)).source for s in range(2, 8)}
    assert len(others) > 1  # the seed drives exploration
    assert a.parent_id == "r0"


def test_proposer_never_repeats_a_genome_and_always_passes_the_contract(tiny_pack):
    proposer = HeuristicProposer(seed=0)
    history: list[HistoryEntry] = []
    keys = set()
    actions_cycle = [["stricter_stop", "more_width"], ["looser_stop"], ["less_pruning"], ["deeper_probing"],
                     ["wasted_tokens_unknown_action"], []]
    for rnd in range(14):
        prop = proposer.propose(_inp(history, round=rnd))
        genome = Genome.model_validate(prop.genome)
        assert genome.key() not in keys
        keys.add(genome.key())
        assert static_issues(prop.source)[0] == []
        report = validate_source(prop.source, load_pack(tiny_pack), smoke_questions=2)
        assert report["ok"], (genome.describe(), report["errors"])
        curve = _curve(55 + rnd % 5, 70 + (rnd * 7) % 9)
        history.append(_evaluated(f"r{rnd}", genome, curve, actions_cycle[rnd % len(actions_cycle)]))


STRICT_KNOBS = {"conf_thresh": 1, "min_complete": 1, "window": 1, "quorum": 1, "margin": 1, "ema_alpha": -1,
                "slack": -1, "exit_run": 1}
WIDTH_KNOBS = {"n_init": 1, "max_branches": 1, "widen_burst": 1, "widen_conf": 1, "agree_share": 1, "width": 1,
               "widen_gain": 1}


@pytest.mark.parametrize(("action", "knobs", "decision"), [("stricter_stop", STRICT_KNOBS, "stop"),
                                                           ("more_width", WIDTH_KNOBS, "widen")])
def test_diagnosis_actions_move_the_right_knobs(action, knobs, decision):
    parent = seed_genomes()[0]
    moved = 0
    for seed in range(12):
        proposer = HeuristicProposer(seed=seed, explore_rate=0.0, crossover_rate=0.0, fresh_seed_rate=0.0)
        child = Genome.model_validate(proposer.propose(_inp([_evaluated("r0", parent, _curve(60, 70), [action])]))
                                      .genome)
        if getattr(child, decision) != getattr(parent, decision):
            moved += 1
            continue
        for beta in BETA_GRID:
            c, p = child.ramps, parent.ramps
            for knob, sign in knobs.items():
                delta = c[knob].value(beta, KNOBS[knob]) - p[knob].value(beta, KNOBS[knob])
                assert sign * delta >= 0, (action, knob, beta)  # never the opposite direction
        if any(child.ramps[k] != parent.ramps[k] for k in knobs):
            moved += 1
    assert moved == 12


def test_novelty_feedback_forces_a_structural_change():
    parent = seed_genomes()[0]
    history = [_evaluated("r0", parent, _curve(60, 70), ["looser_stop"])]
    prop = HeuristicProposer(seed=4).propose(_inp(history, attempt=1, feedback=["novelty: 0.999 similar to r0"]))
    child = Genome.model_validate(prop.genome)
    assert child.describe() != parent.describe()


# --------------------------------------------------------------------------- critic

def test_critic_approves_a_generated_controller_and_rejects_its_duplicate():
    critic = RuleCritic()
    source = generate_source(seed_genomes()[1])
    ok = critic.review(CriticInput(source=source))
    assert ok.approve, ok.reasons
    history = [HistoryEntry(candidate_id="r0", round=0, source=source)]
    renamed = source.replace("branches", "pool_of_branches").replace("Offline-discovered", "Renamed")
    dup = critic.review(CriticInput(source=renamed, history=history))
    assert not dup.approve and dup.max_similarity > 0.999
    assert any("novelty" in r for r in dup.reasons)
    other = critic.review(CriticInput(source=generate_source(seed_genomes()[3]), history=history))
    assert other.approve and other.max_similarity < 0.99


def test_critic_rules_give_actionable_reasons():
    critic = RuleCritic()
    base = generate_source(seed_genomes()[0])
    bad_import = "import os\n" + base
    assert any("os" in r for r in critic.review(CriticInput(source=bad_import)).reasons)
    oracle = base.replace("        ready = warm and",
                          "        ready = question.get_seq_and_total_tokens()[1] < 9 and warm and")
    assert any("oracle" in r for r in critic.review(CriticInput(source=oracle)).reasons)
    knob = base.replace('p = self.params', 'p = dict(self.params, extra=self.config.get("width"))')
    assert any("single knob" in r for r in critic.review(CriticInput(source=knob)).reasons)
    no_finish = base.replace('"finish"', '"end"')
    assert any("'finish'" in r for r in critic.review(CriticInput(source=no_finish)).reasons)
    schedule = {"0.0": {"a": 1, "b": 3}, "0.5": {"a": 2, "b": 1}, "1.0": {"a": 3, "b": 2}}
    verdict = critic.review(CriticInput(source=base, schedule=schedule))
    assert not verdict.approve and any("'b' is not monotone" in r for r in verdict.reasons)
    assert any("check error" in r for r in critic.review(CriticInput(source=base, check_errors=["boom"])).reasons)
    cmc = (critic_baseline := RuleCritic())._baselines.get("cmc")
    assert cmc, "baseline sources are compared for novelty"
    from autotts_graph.graph.agents.offline_critic import BASELINE_DIR

    assert not critic_baseline.review(CriticInput(source=(BASELINE_DIR / "cmc.py").read_text())).approve


def test_normalised_similarity_ignores_names_but_not_numbers():
    a = normalised_tokens("def f(x):\n    '''doc'''\n    return x + 1\n")
    b = normalised_tokens("def g(y):\n    '''other'''\n    return y + 1\n")
    c = normalised_tokens("def g(y):\n    return y * 2\n")
    assert similarity(a, b) == 1.0
    assert similarity(a, c) < 1.0


# --------------------------------------------------------------------------- diagnostician

def _trace(env, q, beta, seed, correct, reason, answer="1", winners=(), chunks=(), pruned=()):
    steps = [{"event": "start"}]
    for w, c in zip(winners, chunks, strict=True):
        steps.append({"event": "forward", "output": {"chunks": c}})
        steps.append({"event": "terminate_check", "output": {"winner": w}})
    if pruned:
        steps.append({"event": "prune", "output": {"pruned": len(pruned), "answers": list(pruned)}})
    steps.append({"event": "finish", "output": {"answer": answer}, "decision": {"reason": reason}})
    return TraceSample(env=env, beta=beta, seed=seed, question_index=q, is_correct=correct, cost=1000,
                       answer=answer, steps=steps)


def test_diagnostician_finds_premature_stops_and_asks_for_stricter_stopping():
    outcomes = [QuestionOutcome(env="m/a", beta=b, question_index=q, gold="7", accuracy=0.2 if b < 1 else 0.9,
                                mean_tokens=1000 * (1 + 3 * b), modal_answer="7") for q in range(3) for b in BETAS]
    traces = [_trace("m/a", q, 0.5, 0, False, "ema_momentum_gate", answer="3") for q in range(3)]
    traces.append(_trace("m/a", 0, 1.0, 0, True, "ema_momentum_gate", answer="7"))
    d = StatsDiagnostician().diagnose(DiagnoseInput(candidate_id="c", source="", outcomes=outcomes, traces=traces,
                                                    curve=_curve(60, 70)))
    kinds = {m.kind: m for m in d.failure_modes}
    assert kinds["premature_stop"].count == 3
    assert "m/a q0 β=0.5 seed 0" in kinds["premature_stop"].examples
    assert "stricter_stop" in d.actions


def test_diagnostician_counts_pruned_gold_waste_and_non_convergence():
    outcomes = [QuestionOutcome(env="m/a", beta=b, question_index=0, gold="7", accuracy=0.5,
                                mean_tokens=1000 + 5000 * b, modal_answer="7") for b in BETAS]
    traces = [
        _trace("m/a", 0, 0.5, 0, False, "loop_end", answer="3", pruned=("7", "5")),
        _trace("m/a", 0, 1.0, 0, True, "quorum", answer="7", winners=("3", "7", "7", "7"), chunks=(10, 20, 60, 100)),
    ]
    d = StatsDiagnostician().diagnose(DiagnoseInput(candidate_id="c", source="", outcomes=outcomes, traces=traces))
    kinds = {m.kind: m for m in d.failure_modes}
    assert kinds["pruned_correct"].count == 1 and "less_pruning" in d.actions
    assert kinds["never_converged"].count == 1
    assert kinds["wasted_tokens"].count >= 1  # settled at 20 of 100 chunks; flat accuracy at 3x tokens


def test_diagnostician_reports_below_baseline_and_crashes():
    d = StatsDiagnostician().diagnose(DiagnoseInput(candidate_id="c", source="", curve=_curve(40, 40.5),
                                                    baselines=BASELINES))
    kinds = {m.kind: m for m in d.failure_modes}
    assert kinds["below_baseline"].count > 0 and kinds["below_baseline"].evidence
    assert "no_scaling" in kinds
    crash = StatsDiagnostician().diagnose(DiagnoseInput(candidate_id="c", source="", error_kind="runtime",
                                                        error="ZeroDivisionError"))
    assert crash.crashed and crash.actions == ["fix_crash"]


# --------------------------------------------------------------------------- fitness and domination

def test_fitness_and_non_domination_on_the_mean_over_envs():
    good, bad = _curve(70, 80, 20_000, 200_000), _curve(45, 50)
    assert fitness(good, BASELINES) > 0 > fitness(bad, BASELINES)
    rows = non_dominated_points(good, BASELINES, "mean")
    assert len(rows) == 3 and all(r["dominated_by"] is None for r in rows)
    bad_rows = non_dominated_points(bad, BASELINES, "env")
    assert all(r["dominated_by"] for r in bad_rows)


def test_roles_have_names_and_zero_spend():
    for role, name in ((HeuristicProposer(), "offline-proposer"), (RuleCritic(), "offline-critic"),
                       (StatsDiagnostician(), "offline-diagnostician")):
        assert role.name == name
        assert role.spend().llm_tokens == 0 and role.spend().calls == 0


def test_proposer_avoids_mechanism_mixes_the_history_found_clearly_worse():
    parent = seed_genomes()[0]
    bad = Genome.model_validate({**parent.model_dump(), "leader": "latest"})
    history = [_evaluated("r0", parent, _curve(70, 80, 20_000, 200_000), ["deeper_probing"]),
               _evaluated("r1", bad, _curve(45, 50), ["deeper_probing"])]
    for seed in range(10):
        child = Genome.model_validate(HeuristicProposer(seed=seed).propose(_inp(history)).genome)
        assert (child.leader, child.depth, child.prune, child.stop, child.widen, child.aggregate) != (
            bad.leader, bad.depth, bad.prune, bad.stop, bad.widen, bad.aggregate)
