"""Synthetic replay environments: determinism, format invariants, realistic statistics, CLI, defaults."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import typer
from autotts_graph.cli.synth_cmd import synth
from autotts_graph.store.db import Store
from autotts_graph.store.synth import (
    PRESETS,
    SynthParams,
    ensure_default_environments,
    preset,
    synthesize,
    synthesize_into,
)
from autotts_graph.store.trajectories import export_records, list_environments, validate_records
from typer.testing import CliRunner


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(synth)
    # A second command keeps typer in multi-command mode, as under `autotts-graph store synth`.
    app.command("noop")(lambda: None)
    return app


def test_same_seed_identical_different_seed_differs() -> None:
    p = SynthParams(n_questions=5, n_branches=16, seed=3)
    assert synthesize(p) == synthesize(p)
    assert synthesize(p) != synthesize(p.model_copy(update={"seed": 4}))


@pytest.mark.parametrize("name", list(PRESETS))
def test_records_valid_and_invariants(name: str) -> None:
    records = synthesize(preset(name, n_questions=10, n_branches=32))
    validate_records(records, name)
    assert len(records) == 10
    for qi, rec in enumerate(records):
        assert set(rec) == {"question", "gold_answer", "probe_freq", "each_branch", "final_answers_trace"}
        assert rec["question"] == f"synthetic question {qi}"
        assert rec["gold_answer"].isdigit()
        assert len(rec["each_branch"]) == 32
        assert rec["final_answers_trace"] == [b[2] for b in rec["each_branch"]]
        for probes, tokens, final in rec["each_branch"]:
            assert probes and probes[-1] == final
            assert 0 <= math.ceil(tokens / rec["probe_freq"]) - len(probes) <= 9
            assert 1000 <= tokens <= 41_500


def test_statistics_in_realistic_ranges() -> None:
    """Pooled over seeds, each preset sits in the range of the real Qwen3 AIME environments."""
    bounds = {"synth-0.6b": (0.05, 0.30), "synth-1.7b": (0.30, 0.60), "synth-4b": (0.55, 0.85),
              "synth-8b": (0.55, 0.90)}
    for name, (lo, hi) in bounds.items():
        acc, tokens, probes, errs, majority_right, tails = [], [], 0, 0, [], []
        for seed in range(3):
            for rec in synthesize(preset(name, seed=seed)):
                finals = [b[2] for b in rec["each_branch"]]
                acc.append(np.mean([f == rec["gold_answer"] for f in finals]))
                votes = Counter(finals).most_common()
                majority_right.append(votes[0][0] == rec["gold_answer"])
                tails.append(sum(n == 1 for _, n in votes))
                for p, t, _ in rec["each_branch"]:
                    tokens.append(t)
                    probes += len(p)
                    errs += p.count("ERR")
        assert lo <= np.mean(acc) <= hi, (name, np.mean(acc))
        # Many questions are near 0 or 1 (bimodal difficulty) and some are in between.
        acc = np.array(acc)
        assert np.mean((acc < 0.1) | (acc > 0.9)) > 0.4 and np.mean((acc > 0.2) & (acc < 0.8)) > 0.05
        # Majority voting helps but strong distractors keep it from being perfect.
        assert np.mean(acc) <= np.mean(majority_right) < 0.97
        assert 11_000 <= np.mean(tokens) <= 20_000, (name, np.mean(tokens))
        assert max(tokens) > 40_000
        assert 0.02 <= errs / probes <= 0.2, (name, errs / probes)
        assert np.mean(tails) >= 1


def test_correct_branches_shorter_and_probes_converge() -> None:
    records = synthesize(preset("synth-4b"))
    right = [t for r in records for _, t, f in r["each_branch"] if f == r["gold_answer"]]
    wrong = [t for r in records for _, t, f in r["each_branch"] if f != r["gold_answer"]]
    assert np.mean(right) < 0.8 * np.mean(wrong)
    early = late = n = 0
    for rec in records:
        for probes, _, final in rec["each_branch"]:
            if len(probes) >= 10:
                early += probes[len(probes) // 10] == final
                late += probes[-2] == final
                n += 1
    assert early / n < 0.3 < 0.6 < late / n


def test_synthesis_is_fast() -> None:
    import time

    start = time.perf_counter()
    synthesize(SynthParams())
    assert time.perf_counter() - start < 1.0


def test_bad_parameters_rejected() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        preset("synth-huge")
    with pytest.raises(ValueError):
        SynthParams(n_questions=0)
    with pytest.raises(ValueError):
        SynthParams(nonsense=1)
    with pytest.raises(ValueError):
        SynthParams(early_guess_weight=0.8, fresh_weight=0.5)


def test_synthesize_into_store_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    params = preset("synth-8b", n_questions=4, n_branches=8, seed=5)
    assert synthesize_into(store, "m", "d", params) == ("m/d", True)
    assert synthesize_into(store, "m", "d", params) == ("m/d", False)
    assert export_records(store, "m/d") == synthesize(params)
    (info,) = list_environments(store)
    assert (info.origin, info.n_questions, info.n_branches) == ("synth", 4, 8)


def test_ensure_default_environments_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    first = ensure_default_environments(store)
    assert first["search"] and first["heldout"]
    assert sorted(first["created"]) == sorted(first["search"] + first["heldout"])
    assert not set(first["search"]) & set(first["heldout"])
    second = ensure_default_environments(store)
    assert second == {**first, "created": []}
    assert len(list_environments(store)) == len(first["created"])


def test_ensure_default_environments_leaves_existing_data(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    synthesize_into(store, "M", "aime24", preset("synth-4b", n_questions=2, n_branches=4))
    synthesize_into(store, "M", "aime25", preset("synth-4b", n_questions=2, n_branches=4, seed=1))
    expected = {"search": ["M/aime24"], "heldout": ["M/aime25"], "created": []}
    assert ensure_default_environments(store) == expected


def test_cli_creates_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    args = ["synth", "--preset", "synth-4b", "--model", "toy", "--dataset", "d1", "--questions", "3",
            "--branches", "8", "--seed", "7", "--err-rate", "0.1", "--store", str(path)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "toy/d1: created" in result.stdout
    assert export_records(Store(path), "toy/d1") == synthesize(
        preset("synth-4b", n_questions=3, n_branches=8, seed=7, err_rate=0.1))
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 0 and "unchanged" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset"),
    (["--questions", "0"], "n_questions"),
    (["--model", "a/b"], "no '/'"),
])
def test_cli_bad_input_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(_app(), ["synth", *args, "--store", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_conflicting_environment_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    base = ["synth", "--questions", "2", "--branches", "4", "--store", str(path)]
    assert CliRunner().invoke(_app(), base).exit_code == 0
    result = CliRunner().invoke(_app(), [*base, "--seed", "1"])
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert CliRunner().invoke(_app(), [*base, "--seed", "1", "--replace"]).exit_code == 0
