"""The run report's archive section: the cascade per generation and the MAP-Elites cells with their elites."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _fmt(x: float | None) -> str:
    return f"{x:+.3f}" if x is not None else ""


def generation_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per generation: candidates screened, fully evaluated, the generation's best fitness and the best so far."""
    own = [r for r in rows if r["migrated_from"] is None]  # a migrant is a copy of a member on another island
    by_gen: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in own:
        by_gen[r["generation"]].append(r)
    lines = ["| generation | screened | fully evaluated | best fitness of the generation | best so far |",
             "|---|---|---|---|---|"]
    best: float | None = None
    for gen in sorted(by_gen):
        full = [r["fitness"] for r in by_gen[gen] if r["stage"] >= 2 and r["fitness"] is not None]
        top = max(full) if full else None
        if top is not None:
            best = top if best is None else max(best, top)
        lines.append(f"| {gen} | {len(by_gen[gen])} | {len(full)} | {_fmt(top)} | {_fmt(best)} |")
    return lines


def cell_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per (island, niche) cell: members, the elite (best fully evaluated member) with its fitness, best screen."""
    cells: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[(r["island"], r["niche"])].append(r)
    lines = ["| island | niche (cost band / family) | members | elite | elite fitness | best screen |",
             "|---|---|---|---|---|---|"]
    ranked = []
    for (island, niche), members in cells.items():
        full = [m for m in members if m["stage"] >= 2 and m["fitness"] is not None]
        elite = max(full, key=lambda m: m["fitness"]) if full else None
        screens = [m["screen_fitness"] for m in members if m["screen_fitness"] is not None]
        ranked.append((-(elite["fitness"]) if elite else float("inf"), island, niche, len(members), elite,
                       max(screens) if screens else None))
    for _, island, niche, count, elite, screen in sorted(ranked, key=lambda t: (t[0], t[1], t[2])):
        band, _, family = niche.partition("|")
        lines.append(f"| {island} | {band} / {family} | {count} | {elite['candidate_id'] if elite else ''} | "
                     f"{_fmt(elite['fitness'] if elite else None)} | {_fmt(screen)} |")
    return lines


def archive_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The markdown section (empty without archive rows: a run from before the archive existed)."""
    if not rows:
        return []
    own = [r for r in rows if r["migrated_from"] is None]
    full = sum(1 for r in own if r["stage"] >= 2)
    cells = {(r["island"], r["niche"]) for r in rows}
    return ["## Archive", "",
            f"{len(own)} candidates screened, {full} of them fully evaluated (the cascade's second stage); "
            f"{len(cells)} cells (island x cost band x mechanism family). Fitness: the mean accuracy margin, in "
            "points, over every baseline configuration at equal cost (CMC at every β included); screens use "
            "fewer seeds and β points.", "",
            *generation_lines(rows), "", *cell_lines(rows), ""]
