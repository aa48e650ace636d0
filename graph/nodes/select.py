"""``select``: choose the discovered controller by the run's criterion, on search environments only."""

from __future__ import annotations

from typing import Any

from autotts_graph.store.ledger import RunStatus

from ..deps import Deps
from ..state import DiscoveryState
from .evaluate import evaluation_result


def select(state: DiscoveryState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Best fitness on the search set among fully evaluated (stage 2) candidates that passed every check;
    ties go to fewer tokens, then earlier (generation, slot). Screened-only and flagged candidates never
    compete, and nothing held out is read."""
    cfg = deps.config
    ranked = []
    for order, c in enumerate(deps.ledger.candidates()):
        if c.candidate_id not in state.evaluated or not c.evaluation_id or (c.stage or 0) < 2:
            continue
        res = evaluation_result(deps, c.evaluation_id, cfg.selection, deps.baselines())
        if not res.ok or res.score is None:
            continue
        mean_tokens = sum(p.avg_cost for p in res.curve) / max(len(res.curve), 1)
        ranked.append((-res.score, mean_tokens, order, c.candidate_id))
    if not ranked:
        message = "no candidate passed its checks and evaluation; nothing to select"
        deps.ledger.no_candidate(state.stop_reason or message, baseline_evaluations=state.baseline_evaluations,
                                 stop_reason=state.stop_reason, wall_s=state.wall_s)
        return {"status": RunStatus.NO_CANDIDATE.value, "selected": None}
    selected = min(ranked)[3]
    deps.ledger.set_best(selected)
    return {"selected": selected}
