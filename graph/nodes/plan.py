"""``plan``: open the next generation (one lane per slot, each with its parent and inspirations from the
archive, as the run's strategy chooses them), or stop: budget used up, all generations done, or
``max_evaluations`` candidates screened."""

from __future__ import annotations

from typing import Any

from .. import archive
from ..configuration import RunConfig
from ..deps import Deps
from ..state import DiscoveryState, LaneState, budget_reason


def parent_and_inspirations(cfg: RunConfig, arch: archive.Archive, generation: int,
                            slot: int) -> tuple[archive.Member | None, list[archive.Member]]:
    """What the slot's proposal starts from, by the run's strategy: ``evolve`` draws a parent from the slot's
    island and shows inspirations; ``random`` neither (independent proposals; the archive still records them, so
    selection works as in ``evolve``); ``greedy`` refines the run's best fully evaluated candidate, alone."""
    if cfg.strategy == "random":
        return None, []
    if cfg.strategy == "greedy":
        return arch.best(), []
    parent = arch.choose_parent(cfg, generation, slot)
    return parent, arch.inspirations(cfg, parent)


def plan(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """The lanes of generation ``state.round``; ``pending`` empty means: go to selection. Budgets are read
    from the live configuration (a resume may have raised them)."""
    cfg = deps.config
    reason = state.stop_reason or budget_reason(cfg, state.total_spend(), state.wall_s)
    if reason:
        return {"stop_reason": reason, "pending": []}
    if state.round >= cfg.rounds:
        return {"pending": []}
    size = cfg.lanes_per_generation()
    if cfg.max_evaluations is not None:
        left = cfg.max_evaluations - state.screened
        if left <= 0:
            return {"stop_reason": f"{state.screened} candidates screened (limit {cfg.max_evaluations})",
                    "pending": []}
        size = min(size, left)
    arch = archive.Archive.load(deps.store, cfg.run_id)
    spent, generation = state.total_spend(), state.round
    lanes = []
    for slot in range(size):
        parent, inspirations = parent_and_inspirations(cfg, arch, generation, slot)
        lanes.append(LaneState(config=cfg, generation=generation, slot=slot, island=archive.island_of(cfg, slot),
                               parent_id=parent.candidate_id if parent else None,
                               inspiration_ids=[m.candidate_id for m in inspirations], spent_before=spent,
                               wall_before=state.wall_s))
    return {"pending": lanes}
