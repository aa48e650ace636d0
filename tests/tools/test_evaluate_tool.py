"""evaluate_controller: sandboxed sweeps recorded in the history, cached by code+data+protocol."""

import pytest
from autotts_graph.store import history
from autotts_graph.store.db import StoreError
from autotts_graph.tools.baselines import BaselineInput, run_baseline
from autotts_graph.tools.context import ToolContext
from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller
from autotts_graph.tools.validate import ValidateInput, validate_controller


def ctx_for(store):
    return ToolContext(store=store, sandbox="process", workers=2)


def test_sweep_is_recorded_with_outcomes_and_traces(tiny_store, controller_source):
    ctx = ctx_for(tiny_store)
    seen = []
    summary = evaluate_controller(ctx, EvaluateInput(source=controller_source("cmc"), envs=["tiny/a", "tiny/b"],
                                                     betas=[0.0, 1.0], seeds=5, trace_seeds=1, label="cmc"),
                                  progress=lambda done, total: seen.append((done, total)))
    ctx.close()
    assert summary.ok, summary.error
    assert len(summary.points) == 4 and seen[-1] == (4, 4)
    stored = history.get_evaluation(tiny_store, summary.evaluation_id)
    assert [(p.env, p.beta) for p in stored.points] == [("tiny/a", 0.0), ("tiny/b", 0.0), ("tiny/a", 1.0),
                                                                 ("tiny/b", 1.0)]
    outcomes = history.get_outcomes(tiny_store, summary.evaluation_id, env="tiny/a")
    assert len(outcomes) == 2 * 5 and all(len(o.correct) == 3 for o in outcomes)
    traces, total = history.get_traces(tiny_store, summary.evaluation_id, env="tiny/b", beta=1.0)
    assert total == 3 and traces[0].steps[0]["event"] == "start"
    failures, n_fail = history.get_traces(tiny_store, summary.evaluation_id, failures_only=True)
    assert all(not t.is_correct for t in failures) and n_fail <= 12


def test_identical_source_is_evaluated_once(tiny_store, controller_source):
    ctx = ctx_for(tiny_store)
    inp = EvaluateInput(source=controller_source("asc"), envs=["tiny/a", "tiny/b"], betas=[0.5, 1.0], seeds=4)
    first = evaluate_controller(ctx, inp)
    again = evaluate_controller(ctx, inp)
    # A different text is a different program, even by one blank line: it is evaluated on its own.
    other = evaluate_controller(ctx, inp.model_copy(update={"source": controller_source("asc") + "\n\n"}))
    ctx.close()
    assert first.cached_points == 0 and again.cached_points == 4 and other.cached_points == 0
    assert [p.model_dump() for p in other.points] == [p.model_dump() for p in first.points]
    assert [p.model_dump() for p in first.points] == [p.model_dump() for p in again.points]
    assert history.get_outcomes(tiny_store, again.evaluation_id) == history.get_outcomes(tiny_store,
                                                                                         first.evaluation_id)


def test_crash_is_recorded_as_a_failed_evaluation(tiny_store):
    source = ("from autotts_runtime import Controller\nclass A(Controller):\n"
              "    def solve(self, q):\n        raise KeyError('oops')\n")
    ctx = ctx_for(tiny_store)
    summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=["tiny/a"], betas=[0.5], seeds=2))
    ctx.close()
    assert not summary.ok and summary.error.kind.value == "runtime"
    assert history.get_evaluation(tiny_store, summary.evaluation_id).status == "error"


def test_heldout_environments_are_hidden_from_tools(tiny_store, controller_source):
    ctx = ctx_for(tiny_store)
    assert [e.name for e in ctx.environments()] == ["tiny/a", "tiny/b"]
    with pytest.raises(StoreError, match="unknown environment 'tiny/held'"):
        evaluate_controller(ctx, EvaluateInput(source=controller_source("asc"), envs=["tiny/held"], seeds=2))


def test_baseline_sweep_and_validation(tiny_store, controller_source):
    ctx = ctx_for(tiny_store)
    summary, rows = run_baseline(ctx, BaselineInput(method="esc", envs=["tiny/a"], seeds=3))
    assert summary.ok and [r.label for r in rows] == ["ESC(16,8)", "ESC(32,8)", "ESC(64,8)"]
    report = validate_controller(ctx, ValidateInput(source=controller_source("cmc")))
    assert report.ok and report.schedule["1.0"]["max_branch_use"] == 64
    bad = validate_controller(ctx, ValidateInput(source="import socket\n"))
    assert not bad.ok and "socket" in bad.errors[0]
    ctx.close()
