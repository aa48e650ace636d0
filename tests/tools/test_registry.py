"""The registry: run-scoped defaults (an in-run evaluation never defaults to 100 seeds, whatever the transport),
one-line errors, and the one way traces are shortened (head and tail, the finish step always kept)."""

from __future__ import annotations

from typing import Any

import pytest
from autotts_graph.tools import registry
from autotts_graph.tools.context import RunScope, ToolContext
from autotts_graph.tools.evaluate import DEFAULT_BETAS, EvaluationSummary
from autotts_graph.tools.traces import MAX_STEPS_PER_TRACE, MAX_TRACE_CHARS, OMITTED_EVENT, cap_steps
from pydantic import ValidationError

from .conftest import SEARCH_ENV

SCOPE = RunScope(run_id="run-x", betas=[0.0, 0.5, 1.0], seeds=3, trace_seeds=2)


@pytest.fixture
def captured(monkeypatch) -> list[Any]:
    """The EvaluateInput / BaselineInput the registry's wrappers hand down (nothing runs)."""
    seen: list[Any] = []

    def fake_evaluate(ctx, inp):
        seen.append(inp)
        return EvaluationSummary(evaluation_id="ev-0", ok=True)

    def fake_baseline(ctx, inp):
        seen.append(inp)
        return EvaluationSummary(evaluation_id="ev-0", ok=True), []

    monkeypatch.setattr(registry, "evaluate_controller", fake_evaluate)
    monkeypatch.setattr(registry, "run_baseline", fake_baseline)
    return seen


def _ctx(store, run: RunScope | None) -> ToolContext:
    return ToolContext(store=store, sandbox="process", run=run)


def test_standalone_defaults_are_the_reference_protocol(store, captured):
    registry.TOOLS_BY_NAME["evaluate_controller"].call(_ctx(store, None), {"source": "x", "envs": [SEARCH_ENV]})
    inp = captured[-1]
    assert (inp.seeds, inp.betas, inp.trace_seeds, inp.run_id, inp.label) == (100, DEFAULT_BETAS, 1, None, "tool")


def test_an_in_run_evaluation_takes_the_run_protocol(store, captured):
    ctx = _ctx(store, SCOPE)
    evaluate = registry.TOOLS_BY_NAME["evaluate_controller"]
    evaluate.call(ctx, {"source": "x", "envs": [SEARCH_ENV]})
    inp = captured[-1]
    assert (inp.seeds, inp.betas, inp.trace_seeds, inp.run_id) == (3, [0.0, 0.5, 1.0], 2, "run-x")
    evaluate.call(ctx, {"source": "x", "envs": [SEARCH_ENV], "seeds": 7, "betas": [0.2], "trace_seeds": 0})
    assert (captured[-1].seeds, captured[-1].betas, captured[-1].trace_seeds) == (7, [0.2], 0)
    registry.TOOLS_BY_NAME["run_baseline"].call(ctx, {"method": "sc", "envs": [SEARCH_ENV]})
    assert captured[-1].seeds == 3


def test_run_defaults_hold_through_the_langchain_transport(store, captured):
    """LangChain hands a tool every field with its default filled in: the default must be None, not 100."""
    from autotts_graph.tools.langchain import make_langchain_tools

    (tool,) = make_langchain_tools(_ctx(store, SCOPE), ["evaluate_controller"])
    tool.invoke({"source": "x", "envs": [SEARCH_ENV]})
    assert captured[-1].seeds == 3 and captured[-1].betas == [0.0, 0.5, 1.0]
    assert tool.args_schema is registry.EvaluateToolInput  # the registry's own model, not a copy
    assert "invalid argument seeds" in tool.invoke({"source": "x", "envs": [SEARCH_ENV], "seeds": 0})


def test_run_scope_validates():
    with pytest.raises(ValidationError, match="seeds"):
        RunScope(run_id="r", betas=[0.5], seeds=0)
    with pytest.raises(ValidationError, match="betas"):
        RunScope(run_id="r", betas=[], seeds=2)


def test_select_and_one_line_errors():
    assert [s.name for s in registry.select(["get_traces", "query_store"])] == ["get_traces", "query_store"]
    assert [s.name for s in registry.select()] == list(registry.TOOL_NAMES)
    with pytest.raises(ValueError, match="unknown tool.*quick_evaluate; choose from list_environments"):
        registry.select(["quick_evaluate"])
    try:
        registry.EvaluateToolInput(source="x", envs=[SEARCH_ENV], betas=[2.0])
    except ValidationError as exc:
        assert registry.one_line_error(exc).startswith("invalid argument betas.0:")
    assert registry.one_line_error(ValueError("first\nsecond")) == "first"


# --------------------------------------------------------------------------- shortening


def _trace(n_middle: int, payload: str = "") -> list[dict]:
    middle = [{"event": "forward" if i % 2 else "terminate_check", "input": i, "output": payload}
              for i in range(n_middle)]
    return [{"event": "start"}, *middle, {"event": "finish", "decision": {"reason": "confident"}}]


def test_long_traces_keep_head_and_tail_and_count_what_is_left_out():
    steps = _trace(2 * MAX_STEPS_PER_TRACE)
    out, omitted, shortened = cap_steps(steps)
    assert shortened and omitted == len(steps) - MAX_STEPS_PER_TRACE
    assert out[0]["event"] == "start" and out[-1]["event"] == "finish"
    (marker,) = [s for s in out if s["event"] == OMITTED_EVENT]
    assert marker["output"]["steps"] == omitted
    assert marker["output"]["events"] == {"forward": omitted // 2, "terminate_check": omitted - omitted // 2}
    # Shortening again (a prompt's smaller budget) reports the original numbers, not the marker as one step.
    again, _, _ = cap_steps(out, 40)
    total = sum(s["output"]["steps"] for s in again if s["event"] == OMITTED_EVENT)
    assert total == len(steps) - (len(again) - 1) and again[-1]["event"] == "finish"


def test_traces_whose_steps_are_big_are_shortened_by_size_the_same_way():
    steps = _trace(100, payload="z" * 1_500)  # few steps, but each close to the per-step cap
    out, omitted, shortened = cap_steps(steps)
    assert shortened and omitted > 0 and len(str(out)) < MAX_TRACE_CHARS * 1.1
    assert out[0]["event"] == "start" and out[-1]["event"] == "finish"


def test_a_finish_step_in_the_middle_is_kept():
    """A trace that goes on after its finish (against the contract) still shows the finish step."""
    steps = _trace(600)
    steps.insert(300, {"event": "finish", "decision": {"reason": "early"}})
    steps[-1] = {"event": "late", "output": None}
    out, _, _ = cap_steps(steps, 50)
    assert [s["decision"]["reason"] for s in out if s["event"] == "finish"] == ["early"]


def test_short_traces_pass_untouched():
    steps = _trace(MAX_STEPS_PER_TRACE - 2)
    assert cap_steps(steps) == (steps, 0, False)
    with pytest.raises(ValueError, match="max_steps must be at least 2"):
        cap_steps(steps, 1)
