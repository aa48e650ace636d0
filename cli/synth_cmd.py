"""``autotts-graph store synth``: synthesise seeded replay environments into the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import fail


def synth(
    preset: Annotated[str, typer.Option(help="parameter preset: synth-0.6b, synth-1.7b, synth-4b, synth-8b")]
    = "synth-1.7b",
    model: Annotated[str | None, typer.Option(help="model name of the environment (default: the preset)")]
    = None,
    dataset: Annotated[str, typer.Option(help="dataset name; the environment is MODEL/DATASET")] = "synth",
    questions: Annotated[int | None, typer.Option(help="questions (default 30)")] = None,
    branches: Annotated[int | None, typer.Option(help="branches per question (default 128)")] = None,
    seed: Annotated[int, typer.Option(help="random seed; same parameters and seed give identical data")] = 0,
    ability: Annotated[float | None, typer.Option(help="model strength: mean accuracy logit")] = None,
    difficulty_spread: Annotated[float | None, typer.Option(help="std of the per-question accuracy logit")]
    = None,
    distractors: Annotated[int | None, typer.Option(help="strong wrong answers per question")] = None,
    distractor_strength: Annotated[float | None, typer.Option(
        help="share of wrong branches ending on a distractor")] = None,
    err_rate: Annotated[float | None, typer.Option(help="mean fraction of 'ERR' probes")] = None,
    settle_mean: Annotated[float | None, typer.Option(
        help="mean fraction of a branch's probes before it settles on its final answer")] = None,
    median_tokens: Annotated[float | None, typer.Option(help="median correct-branch length in tokens")]
    = None,
    probe_freq: Annotated[int | None, typer.Option(help="probe interval in tokens (default 500)")] = None,
    replace: Annotated[bool, typer.Option(help="overwrite an existing environment of the same name")] = False,
    store: Annotated[Path | None, typer.Option(
        help="store file (default $AUTOTTS_STORE or ./autotts.duckdb)")]
    = None,
) -> None:
    """Synthesise a seeded replay environment (difficulty, distractors, converging probes, ERR)."""
    from autotts_graph.store.db import Store, StoreError, default_store_path
    from autotts_graph.store.synth import preset as load_preset
    from autotts_graph.store.synth import synthesize_into
    from pydantic import ValidationError

    overrides = {key: value for key, value in {
        "n_questions": questions, "n_branches": branches, "seed": seed, "ability": ability,
        "difficulty_spread": difficulty_spread, "n_distractors": distractors,
        "distractor_strength": distractor_strength, "err_rate": err_rate, "settle_mean": settle_mean,
        "median_tokens": median_tokens, "probe_freq": probe_freq,
    }.items() if value is not None}
    try:
        params = load_preset(preset, **overrides)
    except ValidationError as exc:
        # One line per the CLI contract: the first failing field and why.
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "parameters"
        fail(f"{field}: {err['msg']}")
    except ValueError as exc:
        fail(str(exc))
    model_name = model or preset
    if not model_name.strip() or "/" in model_name or not dataset.strip() or "/" in dataset:
        fail("--model and --dataset must be non-empty and contain no '/'")
    target = Store(store if store is not None else default_store_path())
    try:
        name, created = synthesize_into(target, model_name, dataset, params, replace=replace)
    except StoreError as exc:
        fail(str(exc))
    verb = "created" if created else "unchanged (identical environment already stored)"
    typer.echo(f"{name}: {verb} — {params.n_questions} questions × {params.n_branches} branches, "
               f"preset {preset}, seed {params.seed}, store {target.path}")
    sys.stdout.flush()
