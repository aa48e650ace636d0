"""The table of ``autotts-graph run --repeat N``: one row per discovery seed, then the mean ± sd across seeds.

A row is read from the run's view (``graph/run_view.py``, the one the report and the web UI read): the search
fitness of the pick, and on the held-out set the pick's best accuracy over β and its β points (mean over
environments) dominated by any baseline configuration, dominated by CMC, and dominating CMC, counted with the
report's rules (``run_view.domination`` and ``scoring.dominance_counts``). The benchmark
``benchmarks/discovery_ablation.py`` uses the same rows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from autotts_graph.graph import scoring
from autotts_graph.graph.run_view import RunView, build_run_view
from autotts_graph.store.db import Store
from pydantic import BaseModel

# The figures of a row that are averaged across seeds, with their column titles.
FIGURES = (("search_fitness", "search fitness"), ("heldout_accuracy", "held-out best acc %"),
           ("dominated_by_frontier", "β dominated by any baseline"),
           ("dominated_by_cmc", "β dominated by CMC (bootstrap)"), ("dominates_cmc", "β dominating CMC (bootstrap)"))


class SeedRow(BaseModel):
    """One run of a repeated search: its seed and figures (None: not measured, e.g. nothing was selected)."""

    run_id: str
    seed: int
    strategy: str
    status: str
    search_fitness: float | None = None
    heldout_accuracy: float | None = None
    dominated_by_frontier: int | None = None
    dominated_by_cmc: int | None = None
    dominates_cmc: int | None = None
    betas: int = 0  # β points of the held-out mean curve


def seed_row(view: RunView) -> SeedRow:
    """A run's row from its view."""
    settings = view.search_settings
    row = SeedRow(run_id=view.run_id, seed=settings.seed, strategy=settings.strategy, status=view.run.status,
                  search_fitness=view.best_fitness if view.run.selected else None)
    held = view.heldout
    if held is None or held.winner is None:
        return row
    row.heldout_accuracy = scoring.search_accuracy(held.winner.points)  # the best mean accuracy over β
    if held.domination:
        row.dominated_by_frontier = sum(1 for r in held.domination if r.dominated_by)
        row.betas = len(held.domination)
    per_env = scoring.dominance_counts(held.versus_cmc)
    # The mean over environments; with a single held-out environment, that environment is the mean.
    counts = per_env.get("mean") or (next(iter(per_env.values())) if len(per_env) == 1 else None)
    if counts is not None:
        row.dominated_by_cmc, row.dominates_cmc = counts["dominated"], counts["dominates"]
        row.betas = row.betas or sum(counts.values())
    return row


def rows_of(store: Store, run_ids: Sequence[str]) -> list[SeedRow]:
    """The rows of the given runs, in their order."""
    return [seed_row(build_run_view(store, run_id)) for run_id in run_ids]


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation, n) of the measured values (sd None below two)."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


def _fmt(value: float | int | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.2f}"


def spread_cell(values: Sequence[float | None], signed: bool = False) -> str:
    """``mean ± sd`` of the measured values (``mean`` alone for one, ``–`` for none)."""
    mean, sd, _ = mean_sd(values)
    if sd is None:
        return _fmt(mean, signed)
    return f"{_fmt(mean, signed)} ± {sd:.3f}" if signed else f"{_fmt(mean)} ± {sd:.2f}"


def table(rows: Sequence[SeedRow]) -> tuple[list[str], list[list[str]]]:
    """(columns, cells): one row per seed, then the mean ± sd across seeds."""
    columns = ["seed", "run", "status", *(title for _, title in FIGURES)]
    cells = [[str(r.seed), r.run_id, r.status,
              *(_fmt(getattr(r, key), signed=key == "search_fitness") for key, _ in FIGURES)] for r in rows]
    cells.append(["mean ± sd", f"{len(rows)} runs", "",
                  *(spread_cell([getattr(r, key) for r in rows], signed=key == "search_fitness")
                    for key, _ in FIGURES)])
    return columns, cells


def markdown(rows: Sequence[SeedRow]) -> str:
    """The table as markdown (for a file or a note)."""
    columns, cells = table(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines)
