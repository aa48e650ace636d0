"""``diagnose`` (lane): the diagnostician explains the evaluation (or the crash) as structured failure modes."""

from __future__ import annotations

from typing import Any

from autotts_graph.store.ledger import CandidateStatus

from .. import evidence
from ..agents.roles import DiagnoseInput
from ..deps import Deps
from ..state import LaneState
from .common import answer_or_offline, failed_attempt


def diagnose(state: LaneState, deps: Deps, roles: dict[str, Any]) -> dict[str, Any]:
    """Curve against baselines plus sampled failed traces (of the full evaluation, else of the screen); a crash
    goes back to the proposer of this slot while its retries last.

    The traces come through the registry's ``get_traces`` (``evidence.trace_samples``), as every agent reads
    them: whole up to the registry's limits, else head and tail, so the finish step is always there."""
    c = state.candidate
    ev = state.evaluation if state.evaluation is not None else state.screen
    baselines = deps.baselines()
    if ev.ok:
        inp = DiagnoseInput(candidate_id=c.candidate_id, source=c.source, curve=ev.curve, baselines=baselines,
                            outcomes=evidence.question_outcomes(deps.ctx, ev.evaluation_id),
                            traces=evidence.trace_samples(deps.ctx, ev.evaluation_id, limit=12))
    else:
        inp = DiagnoseInput(candidate_id=c.candidate_id, source=c.source, error_kind=ev.error_kind, error=ev.error,
                            baselines=baselines)
    diagnosis, failed = answer_or_offline(roles, "diagnostician", "diagnose", inp, deps)
    if failed:  # the evaluation stands: the statistics diagnostician explained it instead, and says why
        diagnosis.summary = f"(diagnosed by the statistics diagnostician: {failed}) {diagnosis.summary}"
    if not ev.ok:
        diagnosis.crashed = True
    deps.ledger.record_diagnosis(c.candidate_id, state.generation, diagnosis.model_dump(mode="json"))
    if ev.ok:
        return {"diagnosis": diagnosis, "goto": "__end__"}
    feedback = [f"evaluation {ev.error_kind}: {ev.error}"]
    feedback += [f"diagnosis: {m.kind}: {m.suggestion}" for m in diagnosis.failure_modes if m.suggestion]
    return {"diagnosis": diagnosis, **failed_attempt(state, deps, feedback, CandidateStatus.CRASHED)}
