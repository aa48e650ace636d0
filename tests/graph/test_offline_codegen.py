"""Every mechanism combination of the grammar compiles to a contract-abiding, lint-clean controller."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess

import pytest
from autotts_graph.graph.agents.codegen import generate_source
from autotts_graph.graph.agents.genome import MECHANISMS, Genome, explore
from autotts_graph.sandbox.judge import score_in_process
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.sandbox.runtime.validate import validate_source
from autotts_graph.store.packs import write_pack
from autotts_graph.tools.validate import static_issues

ALL_COMBOS = list(itertools.product(*MECHANISMS.values()))


@pytest.fixture(scope="module")
def pack(tmp_path_factory, tiny_records):
    return write_pack("tiny/codegen", tiny_records(n_questions=3, n_branches=20, seed=9),
                      tmp_path_factory.mktemp("packs"))


def _sample_genomes(n: int, seed: int) -> list[Genome]:
    """n mechanism combinations (seeded sample of all 576) with randomly perturbed ramps."""
    rng = random.Random(seed)
    out = []
    for combo in rng.sample(ALL_COMBOS, n):
        g = Genome(**dict(zip(MECHANISMS, combo, strict=True)))
        for _ in range(rng.randrange(6)):
            g = explore(g, rng)[0]
        out.append(g)
    return out


def test_sampled_mechanism_combinations_pass_the_contract_and_solve(pack):
    for genome in _sample_genomes(24, seed=11):
        source = generate_source(genome)
        assert static_issues(source) == ([], []), genome.describe()
        report = validate_source(source, load_pack(pack), smoke_questions=2)
        assert report["ok"], (genome.describe(), report["errors"])
        cls = load_controller_class(source)
        res = score_in_process(cls, pack, {"beta": 1.0}, seeds=[0, 3], trace_seeds=frozenset({3}))
        assert 0.0 <= res["accuracy"] <= 100.0 and res["avg_cost"] > 0


def test_each_decision_changes_the_code():
    base = Genome()
    source = generate_source(base)
    for decision, options in MECHANISMS.items():
        for option in options:
            other = base.model_copy(update={decision: option})
            if option != getattr(base, decision):
                assert generate_source(Genome.model_validate(other.model_dump())) != source, (decision, option)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_generated_sources_are_lint_clean(tmp_path):
    for i, genome in enumerate(_sample_genomes(12, seed=4)):
        (tmp_path / f"gen_{i}.py").write_text(generate_source(genome, title="T", rationale="why " * 60))
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    run = subprocess.run(["ruff", "check", "--config", str(pyproject), str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:]
