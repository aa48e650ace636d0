"""The offline grammar's new mechanisms: every one generates valid, static-check-clean, PyPy-able code; the
hand-designed rolling controller of the issue is expressible; mutation, tuning and crossover are reproducible;
the population proposer never repeats a mechanism mix + knob set of the history or the archive."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from autotts_graph.graph.agents.codegen import generate_source
from autotts_graph.graph.agents.genome import (
    MECHANISMS,
    Genome,
    Ramp,
    crossover,
    family,
    mutate,
    seed_genomes,
    tune,
)
from autotts_graph.graph.agents.offline_proposer import HeuristicProposer
from autotts_graph.graph.agents.roles import CurvePoint, Diagnosis, HistoryEntry, ProposerInput
from autotts_graph.sandbox.judge import score_in_process
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.sandbox.runtime.validate import validate_source
from autotts_graph.sandbox.static_checks import check_source
from autotts_graph.store.packs import write_pack

REPO = Path(__file__).resolve().parents[2]
NEW = {"widen": ("rolling", "adaptive"), "cutoff": ("median_length",), "exit": ("agree",),
       "stop": ("bayes", "weighted"), "aggregate": ("length_weighted", "stability_weighted", "short_stable")}
BETAS = [round(0.1 * i, 1) for i in range(11)]


@pytest.fixture(scope="module")
def pack(tmp_path_factory, tiny_records):
    return write_pack("tiny/grammar", tiny_records(n_questions=4, n_branches=24, seed=21),
                      tmp_path_factory.mktemp("packs"))


def _with_each_new_mechanism() -> list[Genome]:
    """Every new mechanism on each seed mix (weighted stops with a weighted aggregation, as they need)."""
    out = []
    for seed in seed_genomes():
        for decision, options in NEW.items():
            for option in options:
                g = seed.model_dump()
                g[decision] = option
                if option == "weighted" and g["aggregate"] not in ("length_weighted", "stability_weighted",
                                                                  "short_stable"):
                    g["aggregate"] = "short_stable"
                out.append(Genome.model_validate(g))
    return out


def test_every_new_mechanism_generates_valid_pypy_code(pack):
    genomes = _with_each_new_mechanism()
    used = {(d, getattr(g, d)) for g in genomes for d in MECHANISMS}
    assert all((d, o) in used for d, opts in NEW.items() for o in opts)
    loaded = load_pack(pack)
    for g in genomes:
        src = generate_source(g, title="t", rationale="r")
        static = check_source(src)
        assert static.errors == [] and static.interpreter == "pypy", (g.describe(), static.errors)
        report = validate_source(src, loaded, smoke_questions=2)
        assert report["ok"], (g.describe(), report["errors"])
        # The generated schedule is the genome's.
        assert report["schedule"]["0.5"] == g.schedule(0.5)
        res = score_in_process(load_controller_class(src), pack, {"beta": 0.7}, seeds=[0, 1])
        assert 0.0 <= res["accuracy"] <= 100.0 and res["avg_cost"] > 0


@pytest.mark.skipif(shutil.which("pypy3") is None, reason="pypy3 not installed")
def test_generated_code_runs_under_pypy(pack, tmp_path):
    runtime = tmp_path / "rt"
    runtime.mkdir()
    (runtime / "autotts_runtime").symlink_to(REPO / "sandbox" / "runtime")
    sources = []
    for i, g in enumerate(_with_each_new_mechanism()[::3]):
        path = tmp_path / f"c{i}.py"
        path.write_text(generate_source(g))
        sources.append(str(path))
    script = ("import sys\nfrom autotts_runtime.replay import load_pack\n"
              "from autotts_runtime.validate import validate_source\n"
              f"pack = load_pack({str(pack)!r})\n"
              "for path in sys.argv[1:]:\n"
              "    rep = validate_source(open(path).read(), pack, 2)\n"
              "    assert rep['ok'], (path, rep['errors'])\n"
              "print('ok', len(sys.argv) - 1)\n")
    run = subprocess.run(["pypy3", "-c", script, *sources], capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(runtime), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == f"ok {len(sources)}"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_new_mechanisms_are_lint_clean(tmp_path):
    for i, g in enumerate(_with_each_new_mechanism()):
        (tmp_path / f"gen_{i}.py").write_text(generate_source(g, title="T", rationale="why " * 40))
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(REPO / "pyproject.toml"),
                          str(tmp_path)], capture_output=True, text=True)
    if "No module named ruff" in run.stderr:
        run = subprocess.run(["ruff", "check", "--config", str(REPO / "pyproject.toml"), str(tmp_path)],
                             capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:]


def test_the_issues_hand_designed_controller_is_expressible(pack):
    """A few branches side by side, a new one as each finishes, branches far past the median length of the
    finished ones dropped, a stop on vote confidence, the final vote weighted towards shorter branches."""
    g = seed_genomes()[0]
    assert (g.widen, g.cutoff, g.stop, g.aggregate) == ("rolling", "median_length", "beta_conf", "length_weighted")
    assert family(g) == "rolling/confidence"
    src = generate_source(g)
    for needle in ("len(live) < target", "drop * order[len(order) // 2]", "conf > conf_thresh",
                   "(median / n) ** length_power"):
        assert needle in src
    # Width grows with β, the drop factor too (later cut-off), the vote weighting never grows.
    sched = [g.schedule(b) for b in BETAS]
    assert sched[0]["width"] < sched[-1]["width"] and sched[0]["drop"] <= sched[-1]["drop"]
    # The seed population is diverse: more than one family, not only CMC-like mixes.
    fams = {family(s) for s in seed_genomes()}
    assert {"rolling/confidence", "widening/momentum", "rolling/consensus"} <= fams and len(fams) >= 4


def test_weighted_stop_without_weights_is_the_confidence_stop():
    plain = Genome(stop="weighted", aggregate="majority")
    assert plain.stop == "beta_conf" and plain.key() == Genome(stop="beta_conf", aggregate="majority").key()


def test_keys_follow_behaviour_on_the_grid():
    g = seed_genomes()[0]
    same = g.model_copy(update={"ramps": {**g.ramps, "min_complete": Ramp(lo=2.0, hi=5.1)}})
    same = Genome.model_validate(same.model_dump())
    assert same.knob_set() != g.knob_set() and same.key() == g.key()  # rounds to the same schedule
    other = Genome.model_validate({**g.model_dump(), "ramps": {**g.model_dump()["ramps"],
                                                               "min_complete": {"lo": 2, "hi": 7}}})
    assert other.key() != g.key()


def test_mutation_tuning_and_crossover_are_reproducible():
    a, b = seed_genomes()[0], seed_genomes()[2]
    for op in (lambda r: mutate(a, r), lambda r: tune(a, r, knobs=3), lambda r: (crossover(a, b, r), [])):
        first = op(random.Random(5))
        assert first == op(random.Random(5))
    # Tuning moves continuous ramp parameters of active knobs only, within the knob ranges.
    rng = random.Random(9)
    seen_keys = set()
    for _ in range(30):
        child, notes = tune(a, rng, knobs=2)
        assert all(n.split(": ")[1].split(".")[0] in a.active_knobs() for n in notes)
        assert {d: getattr(child, d) for d in MECHANISMS} == {d: getattr(a, d) for d in MECHANISMS}
        seen_keys.add(child.key())
    assert len(seen_keys) > 10
    # Crossover takes each decision (with the knobs its mechanism reads) from one parent or the other.
    kids = [crossover(a, b, random.Random(s)) for s in range(20)]
    for kid in kids:
        for d in MECHANISMS:
            assert getattr(kid, d) in (getattr(a, d), getattr(b, d))
    assert len({k.key() for k in kids}) > 2


def _entry(cid: str, genome: Genome, fitness: float, gen: int = 0) -> HistoryEntry:
    curve = [CurvePoint(env="m/a", beta=b, accuracy=50 + 10 * b, avg_cost=20_000 + 300_000 * b) for b in BETAS]
    return HistoryEntry(candidate_id=cid, round=gen, source=generate_source(genome), curve=curve, fitness=fitness,
                        genome=genome.model_dump(), stage=2, diagnosis=Diagnosis(summary="d", actions=["more_width"]))


def test_population_proposals_never_repeat_and_use_parent_and_inspirations():
    seeds = seed_genomes()
    history = [_entry(f"c{i}", g, fitness=0.1 * i) for i, g in enumerate(seeds)]
    keys = {g.key() for g in seeds}
    proposer = HeuristicProposer(seed=3)
    ops = {"crossover": 0, "diagnosis": 0, "tune": 0, "explore": 0}
    for gen in range(1, 6):
        for slot in range(6):
            parent = history[(gen * 7 + slot) % len(history)]
            insp = [h for h in history[-4:] if h.candidate_id != parent.candidate_id]
            inp = ProposerInput(round=gen, search_envs=["m/a"], betas=BETAS, history=history, parent=parent,
                                inspirations=insp, generation=gen, slot=slot, island=slot % 3)
            prop = proposer.propose(inp)
            child = Genome.model_validate(prop.genome)
            assert child.key() not in keys, prop.rationale
            keys.add(child.key())
            assert prop.parent_id == parent.candidate_id
            for op in ops:
                ops[op] += op in prop.rationale
            history.append(_entry(f"g{gen}s{slot}", child, fitness=0.0, gen=gen))
    assert all(ops.values()), ops  # every operator was used
    # Reproducible: the same inputs give the same proposal.
    inp = ProposerInput(round=9, search_envs=["m/a"], betas=BETAS, history=history, parent=history[3],
                        inspirations=history[4:7], generation=9, slot=2)
    assert HeuristicProposer(seed=3).propose(inp).source == HeuristicProposer(seed=3).propose(inp).source


def test_generation_zero_slots_start_from_different_seed_mixes():
    proposer = HeuristicProposer(seed=0)
    mixes = set()
    for slot in range(len(seed_genomes())):
        inp = ProposerInput(round=0, search_envs=["m/a"], betas=BETAS, generation=0, slot=slot)
        mixes.add(Genome.model_validate(proposer.propose(inp).genome).mechanisms())
    assert len(mixes) == len(seed_genomes())
