"""The run report's archive section: the cascade per generation and the MAP-Elites cells with their elites."""

from __future__ import annotations

from autotts_graph.graph.archive import scaling_of
from autotts_graph.graph.run_view import Cell, GenerationRow, RunView


def _fmt(x: float | None) -> str:
    return f"{x:+.3f}" if x is not None else ""


def generation_lines(rows: list[GenerationRow]) -> list[str]:
    """Per generation: candidates screened, fully evaluated, the generation's best fitness and the best so far."""
    lines = ["| generation | screened | fully evaluated | best fitness of the generation | best so far | cells "
             "occupied | niches |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {g.generation} | {g.screened} | {g.fully_evaluated} | {_fmt(g.best_fitness)} | "
              f"{_fmt(g.best_so_far)} | {g.cells} | {g.niches} |" for g in rows if g.screened]
    return lines


def cell_lines(cells: list[Cell]) -> list[str]:
    """Per (island, niche) cell: members, the elite (best fully evaluated member) with its fitness, best screen."""
    lines = ["| island | niche (cost band / scaling / family) | members | elite | elite fitness | best screen |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {c.island} | {c.band} / {scaling_of(c.niche) or '-'} / {c.family} | {len(c.members)} | "
              f"{c.elite.candidate_id if c.elite else ''} | "
              f"{_fmt(c.elite.fitness if c.elite else None)} | {_fmt(c.best_screen)} |" for c in cells]
    return lines


def selection_lines(view: RunView) -> list[str]:
    """How the selection chose: the finalists' fitness on the search seeds, on fresh seeds and its lower bound,
    and whether the pick changed from the point estimate's (empty before a selection)."""
    sel = view.selection
    if sel is None or not sel.finalists:
        return []
    changed = "**changed**" if sel.changed else "unchanged"
    lines = ["## Selection", "",
             f"The top {len(sel.finalists)} candidates by fitness were re-evaluated on the search set with fresh "
             f"seeds (from {sel.first_seed} on), strictly audited; the best lower confidence bound of fitness "
             f"(bootstrap over questions) was selected. The pick was {changed}: {sel.why}.", "",
             "| rank | candidate | fitness (search seeds) | fitness (fresh seeds) | lower bound | audit | selected |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {f.rank} | {f.name or f.candidate_id} ({f.candidate_id}) | {_fmt(f.fitness)} | "
              f"{_fmt(f.fresh_fitness)} | {_fmt(f.lower_bound)} | {f.audit} | "
              f"{'yes' if f.candidate_id == sel.selected else ''} |" for f in sel.finalists]
    return [*lines, ""]


def archive_lines(view: RunView) -> list[str]:
    """The markdown section (empty without archive rows: a run from before the archive existed)."""
    if not view.archive:
        return []
    return ["## Archive", "",
            f"{view.screened} candidates screened, {view.fully_evaluated} of them fully evaluated (the cascade's "
            f"second stage); {len(view.cells)} cells (island x half-octave cost band x scaling band, how much more "
            "the screen spends at its largest β than at its smallest, x mechanism family). Fitness: the mean "
            "accuracy margin, in points, over every baseline configuration at equal cost (CMC at every β "
            "included), less per model 5 points x the share of β points a baseline configuration dominates and "
            "0.5 x the accuracy gain it falls short of CMC's over the top half of the β range; screens use fewer "
            "seeds and β points. *Cells occupied*: the cells the archive held once the generation joined it.", "",
            *generation_lines(view.generations), "", *cell_lines(view.cells), ""]
