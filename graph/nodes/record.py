"""``record``: close the round: update the best candidate so far and move to the next round."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history

from ..deps import Deps
from ..state import Best, DiscoveryState


def record(state: DiscoveryState, deps: Deps) -> dict[str, Any]:
    """Everything is already in the store; here the best so far is updated and the round advances."""
    update: dict[str, Any] = {"round": state.round + 1, "attempt": 0, "feedback": [], "check": None,
                              "verdict": None, "review": None}
    ev, c = state.evaluation, state.candidate
    if state.outcome == "evaluated" and ev is not None and ev.ok and ev.score is not None:
        if state.best is None or ev.score > state.best.score:
            best = Best(candidate_id=c.candidate_id, name=c.name, round=c.round, score=ev.score,
                        search_accuracy=ev.search_accuracy, evaluation_id=ev.evaluation_id)
            update["best"] = best
            history.update_run(deps.store, state.config.run_id, best_candidate=best.candidate_id)
    return update
