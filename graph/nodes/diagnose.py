"""``diagnose``: the diagnostician explains the evaluation (or the crash) as structured failure modes."""

from __future__ import annotations

from typing import Any

from autotts_graph.store import history

from .. import evidence
from ..agents.roles import DiagnoseInput
from ..deps import Deps
from ..state import DiscoveryState
from .common import failed_attempt


def diagnose(state: DiscoveryState, deps: Deps) -> dict[str, Any]:
    """Curve against baselines plus sampled failed traces; a crash goes back to the proposer in this round."""
    c, ev = state.candidate, state.evaluation
    if ev.ok:
        inp = DiagnoseInput(candidate_id=c.candidate_id, source=c.source, curve=ev.curve, baselines=state.baselines,
                            outcomes=evidence.question_outcomes(deps.ctx, ev.evaluation_id),
                            traces=evidence.trace_samples(deps.ctx, ev.evaluation_id, limit=12))
    else:
        inp = DiagnoseInput(candidate_id=c.candidate_id, source=c.source, error_kind=ev.error_kind, error=ev.error,
                            baselines=state.baselines)
    diagnosis = deps.diagnostician.diagnose(inp)
    if not ev.ok:
        diagnosis.crashed = True
    history.record_diagnosis(deps.store, run_id=state.config.run_id, candidate_id=c.candidate_id, round=state.round,
                             diagnosis=diagnosis.model_dump(mode="json"))
    if ev.ok:
        return {"diagnosis": diagnosis}
    feedback = [f"evaluation {ev.error_kind}: {ev.error}"]
    feedback += [f"diagnosis: {m.kind}: {m.suggestion}" for m in diagnosis.failure_modes if m.suggestion]
    return {"diagnosis": diagnosis, **failed_attempt(state, feedback, "crashed")}
