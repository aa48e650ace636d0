"""Every LLM role against a real OpenAI-compatible server with a real small model (llama-cpp-python serving
SmolLM2-135M-Instruct on this CPU): no fake model anywhere. A 135M model writes poor controllers; what is
asserted is what the client and the graph make of whatever it writes."""

from __future__ import annotations

import time

import pytest
from autotts_graph.graph.agents.capabilities import ProbeError, probe_endpoint
from autotts_graph.graph.agents.client import CallFailed
from autotts_graph.graph.agents.factory import make_role
from autotts_graph.graph.agents.roles import (
    CriticInput,
    CriticVerdict,
    CurvePoint,
    DiagnoseInput,
    Diagnosis,
    Proposal,
    ProposerInput,
)
from autotts_graph.graph.configuration import RunConfig
from autotts_graph.store import history
from autotts_graph.store.ledger import llm_calls
from llm_server import KEY_ENV
from tiny_runs import tiny_config

pytestmark = pytest.mark.slow

ASC = "sandbox/controllers/asc.py"


def _source(name: str) -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / "sandbox" / "controllers" / f"{name}.py").read_text()


def test_the_probe_tells_what_each_alias_supports(recorder):
    plain = probe_endpoint(recorder.base_url, "smollm2", "sk-local", key_env=KEY_ENV)
    fc = probe_endpoint(recorder.base_url, "smollm2-fc", "sk-local", key_env=KEY_ENV)
    # The GGUF's own template: a forced tool call works (a JSON-schema grammar), automatic ones do not, and
    # llama-cpp-python refuses response_format json_schema; tool results reach the model.
    assert plain.forced_tool and not plain.auto_tools and not plain.json_schema and plain.tool_results_kept
    assert plain.structured_method() == "tool" and not plain.proposer_uses_tools("auto")
    # chatml-function-calling: automatic tool calls, but unbounded (max_tokens ignored) and tool results dropped.
    assert fc.auto_tools and not fc.auto_tools_bounded and not fc.tool_results_kept
    assert not fc.proposer_uses_tools("auto") and fc.proposer_uses_tools("on")
    assert plain.served_models == fc.served_models == ["smollm2", "smollm2-fc"]
    # What the probe records as its spend is what the server reported.
    probed = sum(s.prompt_tokens + s.completion_tokens for c in (plain, fc) for s in c.steps)
    assert probed == recorder.reported_tokens() > 0
    with pytest.raises(ProbeError, match=r"model 'gpt-4o' is not served at .* \(served: smollm2, smollm2-fc\)"):
        probe_endpoint(recorder.base_url, "gpt-4o", "sk-local")


def _config(settings) -> RunConfig:
    return RunConfig(proposer=settings, critic=settings, diagnostician=settings)


def test_critic_and_diagnostician_answer_in_their_structures(recorder, local_settings):
    cfg = _config(local_settings(recorder.base_url))
    critic, diag = make_role("critic", cfg), make_role("diagnostician", cfg)
    verdict = critic.review(CriticInput(source=_source("asc"), check_warnings=["none"], schedule={"0.0": {"k": 1}}))
    assert isinstance(verdict, CriticVerdict)
    curve = [CurvePoint(env="m1/search", beta=b, accuracy=40 + 20 * b, avg_cost=8000 + 9000 * b) for b in (0, 1)]
    crashed = diag.diagnose(DiagnoseInput(candidate_id="c1", source=_source("sc"), error_kind="crash",
                                          error="ZeroDivisionError: division by zero (line 12)"))
    scored = diag.diagnose(DiagnoseInput(candidate_id="c2", source=_source("sc"), curve=curve))
    assert isinstance(crashed, Diagnosis) and crashed.crashed and isinstance(scored, Diagnosis)
    calls = critic.take_calls() + diag.take_calls()
    assert all(c.mode == "structured:tool" and c.usage == "server" for c in calls)
    # One call per answer, plus a retry for each unusable answer (a 135M model writes some), recorded as such.
    assert [c.outcome for c in calls if c.outcome != "malformed"] == ["ok"] * 3, [(c.outcome, c.error) for c in calls]
    assert all(c.error for c in calls if c.outcome == "malformed")
    # Spend is the server's usage figures (probe requests aside, which the ledger keeps as the probe's).
    probe = sum(s.prompt_tokens + s.completion_tokens for s in critic.client.caps.steps)
    assert sum(c.prompt_tokens + c.completion_tokens for c in calls) + 2 * probe == recorder.reported_tokens()
    assert critic.spend().llm_tokens + diag.spend().llm_tokens == sum(c.prompt_tokens + c.completion_tokens
                                                                    for c in calls)


def test_a_context_overflow_teaches_the_limit_and_the_prompt_is_shrunk_to_fit(small_context_server, local_settings):
    from autotts_graph.graph.agents.roles import HistoryEntry

    cfg = _config(local_settings(small_context_server.base_url, context_tokens=None, max_output_tokens=64))
    critic = make_role("critic", cfg)
    assert critic.client.caps.context_tokens is None  # llama-cpp-python's /models does not say it
    earlier = [HistoryEntry(candidate_id=f"c{i}", round=0, name=f"sc{i}", source=_source("sc") * 3) for i in range(6)]
    verdict = critic.review(CriticInput(source=_source("asc"), history=earlier))
    assert isinstance(verdict, CriticVerdict)
    caps = critic.client.caps
    assert (caps.context_tokens, caps.context_source) == (4096, "overflow error")
    first, second = critic.take_calls()
    # The first prompt (six earlier candidates in full) was refused; the second, shrunk, fitted the limit learnt.
    assert first.outcome == "context" and first.prompt_tokens == 0 and second.outcome == "ok"
    assert second.prompt_tokens + 64 <= 4096


def test_the_proposer_without_tools_answers_in_a_fenced_block(recorder, local_settings):
    cfg = _config(local_settings(recorder.base_url, context_tokens=3072, max_output_tokens=200))
    proposer = make_role("proposer", cfg)
    try:
        out = proposer.propose(ProposerInput(round=0, search_envs=["m1/search"], betas=[0.0, 1.0]))
    except CallFailed as exc:  # a 135M model may write no code at all: then that is the recorded reason
        assert exc.kind == "no_code"
        out = None
    assert proposer.modes == ["no tools"]  # auto: the probe found no automatic tool calls here
    calls = proposer.take_calls()
    assert calls and all(c.mode == "text" and c.usage == "server" for c in calls)
    # Every prompt was fitted to the context given (3,072 tokens, 200 of them for the answer).
    assert all(c.prompt_tokens + 200 <= 3072 for c in calls), [c.prompt_tokens for c in calls]
    first = next(s for s in recorder.seen if s["path"] == "/v1/chat/completions" and "Round 0" in str(s["request"]))
    assert "tools" not in first["request"] and first["request"]["max_tokens"] == 200
    if out is not None:
        assert isinstance(out, Proposal) and out.source.strip() and out.rationale.startswith("[full rewrite]")
    else:
        assert calls[-1].outcome == "no_code"


def test_the_proposer_with_tools_calls_them_through_the_server(recorder, local_settings, small_store):
    from autotts_graph.graph.agents.tools import ProposerToolbox
    from autotts_graph.tools.context import ToolContext

    ctx = ToolContext(store=small_store, sandbox="process", workers=1, hidden_envs=frozenset({"m1/heldout"}))
    toolbox = ProposerToolbox(ctx=ctx, run_id="local", search_envs=["m1/search"], quick_betas=[0.0],
                              quick_seeds=1)
    cfg = _config(local_settings(recorder.base_url, model="smollm2-fc", tools="on", max_tool_steps=2,
                                 max_output_tokens=200))
    proposer = make_role("proposer", cfg, toolbox=toolbox)
    try:
        proposer.propose(ProposerInput(round=0, search_envs=["m1/search"], betas=[0.0, 1.0]))
    except CallFailed as exc:
        assert exc.kind in ("no_code", "timeout")
    finally:
        ctx.close()
    assert proposer.modes == ["tools"]
    sent = [s["request"] for s in recorder.seen if s["path"] == "/v1/chat/completions" and s["request"].get("tools")
            and "Round 0" in str(s["request"]["messages"])]
    assert sent and sent[0]["tool_choice"] == "auto"
    # The prompt was fitted with the tool schemas in it: the core tools only, for a 4,096-token context.
    assert {t["function"]["name"] for t in sent[0]["tools"]} <= {"submit_controller", "validate_controller",
                                                                  "read_history", "evaluate_controller",
                                                                  "controller_contract"}
    assert toolbox.calls, "the model called no tool through the server"


def test_a_tool_result_survives_a_template_that_drops_tool_messages(recorder, local_settings):
    from autotts_graph.graph.agents.client import LLMClient, make_chat_model
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    settings = local_settings(recorder.base_url, model="smollm2-fc", max_output_tokens=16)
    caps = probe_endpoint(recorder.base_url, "smollm2-fc", "sk-local")
    assert not caps.tool_results_kept
    client = LLMClient(make_chat_model(settings, "proposer", caps), settings, "proposer", caps)
    call = {"name": "read_history", "args": {}, "id": "call_1", "type": "tool_call"}

    def prompt_with(result: str) -> int:
        client.invoke([HumanMessage("What did read_history return?"), AIMessage(content="", tool_calls=[call]),
                       ToolMessage(result, tool_call_id="call_1")], mode="text")
        return client.records[-1].prompt_tokens

    short, long = prompt_with("none"), prompt_with("candidates: " + "cand-0 evaluated 41.5%, " * 40)
    assert long - short > 200  # sent as a user turn, the result reached the model
    body = recorder.seen[-1]["request"]
    assert body["messages"][1] == {"content": "", "role": "assistant", "tool_calls": body["messages"][1]["tool_calls"]}
    assert body["messages"][2]["role"] == "user" and "Result of the read_history call" in body["messages"][2]["content"]


def test_a_call_cut_off_by_its_time_limit_fails_one_proposal_and_the_run_goes_on(own_llm_server, local_settings,
                                                                                   small_store, run_graph_on):
    from scripted_roles import ScriptedCritic, ScriptedDiagnostician

    cfg = tiny_config(max_attempts=2, eval_timeout_s=60)
    cfg.proposer = local_settings(own_llm_server.base_url, timeout_s=1.5, max_output_tokens=32)
    started = time.monotonic()
    state = run_graph_on(small_store, cfg, {"critic": ScriptedCritic(), "diagnostician": ScriptedDiagnostician()})
    took = time.monotonic() - started
    assert state.status == "no_candidate", state.error  # recorded, not failed: the run went on to its end
    (lane,) = state.lanes.values()
    assert lane.outcome == "proposal_failed"
    calls = [c for c in llm_calls(small_store, state.config.run_id) if c.role == "proposer"]
    assert [c.outcome for c in calls] == ["timeout", "timeout"]
    assert all(c.usage == "estimated" and 1.5 <= c.seconds < 3.0 for c in calls), calls
    assert "cut off after 1.5 s" in calls[0].error
    assert history.get_run(small_store, state.config.run_id).status == "no_candidate"
    assert took < 120


def test_an_ensemble_of_two_local_model_aliases(recorder, local_settings, small_store, run_graph_on):
    from scripted_roles import ScriptedCritic, ScriptedDiagnostician

    cfg = tiny_config(rounds=2, max_attempts=1, eval_timeout_s=60)
    cfg.proposer = local_settings(recorder.base_url, models=["smollm2-fc"], tools="off", context_tokens=3072,
                                  max_output_tokens=160)
    state = run_graph_on(small_store, cfg, {"critic": ScriptedCritic(), "diagnostician": ScriptedDiagnostician()})
    assert state.status in ("done", "no_candidate"), state.error
    calls = [c for c in llm_calls(small_store, state.config.run_id) if c.role == "proposer"]
    # Generation 0 tries the first model, generation 1 the untried second one: one bandit over both aliases.
    by_round = {r: {c.model for c in calls if c.round == r} for r in (0, 1)}
    assert by_round == {0: {"smollm2"}, 1: {"smollm2-fc"}}
    cands = history.list_candidates(small_store, state.config.run_id)
    assert {c["origin"] for c in cands} <= {"llm:smollm2", "llm:smollm2-fc"}
    models = {s["request"]["model"] for s in recorder.seen if s["path"] == "/v1/chat/completions"
              and "Round" in str(s["request"]["messages"])}
    assert models == {"smollm2", "smollm2-fc"}
