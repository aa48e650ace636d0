"""The run report's archive section: the cascade per generation and the MAP-Elites cells with their elites."""

from __future__ import annotations

from autotts_graph.graph.run_view import Cell, GenerationRow, RunView


def _fmt(x: float | None) -> str:
    return f"{x:+.3f}" if x is not None else ""


def generation_lines(rows: list[GenerationRow]) -> list[str]:
    """Per generation: candidates screened, fully evaluated, the generation's best fitness and the best so far."""
    lines = ["| generation | screened | fully evaluated | best fitness of the generation | best so far |",
             "|---|---|---|---|---|"]
    lines += [f"| {g.generation} | {g.screened} | {g.fully_evaluated} | {_fmt(g.best_fitness)} | "
              f"{_fmt(g.best_so_far)} |" for g in rows if g.screened]
    return lines


def cell_lines(cells: list[Cell]) -> list[str]:
    """Per (island, niche) cell: members, the elite (best fully evaluated member) with its fitness, best screen."""
    lines = ["| island | niche (cost band / family) | members | elite | elite fitness | best screen |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {c.island} | {c.band} / {c.family} | {len(c.members)} | {c.elite.candidate_id if c.elite else ''} | "
              f"{_fmt(c.elite.fitness if c.elite else None)} | {_fmt(c.best_screen)} |" for c in cells]
    return lines


def archive_lines(view: RunView) -> list[str]:
    """The markdown section (empty without archive rows: a run from before the archive existed)."""
    if not view.archive:
        return []
    return ["## Archive", "",
            f"{view.screened} candidates screened, {view.fully_evaluated} of them fully evaluated (the cascade's "
            f"second stage); {len(view.cells)} cells (island x cost band x mechanism family). Fitness: the mean "
            "accuracy margin, in points, over every baseline configuration at equal cost (CMC at every β "
            "included); screens use fewer seeds and β points.", "",
            *generation_lines(view.generations), "", *cell_lines(view.cells), ""]
