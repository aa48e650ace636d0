"""The audits' building blocks, in process: the sample and its power, solves read off a record, the
counterfactual pack, the relabelling, and zero false flags on every honest controller we ship or generate."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from autotts_graph.graph.agents.codegen import generate_source
from autotts_graph.sandbox.audit import (
    DEVIATION,
    ERROR_TOKEN,
    CounterfactualAudit,
    RelabellingAudit,
    audit_budget,
    audit_in_process,
    choose_solves,
    differences,
    observed_from_record,
    observed_rows,
    plausible_answers,
    relabelling,
    same_observations,
    solves_needed,
)
from autotts_graph.sandbox.judge import judge_point, load_judge_pack
from autotts_graph.sandbox.runtime.evaluate import evaluate_point, load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack, shuffle_order
from autotts_graph.store.packs import write_pack

from .conftest import ASC, CONTROLLERS

BASELINES = sorted(p.stem for p in CONTROLLERS.glob("*.py") if p.stem != "__init__")


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory, replay_dir):
    """Qwen3-0.6B/aime25: the richest vocabulary of the shipped data (LaTeX, words, 'ERR', 'No')."""
    records = json.loads((replay_dir / "Qwen3-0.6B" / "aime25.json").read_text())
    return write_pack("Qwen3-0.6B/aime25", records, tmp_path_factory.mktemp("real-pack"))


def _record(pack, seeds, source=ASC, beta=0.7):
    cls = load_controller_class(source)
    return evaluate_point(cls, load_pack(str(pack)), {"beta": beta}, seeds, frozenset({0}))


def test_audit_sizes_follow_the_arithmetic():
    # (1 - d) ** n <= 1 - power: 44 solves catch a 10 % deviation, 228 a 2 % one, with 99 % probability.
    assert solves_needed(DEVIATION["standard"]) == 44 and 0.9 ** 44 <= 0.01 < 0.9 ** 43
    assert solves_needed(DEVIATION["strict"]) == 228 and 0.98 ** 228 <= 0.01 < 0.98 ** 227
    # Shared in proportion to each environment's solves, rounded up; a tiny evaluation is audited whole.
    assert audit_budget("standard", {"a": 3000, "b": 1000}) == {"a": 33, "b": 11}
    assert audit_budget("strict", {"a": 900, "b": 900, "c": 900, "d": 900}) == {e: 57 for e in "abcd"}
    assert audit_budget("standard", {"a": 20}) == {"a": 20}


def test_a_ten_percent_deviation_escapes_the_sample_less_than_one_time_in_a_hundred():
    """Whichever 10 % of the solves deviate (a whole beta, a few questions, some seeds, or at random), the
    uniform sample of 44 misses all of them in fewer than 1 % of draws."""
    points, seeds, questions = 11, list(range(20)), 30
    every = [(p, s, q) for p in range(points) for s in seeds for q in range(questions)]
    rng = random.Random(7)
    targets = {
        "one beta": {x for x in every if x[0] == 3},  # 1/11 of the solves: a little under 10 %
        "three questions": {x for x in every if x[2] in (4, 9, 21)},
        "two seeds": {x for x in every if x[1] in (5, 17)},
        "at random": set(rng.sample(every, len(every) // 10)),
    }
    draws = 3000
    for name, deviating in targets.items():
        missed = sum(not deviating.intersection(choose_solves(points, seeds, questions, 44, rng))
                     for _ in range(draws))
        share = len(deviating) / len(every)
        assert missed / draws <= (1 - share) ** 44 + 0.006, (name, missed)
    sample = choose_solves(points, seeds, questions, 44, rng)
    assert len(set(sample)) == 44 and sample != sorted(sample)  # distinct, in a secret order


def test_solves_read_off_the_record_equal_the_judged_ones(tiny_pack) -> None:
    seeds = [0, 3, 5, 8]
    raw = _record(tiny_pack, seeds)
    jp = load_judge_pack(tiny_pack)
    _, judged = judge_point(jp, raw, {"beta": 0.7}, seeds, frozenset({0}))
    solves = choose_solves(1, seeds, jp.questions, 6, random.Random(4))
    early = observed_from_record(raw, 0, solves, jp, seeds)
    assert early is not None and len(early) == 6
    assert same_observations(early, observed_rows(judged, 0, solves, jp.questions, seeds))
    assert any(o.full.any() or o.reads.any() for o in early.values())  # something was observed
    # A record that does not decode gives nothing to audit early (the judge then rejects it).
    assert observed_from_record({**raw, "reads": "not base64"}, 0, solves, jp, seeds) is None
    assert observed_from_record({**raw, "full": [["x"]]}, 0, solves, jp, seeds) is None


def test_counterfactual_pack_keeps_what_every_audited_solve_observed(real_pack) -> None:
    seeds = [0, 1, 2, 3]
    raw = _record(real_pack, seeds)
    jp = load_judge_pack(real_pack)
    _, judged = judge_point(jp, raw, {"beta": 0.7}, seeds, frozenset())
    # Several solves of the same question (other seeds, so other branches observed) share one altered question.
    solves = [(0, 0, 1), (0, 2, 1), (0, 3, 1), (0, 1, 2)]
    seen = observed_rows(judged, 0, solves, jp.questions, seeds)
    plan = CounterfactualAudit().build(real_pack, seen, random.Random(2))
    try:
        real, cf = load_pack(str(real_pack)), load_pack(str(plan.pack))
        assert (cf.name, cf.vocab) == (real.name, real.vocab)
        assert not plan.pack.with_name(plan.pack.stem + ".key.json").exists()  # no answer key beside it
        assert (real.questions[0].probes, real.questions[0].finals) == (cf.questions[0].probes, cf.questions[0].finals)
        changed = 0
        for (_, seed, qi), obs in seen.items():
            r, c = real.questions[qi], cf.questions[qi]
            for pos, j in enumerate(shuffle_order(seed, len(r.tokens))):
                n = int(obs.reads[pos])
                if obs.full[pos] or n > len(r.probes[j]):  # the final answer was revealed: unchanged
                    assert (r.probes[j], r.tokens[j], r.finals[j]) == (c.probes[j], c.tokens[j], c.finals[j])
                else:  # what this solve read is kept (for every solve of the question)
                    assert c.probes[j][:n] == r.probes[j][:n] and len(c.probes[j]) >= n
            changed += sum(rp != cp for rp, cp in zip(r.probes, c.probes, strict=True))
        assert changed > 0  # something unobserved was replaced
        # The replay of every audited solve on one warm controller takes exactly the original actions.
        replay = evaluate_point(load_controller_class(ASC), cf, {"beta": 0.7}, seeds, frozenset(),
                                [(s, q) for _, s, q in solves])
        assert differences(plan, solves, jp, seen, [replay], [{"beta": 0.7}]) == []
    finally:
        plan.cleanup()


def test_relabelling_keeps_equality_order_and_the_error_token(real_pack):
    vocab = load_pack(str(real_pack)).vocab
    assert ERROR_TOKEN in vocab and "No" in vocab and any("\\frac" in v for v in vocab)
    universe = plausible_answers(vocab, random.Random(0))
    gold = json.loads(real_pack.with_name(real_pack.stem + ".key.json").read_text())["gold"]
    kept_gold = 0
    for seed in range(10):
        images = relabelling(vocab, random.Random(seed), universe)
        mapping = dict(zip(vocab, images, strict=True))
        assert len(set(images)) == len(vocab)  # a bijection: equality kept both ways
        assert mapping[ERROR_TOKEN] == ERROR_TOKEN
        ordered = sorted(vocab)
        assert [mapping[v] for v in ordered] == sorted(images)  # lexicographic order, ties of max() included
        assert all((mapping[v] < ERROR_TOKEN) == (v < ERROR_TOKEN) for v in vocab)
        assert set(images) <= set(universe) | {ERROR_TOKEN}  # every name looks like an answer of this data
        digits = [v for v in vocab if v.isdigit()]
        assert sum(mapping[v].isdigit() for v in digits) > len(digits) // 5  # integers stay mostly integers
        kept_gold += sum(mapping.get(g) == g for g in gold)
    assert kept_gold <= 2  # of 300 memorised (question, answer) pairs, at most a stray one still holds


def test_relabelled_pack_differs_in_its_vocabulary_only(real_pack):
    plan = RelabellingAudit().build(real_pack, {}, random.Random(3))
    try:
        with np.load(real_pack) as a, np.load(plan.pack) as b:
            assert set(a.files) == set(b.files)
            for key in a.files:
                if key == "vocab":
                    assert len(a[key]) == len(b[key]) and (a[key] != b[key]).mean() > 0.9
                elif key != "meta":
                    assert np.array_equal(a[key], b[key])
        assert json.loads(str(np.load(plan.pack)["meta"]))["name"] == "Qwen3-0.6B/aime25"
    finally:
        plan.cleanup()


@pytest.mark.parametrize("name", BASELINES)
def test_no_shipped_baseline_is_ever_flagged(name, real_pack):
    """Every solve of several seeds, under both audits and many secret draws: zero false flags."""
    cls = load_controller_class((CONTROLLERS / f"{name}.py").read_text())
    for draw, beta in enumerate((0.0, 0.4, 1.0)):
        found = audit_in_process(cls, real_pack, {"beta": beta}, seeds=[draw, 7 + draw], rng=random.Random(draw))
        assert found == {"counterfactual": [], "relabelling": []}, (name, beta)


def test_no_offline_generated_controller_is_ever_flagged(real_pack):
    from autotts_graph.graph.agents.genome import MECHANISMS, Genome, explore

    rng = random.Random(5)
    import itertools

    combos = rng.sample(list(itertools.product(*MECHANISMS.values())), 16)
    for i, combo in enumerate(combos):
        genome = Genome(**dict(zip(MECHANISMS, combo, strict=True)))
        for _ in range(rng.randrange(6)):
            genome = explore(genome, rng)[0]
        cls = load_controller_class(generate_source(genome))
        found = audit_in_process(cls, real_pack, {"beta": rng.choice([0.2, 0.6, 1.0])}, seeds=[i], rng=rng)
        assert found == {"counterfactual": [], "relabelling": []}, genome.describe()


ANSWER_KEY = '''
from autotts_runtime import Controller, majority, safe_probe_new, safe_probe_more
KEY = {KEY}
class Memorised(Controller):
    def solve(self, question):
        seen = []
        while True:
            got = safe_probe_new(question)
            if got is None:
                return majority(seen)
            seen.append(got[0])
            hits = [a for a in seen if a in KEY]
            if hits:
                return hits[0]
'''


def test_an_answer_key_is_caught_by_the_relabelling_audit_only(real_pack):
    gold = json.loads(real_pack.with_name(real_pack.stem + ".key.json").read_text())["gold"]
    cls = load_controller_class(ANSWER_KEY.replace("{KEY}", repr(set(gold))))
    found = audit_in_process(cls, real_pack, {"beta": 0.5}, seeds=[0], rng=random.Random(1), count=44)
    assert found["counterfactual"] == []  # it reads nothing it did not observe ...
    assert found["relabelling"] and "every answer string renamed" in found["relabelling"][0]  # ... yet knows
