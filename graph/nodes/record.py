"""``record`` (the fan-in, once every lane of the generation finished): put the generation's
screened candidates into the archive, migrate between islands, update the best and the counters."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history

from .. import archive, evidence
from ..deps import Deps
from ..state import Best, DiscoveryState, GenerationSummary, LaneResult


def generation_results(state: DiscoveryState, generation: int) -> list[LaneResult]:
    """The lane results of one generation, by slot."""
    return sorted((r for r in state.lanes.values() if r.generation == generation), key=lambda r: r.slot)


def record(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Everything per candidate is already in the store; here the generation joins the archive."""
    cfg, generation = deps.config, state.round
    results = generation_results(state, generation)
    arch = archive.Archive.load(deps.store, cfg.run_id)
    known_hashes, known = arch.code_hashes(), arch.candidates()
    cands = {c.candidate_id: c for c in deps.ledger.candidates()}
    screens = history.evaluation_points(deps.store, [r.screen_evaluation_id for r in results
                                                     if r.stage >= 1 and r.screen_evaluation_id])
    rows = []
    for r in results:
        if r.stage < 1 or r.candidate_id is None or r.candidate_id in known:
            continue
        c = cands[r.candidate_id]
        if c.code_hash in known_hashes:  # the same program twice in one generation: the lower slot stays
            continue
        known_hashes.add(c.code_hash)
        curve = evidence.curve_from_points(screens[r.screen_evaluation_id].points)
        rows.append(archive.member_row(cfg.run_id, candidate_id=r.candidate_id, island=r.island, generation=generation,
                                       slot=r.slot, genome=c.genome, screen_curve=curve, stage=r.stage,
                                       fitness=r.fitness if r.stage >= 2 else None, screen_fitness=r.screen_fitness,
                                       search_accuracy=r.search_accuracy, code_hash=c.code_hash,
                                       evaluation_id=r.evaluation_id, screen_evaluation_id=r.screen_evaluation_id))
    history.record_archive(deps.store, rows)
    arch = archive.Archive.load(deps.store, cfg.run_id)
    moves = arch.migrants(cfg, generation)
    if moves:
        history.record_archive(deps.store, [archive.migrant_row(m, dest, generation)
                                            for m, dest in moves])
        arch = archive.Archive.load(deps.store, cfg.run_id)

    update: dict[str, Any] = {"round": generation + 1, "pending": []}
    full = [r for r in results if r.stage >= 2 and r.fitness is not None]
    best = state.best
    for r in full:  # by slot: the lower slot wins a tie
        if best is None or r.fitness > best.score:
            best = Best(candidate_id=r.candidate_id, name=r.name, round=generation, score=r.fitness,
                        search_accuracy=r.search_accuracy, evaluation_id=r.evaluation_id)
    if best is not None and best != state.best:
        update["best"] = best
        deps.ledger.set_best(best.candidate_id)
    evaluated = list(state.evaluated) + [r.candidate_id for r in full if r.candidate_id not in state.evaluated]
    screened = state.screened + sum(r.screens for r in results)
    stop = next((r.stop_reason for r in results if r.stop_reason), None)
    wall = state.wall_s + max((r.seconds for r in results), default=0.0)
    summary = GenerationSummary(
        generation=generation, candidates=sum(1 for r in results if r.candidate_id),
        screened=sum(r.screens for r in results), promoted=len(full),
        failed=sum(1 for r in results if r.outcome in ("check_failed", "rejected", "crashed",
                                                             "proposal_failed")),
        best_fitness=best.score if best else None,
        generation_best=max((r.fitness for r in full), default=None),
        archive_members=len(arch.candidates()), archive_cells=len(arch.cells()), wall_s=wall)
    generations = [*state.generations, summary]
    deps.ledger.merge_report(generations=[g.model_dump(mode="json") for g in generations])
    update.update({"evaluated": evaluated, "screened": screened, "generations": generations, "wall_s": wall,
                   "archive_members": summary.archive_members, "archive_cells": summary.archive_cells})
    if stop and not state.stop_reason:
        update["stop_reason"] = stop
    return update
