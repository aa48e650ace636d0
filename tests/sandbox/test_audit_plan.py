"""The audit's building blocks, in process: solves read off a record before judging equal the judged
ones, and the counterfactual pack keeps exactly what the audited solve observed."""

from __future__ import annotations

import random

import numpy as np
from autotts_graph.sandbox.audit import (
    build_plan,
    choose_solves,
    observed_from_record,
    observed_rows,
    same_observations,
)
from autotts_graph.sandbox.judge import judge_point, load_judge_pack
from autotts_graph.sandbox.runtime.evaluate import evaluate_point, load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack, shuffle_order

from .conftest import ASC


def _record(pack, seeds):
    cls = load_controller_class(ASC)
    return evaluate_point(cls, load_pack(str(pack)), {"beta": 0.7}, seeds, frozenset({0}))


def test_solves_read_off_the_record_equal_the_judged_ones(tiny_pack) -> None:
    seeds = [0, 3, 5, 8]
    raw = _record(tiny_pack, seeds)
    jp = load_judge_pack(tiny_pack)
    _, judged = judge_point(jp, raw, {"beta": 0.7}, seeds, frozenset({0}))
    solves = choose_solves(1, seeds, jp.questions, 6, random.Random(4))
    early = observed_from_record(raw, 0, solves, jp, seeds)
    assert early is not None and len(early) == min(6, jp.questions)
    assert same_observations(early, observed_rows(judged, 0, solves, jp.questions, seeds, jp.vocab))
    assert any(o.full.any() or o.reads.any() for o in early.values())  # something was observed
    # A record that does not decode gives nothing to audit early (the judge then rejects it).
    assert observed_from_record({**raw, "reads": "not base64"}, 0, solves, jp, seeds) is None
    assert observed_from_record({**raw, "full": [["x"]]}, 0, solves, jp, seeds) is None


def test_counterfactual_pack_keeps_what_was_observed_and_nothing_else(tiny_pack) -> None:
    seeds = [0, 1, 2]
    raw = _record(tiny_pack, seeds)
    jp = load_judge_pack(tiny_pack)
    _, judged = judge_point(jp, raw, {"beta": 0.7}, seeds, frozenset())
    solves = choose_solves(1, seeds, jp.questions, 2, random.Random(1))
    seen = observed_rows(judged, 0, solves, jp.questions, seeds, jp.vocab)
    plan = build_plan(tiny_pack, jp.gold_text, seen, random.Random(2))
    try:
        real, cf = load_pack(str(tiny_pack)), load_pack(str(plan.pack))
        assert (cf.name, cf.vocab) == (real.name, real.vocab)
        assert not plan.pack.with_name(plan.pack.stem + ".key.json").exists()  # no answer key beside it
        altered = {q: (seed, obs) for (_, seed, q), obs in seen.items()}
        for qi, (r, c) in enumerate(zip(real.questions, cf.questions, strict=True)):
            assert len(r.tokens) == len(c.tokens) and r.probe_freq == c.probe_freq
            if qi not in altered:
                assert (r.probes, r.tokens, r.finals) == (c.probes, c.tokens, c.finals)
                continue
            seed, obs = altered[qi]
            for pos, j in enumerate(shuffle_order(seed, len(r.tokens))):
                n = int(obs.reads[pos])
                if obs.full[pos] or n > len(r.probes[j]):  # the final answer was revealed: unchanged
                    assert (r.probes[j], r.tokens[j], r.finals[j]) == (c.probes[j], c.tokens[j], c.finals[j])
                else:  # the probes read are kept, the rest comes from another question's branch
                    assert c.probes[j][:n] == r.probes[j][:n] and len(c.probes[j]) >= n
        # The host's judge reads it like any pack.
        cf_jp = load_judge_pack(plan.pack, jp.gold_text)
        assert cf_jp.questions == jp.questions and np.array_equal(cf_jp.branches, jp.branches)
    finally:
        plan.workdir.cleanup()
