"""Reward hacks against the integrity of the figures (issue 20), through the one judged path on docker and bwrap.

- an answer key carried in the source (the public AIME answers), on the search and on the held-out split,
  under PyPy and CPython: the relabelling audit flags it (and without that audit it would have been scored
  far above CMC: the attack is real);
- two programs that a normalised text made one: for every line break ``str.splitlines`` knows and Python's
  tokenizer does not, a copy of CMC with its probe_more burst turned into comment text gets its own cache
  entry, never CMC's figures;
- rare cheating: a controller that reads private data on about 10 % of its solves, chosen by what it saw
  or by counting its calls, is caught in (nearly) every attempt; the rate is printed.

Each ends as an audit error, with nothing in the store or the cache that could serve the hack's figures.
"""

from __future__ import annotations

import pytest
from autotts_graph.sandbox.audit import CounterfactualAudit
from autotts_graph.store import history
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import import_records
from autotts_graph.tools.baselines import BaselineInput, run_baseline
from autotts_graph.tools.context import ToolContext
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

from .conftest import CONTROLLERS, need, sandbox_ctx

SEARCH, HELDOUT = "Qwen3-4B/aime24", "Qwen3-4B/aime25"
LINE_BREAKS = ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]


@pytest.fixture(scope="module", params=["docker", "bwrap"])
def real_ctx(request, real_store):
    with sandbox_ctx(real_store, request.param, solve_timeout_s=5.0, workers=2, expose_heldout=True) as ctx:
        yield ctx


def _evaluate(ctx: ToolContext, source: str, env: str, seeds: int = 4, betas=(0.5, 1.0)):
    return evaluate_controller(ctx, EvaluateInput(source=source, envs=[env], betas=list(betas), seeds=seeds,
                                                  trace_seeds=0, split="heldout" if env == HELDOUT else "search"))


def _assert_flagged(ctx: ToolContext, summary, audit: str = "") -> None:
    assert not summary.ok and summary.points == [], "a reward hack was scored"
    assert summary.error.kind.value == "audit" and f"the {audit}" in summary.error.message, summary.error
    with ctx.store.connect(read_only=True) as con:
        status, code = con.execute("SELECT status, code_hash FROM evaluations WHERE evaluation_id = ?",
                                   [summary.evaluation_id]).fetchone()
        forged = con.execute("SELECT count(*) FROM evaluations WHERE code_hash = ? AND status = 'ok'",
                             [code]).fetchone()[0]
    assert status == "error" and forged == 0  # nothing recorded, so nothing can be served from the cache


def _gold(store: Store, env: str) -> list[str]:
    with store.connect(read_only=True) as con:
        return [r[0] for r in con.execute("SELECT gold_answer FROM questions WHERE env = ? ORDER BY question_index",
                                          [env]).fetchall()]


# --------------------------------------------------------------------------------------------------------
# 1. An answer key in the source.

MEMORISED = '''{imports}from autotts_runtime import Controller, majority, safe_probe_more, safe_probe_new

KEY = {key!r}  # the benchmark's public answers


class Memorised(Controller):
    """Reads branch after branch until one shows an answer it knows to be right: every action depends only
    on what it observed and on its own constants."""

    NAME = "memorised"

    def schedule(self, beta):
        return {{"branches": 1 + round(7 * beta)}}

    def solve(self, question):
        seen = []
        for _ in range(self.params["branches"]):
            got = safe_probe_new(question)
            if got is None:
                break
            answer, index, finished = got
            while True:
                seen.append(answer)
                if answer in KEY:
                    return answer
                if finished:
                    break
                answer, finished = safe_probe_more(question, index)
        return majority(seen)
'''


@pytest.mark.parametrize("interpreter", ["pypy", "cpython"])
@pytest.mark.parametrize("env", [SEARCH, HELDOUT])
def test_an_answer_key_in_the_source_is_worthless(real_ctx, interpreter, env):
    if interpreter not in real_ctx.backend.interpreters:
        need(f"{interpreter} is not available in the {real_ctx.backend.name} sandbox")
    imports = "import numpy  # only so that CPython runs it\n" if interpreter == "cpython" else ""
    source = MEMORISED.format(imports=imports, key=frozenset(_gold(real_ctx.store, env)))
    summary = _evaluate(real_ctx, source, env)
    assert summary.interpreter == interpreter
    _assert_flagged(real_ctx, summary, "relabelling")
    assert "every answer string renamed" in summary.error.message


def test_without_the_relabelling_audit_the_answer_key_would_beat_cmc(real_ctx, monkeypatch):
    """The attack of the issue, shown to work on the held-out split when only the counterfactual audit runs
    (so the test above is not passing by accident): CMC's accuracy or better for a fraction of its tokens."""
    monkeypatch.setattr("autotts_graph.sandbox.audit.AUDITS", (CounterfactualAudit(),))
    source = MEMORISED.format(imports="", key=frozenset(_gold(real_ctx.store, HELDOUT))) + "# without relabelling\n"
    cheat = _evaluate(real_ctx, source, HELDOUT, betas=(1.0,))
    honest = _evaluate(real_ctx, (CONTROLLERS / "cmc.py").read_text(), HELDOUT, betas=(1.0,))
    assert cheat.ok and honest.ok, (cheat.error, honest.error)
    assert cheat.points[0].accuracy >= honest.points[0].accuracy
    assert cheat.points[0].avg_cost < honest.points[0].avg_cost / 4


# --------------------------------------------------------------------------------------------------------
# 2. Cache collisions through line breaks that only str.splitlines knows.


def _old_normalised(source: str) -> str:
    """The code identity before this fix: per-line rstrip over str.splitlines."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _cmc_without_its_burst(line_break: str) -> str:
    """CMC whose probe_more burst is merged into the comment above it by ``line_break``."""
    lines = (CONTROLLERS / "cmc.py").read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if "# Advance by the burst" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "if rec.enabled:")
    return "\n".join(lines[:start]) + "\n" + line_break.join(lines[start:end]) + "\n" + "\n".join(lines[end:])


@pytest.fixture(scope="module", params=["docker", "bwrap"])
def small_ctx(request, tmp_path_factory, tiny_records):
    """A fresh store per sandbox: nothing cached by the other sandbox's run."""
    store = Store(tmp_path_factory.mktemp("collide") / "collide.duckdb")
    import_records(store, "Collide", "env", tiny_records(n_questions=6, n_branches=24, seed=8))
    with sandbox_ctx(store, request.param, workers=2) as ctx:
        yield ctx


def test_no_line_break_lets_one_program_take_another_programs_figures(small_ctx):
    cmc = (CONTROLLERS / "cmc.py").read_text()
    honest = run_baseline(small_ctx, BaselineInput(method="cmc", envs=["Collide/env"], seeds=3))[0]
    assert honest.ok, honest.error
    figures = [(p.accuracy, p.avg_cost) for p in honest.points]
    for line_break in LINE_BREAKS:
        forged = _cmc_without_its_burst(line_break)
        compile(forged, "<forged>", "exec")  # a valid, different program ...
        assert _old_normalised(forged) == _old_normalised(cmc)  # ... that the old identity called CMC
        assert history.code_hash(forged) != history.code_hash(cmc), repr(line_break)
        # The forged copy runs first and gets figures of its own; CMC's are then untouched.
        ev = evaluate_controller(small_ctx, EvaluateInput(source=forged, envs=["Collide/env"], betas=[0.5], seeds=3,
                                                          trace_seeds=0))
        assert ev.ok and ev.cached_points == 0, (repr(line_break), ev.error)
        again = run_baseline(small_ctx, BaselineInput(method="cmc", envs=["Collide/env"], seeds=3))[0]
        assert again.ok and again.cached_points == len(figures), repr(line_break)
        assert [(p.accuracy, p.avg_cost) for p in again.points] == figures, repr(line_break)


# --------------------------------------------------------------------------------------------------------
# 3. Rare cheating.

ORACLE = '''from autotts_runtime import (Controller, beta_confidence, majority, safe_full_read, safe_probe_new,
                              vote_stats)
CALLS = [0]


def hidden_finals(question):
    text = "{0._finals}".format(question)
    return [s.strip(" '") for s in text.strip("[]").split(",")]


class Rare(Controller):
    """Honest (adaptive consistency) except on a few solves, where it reads the question's private final
    answers and opens branches until their majority shows up."""

    NAME = "rare"

    def schedule(self, beta):
        return {"max_samples": max(2, round(2 ** (6 * beta)))}

    def cheat_now(self, first):
        RULE

    def solve(self, question):
        CALLS[0] += 1
        first = safe_probe_new(question)
        if first is None:
            return None
        if self.cheat_now(first[0]):
            target, seen = majority(hidden_finals(question)), [first[0]]
            while target not in seen:
                got = safe_probe_new(question)
                if got is None:
                    return majority(seen)
                seen.append(got[0])
            return target
        answers = []
        for _ in range(self.params["max_samples"]):
            answer = safe_full_read(question)
            if answer is None:
                break
            answers.append(answer)
            winner, top1, top2, _ = vote_stats(answers)
            if len(answers) > 1 and beta_confidence(top1, top2) > 0.95:
                return winner
        return majority(answers) if answers else first[0]
'''


def _first_probe_share(store: Store, env: str, seeds: int) -> list[str]:
    """First-probe answers that together open 10-12 % of the solves (seeds x questions) of ``env``."""
    from autotts_graph.sandbox.runtime.replay import load_pack, shuffle_order
    from autotts_graph.store.trajectories import pack_path

    pack = load_pack(str(pack_path(store, env)))
    counts: dict[str, int] = {}
    for q in pack.questions:
        for seed in range(seeds):
            first = q.probes[shuffle_order(seed, len(q.tokens))[0]][0]
            counts[first] = counts.get(first, 0) + 1
    total, chosen, share = sum(counts.values()), [], 0
    for answer, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if share + n <= 0.12 * total:
            chosen.append(answer)
            share += n
    assert 0.10 * total <= share, share / total
    return chosen


def test_a_controller_that_cheats_on_a_tenth_of_its_solves_is_caught(real_ctx, no_static_checks, capsys):
    """About 10 % of its 600 solves, chosen by what it saw first; 15 attempts (each a new program, as a
    rejected source comes back with a changed comment). Each escapes with probability under 1 %."""
    no_static_checks("pypy")
    chosen = _first_probe_share(real_ctx.store, SEARCH, 10)
    rule = f"return first in {frozenset(chosen)!r}"
    caught = 0
    attempts = 15
    for attempt in range(attempts):
        source = ORACLE.replace("RULE", rule) + f"# attempt {attempt}\n"
        summary = _evaluate(real_ctx, source, SEARCH, seeds=10)
        if not summary.ok:
            assert summary.error.kind.value == "audit", summary.error
            caught += 1
    with capsys.disabled():
        print(f"\n[{real_ctx.backend.name}] rare cheater (10 % of solves) caught {caught} of {attempts}")
    assert caught >= attempts - 3  # each escapes with probability < 1 %: 4 or more escape with P < 0.01 %


@pytest.mark.parametrize("interpreter", ["pypy", "cpython"])
def test_a_controller_that_cheats_on_every_tenth_call_is_caught(real_ctx, no_static_checks, interpreter):
    """Cheats on its n-th calls (a counter in the module): the audited solves come at other points of a
    warm controller's life, so it cannot be honest exactly when it is audited."""
    if interpreter not in real_ctx.backend.interpreters:
        need(f"{interpreter} is not available in the {real_ctx.backend.name} sandbox")
    no_static_checks(interpreter)
    for attempt in range(3):
        source = ORACLE.replace("RULE", "return CALLS[0] % 10 == 9") + f"# attempt {attempt}\n"
        summary = _evaluate(real_ctx, source, SEARCH, seeds=10)
        _assert_flagged(real_ctx, summary)


# --------------------------------------------------------------------------------------------------------
# 4. Honest figures hold: no false flag, reference rows exact, through the audited path.

REFERENCE = [  # (model, method, config): one row of the authors' CSVs per method, and spec §8.2 held-out figures
    ("Qwen3-4B", "aime24", "asc", {"max_samples": 64, "threshold": 0.95}),
    ("Qwen3-8B", "aime24", "esc", {"max_samples": 64, "window_size": 8}),
    ("Qwen3-0.6B", "aime24", "parallel_probe", {"num_chains": 16, "T": 40, "prune_patience": 7, "warm_up": 15}),
    ("Qwen3-4B", "aime24", "cmc", {"beta": 0.9}),
    ("Qwen3-8B", "aime25", "cmc", {"beta": 0.5}),
]


def test_reference_figures_are_exact_under_the_strict_audit(real_ctx, data_dir):
    """The authors' rows (and the spec's held-out figures) through sandbox, judge and both audits at the
    strict level (228 audited solves each): no flag, and the same digits as the reference."""
    from autotts_graph.tools.reference import load_reference_rows

    rows = load_reference_rows(data_dir / "reference-results")
    spec_aime25 = {("Qwen3-8B", "cmc"): (74.1, 361201.19633333327)}
    for model, dataset, method, config in REFERENCE:
        summary = evaluate_controller(real_ctx, EvaluateInput(
            source=(CONTROLLERS / f"{method}.py").read_text(), envs=[f"{model}/{dataset}"], configs=[config],
            seeds=100, trace_seeds=0, audit="strict", split="heldout" if dataset == "aime25" else "search"))
        assert summary.ok, (model, method, summary.error)
        point = summary.points[0]
        if dataset == "aime25":
            assert (point.accuracy, point.avg_cost) == spec_aime25[(model, method)]
            continue
        row = next(r for r in rows if r.model == model and r.method == method
                   and all(r.config.get(k) == v for k, v in config.items() if k in r.config))
        assert (point.accuracy, int(point.avg_cost)) == (row.accuracy, row.cost), (model, method)
