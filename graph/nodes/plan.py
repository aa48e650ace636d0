"""``plan``: open the next generation (one lane per slot, each with its parent and inspirations from the
archive), or stop: budget used up, all generations done, or ``max_evaluations`` candidates screened."""

from __future__ import annotations

from typing import Any

from .. import archive
from ..deps import Deps
from ..state import DiscoveryState, LaneState, budget_reason


def plan(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """The lanes of generation ``state.round``; ``pending`` empty means: go to selection. Budgets are read
    from the live configuration (a resume may have raised them)."""
    cfg = deps.config
    reason = state.stop_reason or budget_reason(cfg, state.total_spend(), state.wall_s)
    if reason:
        return {"stop_reason": reason, "pending": []}
    if state.round >= cfg.rounds:
        return {"pending": []}
    size = cfg.population
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
        parent = arch.choose_parent(cfg, generation, slot)
        inspirations = arch.inspirations(cfg, parent)
        lanes.append(LaneState(config=cfg, generation=generation, slot=slot, island=archive.island_of(cfg, slot),
                               parent_id=parent.candidate_id if parent else None,
                               inspiration_ids=[m.candidate_id for m in inspirations], spent_before=spent,
                               wall_before=state.wall_s))
    return {"pending": lanes}
