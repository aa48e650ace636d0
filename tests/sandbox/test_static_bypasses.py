"""The static checks against every bypass class found so far: each attack works when nothing checks it, and
each is refused with one-line errors; deep or huge sources are one clear error, never an exception; every
shipped baseline and offline-generated controller, and ordinary private state, still pass."""

from __future__ import annotations

import random
import sys
import types
from pathlib import Path

import pytest
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.sandbox.runtime.replay import Question, load_pack
from autotts_graph.sandbox.static_checks import MAX_DEPTH, MAX_SOURCE_CHARS, check_source, reserved_private_names

from .bypasses import BYPASSES, HONEST, Bypass
from .conftest import CONTROLLERS

SECRET = b"secret bytes in the box"
# Shown to work by the refusal test alone: they write files on this host, parse a binary pack as text, leave
# a view on freed memory, or fail at class creation (the refusal is the point).
NOT_RUN_HERE = {"numpy.loadtxt", "numpy.genfromtxt", "numpy.fromregex", "numpy.save", "numpy.savez",
                "numpy.savez_compressed", "numpy.savetxt", "ndarray.dump", "numpy.lib",
                "resize without the reference check", "a class keyword"}


def _id(b: Bypass) -> str:
    return f"{b.kind}: {b.name}"


@pytest.mark.parametrize("bypass", BYPASSES, ids=_id)
def test_each_bypass_is_refused_with_one_line_errors(bypass: Bypass):
    report = check_source(bypass.source)
    assert report.errors, f"accepted: {bypass.name}"
    assert any(bypass.fragment in e for e in report.errors), report.errors
    for error in report.errors:
        assert "\n" not in error and error.startswith("line "), error


@pytest.mark.parametrize("bypass", [b for b in BYPASSES if b.name not in NOT_RUN_HERE], ids=_id)
def test_each_bypass_works_when_nothing_checks_it(bypass: Bypass, tiny_pack: Path, tmp_path: Path):
    """The attacks are real: run in this process, unchecked, each reaches what it is after."""
    source = bypass.source.replace("/tmp/", f"{tmp_path}/").replace("/packs/0.npz", str(tiny_pack))
    module = sys.modules[load_controller_class(source).__module__]
    if bypass.leak:
        question = Question(load_pack(str(tiny_pack)).questions[0], seed=3)
        assert module.hidden_finals(question) == list(question._finals)
        return
    got = module.capability()
    if isinstance(got, str) and got.startswith(str(tmp_path)):
        assert Path(got).is_file()  # written on the host's disk
    elif bypass.kind == "alias":
        assert isinstance(got, types.ModuleType)
    elif bypass.kind == "receiver":
        assert got == 1  # Fraction(1, 3)._numerator, read through a "self" that is not the method's own
    elif bypass.kind == "memory" and isinstance(got, bytes):
        assert SECRET in got  # raw memory of the interpreter, read through numpy
    else:
        assert got is not None


DEEP_OR_HUGE = [
    ("unary operators (MemoryError in the parser)", "x = " + "-" * 100_000 + "1", "nested too deeply"),
    ("an attribute chain (RecursionError in the parser)", "x = a" + ".b" * 50_000, "nested too deeply"),
    ("a sum of many terms (RecursionError)", "x = " + "+".join(["1"] * 50_000), "nested too deeply"),
    ("lambdas in lambdas (MemoryError)", "x = " + "lambda: " * 5_000 + "1", "nested too deeply"),
    ("parentheses (the tokenizer's limit)", "x = " + "(" * 300 + "1" + ")" * 300, "too many nested parentheses"),
    ("nesting deeper than the limit", "x = " + "-" * (MAX_DEPTH + 50) + "1", "levels deep"),
    ("a source over the size cap", "x = 1\n" * (MAX_SOURCE_CHARS // 6 + 1), "the limit is"),
    ("a null byte", "x = 1\0\n", "null"),
]


@pytest.mark.parametrize(("name", "source", "fragment"), DEEP_OR_HUGE, ids=[c[0] for c in DEEP_OR_HUGE])
def test_deep_or_huge_sources_are_one_clear_error(name, source, fragment):
    report = check_source(source)
    assert len(report.errors) == 1, (name, [e[:200] for e in report.errors])
    assert fragment in report.errors[0] and "\n" not in report.errors[0], report.errors


def test_the_runtime_private_names_are_reserved():
    """Reserved from the runtime's own code: a slot added to Question is covered without editing the checks."""
    reserved = reserved_private_names()
    assert {n for n in Question.__slots__ if n.startswith("_")} <= reserved
    assert "_advance" in reserved
    assert not {"_cache", "_exit", "_helper"} & reserved  # names honest controllers use stay free


def test_honest_private_state_and_ordinary_python_pass(tiny_pack: Path):
    report = check_source(HONEST)
    assert report.errors == [] and report.warnings == []
    from autotts_graph.sandbox.judge import score_in_process

    res = score_in_process(load_controller_class(HONEST), tiny_pack, {"beta": 0.5}, seeds=[0, 1])
    assert res["avg_cost"] > 0


def test_every_shipped_baseline_passes():
    sources = {p.name: p.read_text() for p in sorted(CONTROLLERS.glob("*.py")) if p.name != "__init__.py"}
    assert len(sources) >= 11
    for name, source in sources.items():
        report = check_source(source)
        assert report.errors == [] and report.warnings == [], (name, report.errors, report.warnings)
        assert report.interpreter == "pypy", name


def test_offline_generated_controllers_pass():
    """A seeded sample across every mechanism combination, each ramp perturbed: no false refusal."""
    import itertools

    from autotts_graph.graph.agents.codegen import generate_source
    from autotts_graph.graph.agents.genome import MECHANISMS, Genome, explore, seed_genomes
    from autotts_graph.tools.contract import EXAMPLE_CONTROLLER

    rng = random.Random(20)
    combos = list(itertools.product(*MECHANISMS.values()))
    genomes = list(seed_genomes())
    for combo in rng.sample(combos, 300):
        g = Genome(**dict(zip(MECHANISMS, combo, strict=True)))
        for _ in range(rng.randrange(5)):
            g = explore(g, rng, structural=rng.random() < 0.3)[0]
        genomes.append(g)
    assert check_source(EXAMPLE_CONTROLLER).errors == []
    for g in genomes:
        report = check_source(generate_source(g, title="T", rationale="why"))
        assert report.errors == [] and report.warnings == [], (g.describe(), report.errors)
