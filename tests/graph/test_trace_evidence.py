"""The diagnostician reads traces through the registry's get_traces (the tool path every agent uses), and on a
long-trace controller it finds the same failure modes there as on the full traces in the store: whole traces
up to the registry's limits, head and tail beyond them, the finish step always seen. Cutting at the first 60
steps, as the graph once did, loses the findings that hang on the finish step."""

from __future__ import annotations

from pathlib import Path

import pytest
from autotts_graph.graph import evidence
from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician
from autotts_graph.graph.agents.roles import DiagnoseInput, TraceSample
from autotts_graph.store import history
from autotts_graph.tools.traces import cap_steps

CONTROLLERS = Path(__file__).resolve().parents[2] / "sandbox" / "controllers"
ENV = "long/synth"
FINISH_MODES = {"premature_stop", "never_converged"}  # decided by the finish step alone


@pytest.fixture(scope="module")
def long_store(tmp_path_factory):
    """One synthetic environment with 64 branches per question: CMC and Parallel-Probe run 30-420 steps."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.synth import preset, synthesize_into

    store = Store(tmp_path_factory.mktemp("long") / "long.duckdb")
    synthesize_into(store, *ENV.split("/"), preset("synth-1.7b", n_questions=8, n_branches=64, seed=5))
    return store


@pytest.fixture(scope="module")
def evaluated(long_store):
    """name -> (ToolContext, evaluation id, source) of a traced evaluation of that baseline."""
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    ctx = ToolContext(store=long_store, sandbox="process", workers=2)
    done = {}

    def get(name: str):
        if name not in done:
            src = (CONTROLLERS / f"{name}.py").read_text()
            summary = evaluate_controller(ctx, EvaluateInput(source=src, envs=[ENV], betas=[0.0, 0.5, 1.0],
                                                             seeds=2, trace_seeds=1, label=name))
            assert summary.ok, summary.error
            done[name] = (ctx, summary.evaluation_id, src)
        return done[name]

    yield get
    ctx.close()


def _diagnose(ctx, evaluation_id: str, source: str, traces: list[TraceSample]):
    curve = evidence.curve_from_points(history.get_evaluation(ctx.store, evaluation_id).points)
    return StatsDiagnostician().diagnose(DiagnoseInput(
        candidate_id="c", source=source, curve=curve, outcomes=evidence.question_outcomes(ctx, evaluation_id),
        traces=traces))


def _full(ctx, evaluation_id: str, samples: list[TraceSample]) -> list[TraceSample]:
    """The same sampled solves with their steps exactly as the store holds them."""
    rows, _ = history.get_traces(ctx.store, evaluation_id, limit=100_000)
    steps = {(r.env, r.beta, r.seed, r.question_index): r.steps for r in rows}
    return [t.model_copy(update={"steps": steps[(t.env, t.beta, t.seed, t.question_index)]}) for t in samples]


@pytest.mark.parametrize("name", ["cmc", "parallel_probe"])
def test_diagnosis_through_the_tool_path_equals_the_full_traces(evaluated, name):
    ctx, ev, src = evaluated(name)
    through_tools = evidence.trace_samples(ctx, ev, limit=12)  # what the diagnose node reads
    full = _full(ctx, ev, through_tools)
    assert len(through_tools) == 12
    assert max(len(t.steps) for t in full) > 200, "the sample should hold long traces"
    assert all(t.steps[-1]["event"] == "finish" for t in through_tools)

    on_tools, on_full = _diagnose(ctx, ev, src, through_tools), _diagnose(ctx, ev, src, full)
    assert on_tools == on_full  # kinds, counts, shares, evidence, examples, actions, summary
    assert {m.kind for m in on_full.failure_modes} & FINISH_MODES

    # The old way (the first 60 steps) loses what the finish step says: the comparison above is not vacuous.
    first_60 = [t.model_copy(update={"steps": t.steps[:60]}) for t in full]
    assert _diagnose(ctx, ev, src, first_60) != on_full


def test_cmc_findings_lost_at_60_steps_are_the_ones_the_issue_names(evaluated):
    ctx, ev, src = evaluated("cmc")
    full = _full(ctx, ev, evidence.trace_samples(ctx, ev, limit=12))
    counts = {m.kind: m.count for m in _diagnose(ctx, ev, src, full).failure_modes}
    cut = _diagnose(ctx, ev, src, [t.model_copy(update={"steps": t.steps[:60]}) for t in full])
    cut_counts = {m.kind: m.count for m in cut.failure_modes}
    assert counts.get("never_converged", 0) > 0 and "never_converged" not in cut_counts
    assert counts.get("premature_stop", 0) > cut_counts.get("premature_stop", 0)
    assert "deeper_probing" not in cut.actions


@pytest.mark.parametrize("max_steps", [150, 60, 12])
def test_shortened_traces_keep_the_finish_findings(evaluated, max_steps):
    """Traces past the limits keep head and tail: whatever the finish step decides survives any shortening."""
    ctx, ev, src = evaluated("parallel_probe")
    full = _full(ctx, ev, evidence.trace_samples(ctx, ev, limit=12))
    short = [t.model_copy(update={"steps": cap_steps(t.steps, max_steps)[0]}) for t in full]
    assert any(len(s.steps) < len(f.steps) for s, f in zip(short, full, strict=True))

    def finish_modes(diagnosis):
        return {(m.kind, m.count, tuple(m.examples)) for m in diagnosis.failure_modes if m.kind in FINISH_MODES}

    assert finish_modes(_diagnose(ctx, ev, src, short)) == finish_modes(_diagnose(ctx, ev, src, full))


def test_trace_samples_of_hidden_environments_are_empty(evaluated, long_store):
    from autotts_graph.tools.context import ToolContext

    _, ev, _ = evaluated("cmc")
    hidden = ToolContext(store=long_store, sandbox="process", hidden_envs=frozenset({ENV}))
    assert evidence.trace_samples(hidden, ev) == []
    ctx, _, _ = evaluated("cmc")
    assert evidence.trace_samples(ctx, ev, env="no/such") == []
    assert evidence.trace_samples(ctx, "ev-0000000000") == []
