"""``diagnose`` (lane): the diagnostician explains the evaluation (or the crash) as structured failure modes."""

from __future__ import annotations

from typing import Any, Literal

from autotts_graph.store.ledger import CandidateStatus
from langgraph.types import Command

from .. import evidence
from ..agents.roles import DiagnoseInput
from ..deps import Deps
from ..state import LaneState
from .common import DIAGNOSIS_FEEDBACK, answer_or_offline, failed_attempt


def diagnose(state: LaneState, deps: Deps, roles: dict[str, Any]) -> Command[Literal["propose", "__end__"]]:
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
    if deps.config.use_diagnosis:
        diagnosis, failed = answer_or_offline(roles, "diagnostician", "diagnose", inp, deps)
    else:
        # --no-diagnosis: nothing of it reaches the proposer (propose.proposer_input), so no LLM call is paid for
        # it; the statistics diagnostician still explains the candidate for the ledger, the report and the UI.
        from ..agents.factory import offline_role

        diagnosis, failed = offline_role("diagnostician").diagnose(inp), None
        diagnosis.summary = f"(not shown to the proposer: --no-diagnosis) {diagnosis.summary}"
    if failed:  # the evaluation stands: the statistics diagnostician explained it instead, and says why
        diagnosis.summary = f"(diagnosed by the statistics diagnostician: {failed}) {diagnosis.summary}"
    if not ev.ok:
        diagnosis.crashed = True
    deps.ledger.record_diagnosis(c.candidate_id, state.generation, diagnosis.model_dump(mode="json"))
    if ev.ok:
        return Command(goto="__end__", update={"diagnosis": diagnosis})
    feedback = [f"evaluation {ev.error_kind}: {ev.error}"]
    feedback += [f"{DIAGNOSIS_FEEDBACK}{m.kind}: {m.suggestion}" for m in diagnosis.failure_modes if m.suggestion]
    return failed_attempt(state, deps, feedback, CandidateStatus.CRASHED, diagnosis=diagnosis)
