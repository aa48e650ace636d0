"""LLM roles through fake chat models: tool-using proposer, structured critic/diagnostician, bad outputs,
unreachable endpoints and rejected keys."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from autotts_graph.graph.agents.diff_edit import extract_code
from autotts_graph.store import history
from langchain_core.messages import AIMessage
from scripted_roles import (
    ScriptedProposer,
    all_text,
    controller,
    diagnosis_call,
    fake,
    function_model,
    tool_call,
    tool_using_proposer_fn,
    verdict_call,
)


def test_llm_roles_full_run(run_graph, graph_store):
    counter = [0]
    proposer = function_model(tool_using_proposer_fn(counter))
    critic = fake([verdict_call(False, ["the stop threshold falls with beta"]), verdict_call(True), verdict_call(True)])
    diag = fake([diagnosis_call("first"), diagnosis_call("second")])
    state, _, _ = run_graph(rounds=2, chat_models={"proposer": proposer, "critic": critic, "diagnostician": diag})
    assert state.status == "done", state.error
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["rejected", "evaluated", "evaluated"]
    assert cands[0].critic["reasons"] == ["the stop threshold falls with beta"]
    assert all(c.origin.startswith("llm:") for c in cands)
    # The proposer used its tools, saw the critic's reasons, and (round 2) the first candidate's traces.
    text = all_text(proposer)
    assert "the stop threshold falls with beta" in text
    # Its evaluate_controller calls named no seeds or betas: they got the run's quick protocol, under the run.
    quick = [json.loads(m.content) for msgs in proposer.seen for m in msgs if getattr(m, "tool_call_id", None) == "q1"]
    assert quick and all(q["ok"] for q in quick)
    for q in quick:
        ev = history.get_evaluation(graph_store, q["evaluation_id"])
        assert ev.protocol["seeds"] == 2 and ev.run_id == state.config.run_id
        assert sorted({p.beta for p in ev.points}) == [0.0, 0.5, 1.0]
    traces = [m.content for msgs in proposer.seen for m in msgs if getattr(m, "tool_call_id", None) == "t1"]
    assert traces and '"steps"' in traces[-1] and '"event":"start"' in traces[-1]
    # Diagnoses are stored as structured objects; spend counts the fake usage.
    diags = history.get_diagnoses(graph_store, state.config.run_id)
    assert {d["summary"] for d in diags.values()} == {"first", "second"}
    assert state.spend["propose"].llm_tokens > 0 and state.spend["critique"].llm_tokens == 3 * 150


def test_malformed_structured_output_is_retried_then_the_rule_critic_reviews(run_graph, graph_store):
    from autotts_graph.store.ledger import llm_calls

    bad = AIMessage(content="I approve, looks fine")
    critic = fake([bad, tool_call("CriticVerdict", {"reasons": "not a list"}), bad])
    state, _, _ = run_graph(chat_models={"critic": critic})
    # Three malformed answers are one failed verdict, not a failed run: the rule critic reviews the candidate
    # (it is paid for) and the verdict says why.
    assert state.status == "done", state.error
    assert len(critic.seen) == 3
    (cand,) = history.list_candidates(graph_store, state.config.run_id)
    assert cand["status"] == "evaluated"
    assert "reviewed by the rule critic" in cand["critic"]["reasons"][0]
    assert "malformed structured output 3 times" in cand["critic"]["reasons"][0]
    calls = [c for c in llm_calls(graph_store, state.config.run_id) if c.role == "critic"]
    assert [c.mode for c in calls] == ["structured:tool"] * 3 and all(c.node == "critique" for c in calls)
    # Each unusable answer is recorded as such, with what was wrong with it.
    assert [c.outcome for c in calls] == ["malformed"] * 3
    assert "no CriticVerdict structure" in calls[0].error and "Field required" in calls[1].error
    assert {c.candidate_id for c in calls} == {cand["candidate_id"]}


def test_malformed_then_valid_structured_output_recovers(run_graph):
    critic = fake([AIMessage(content="hmm"), verdict_call(True)])
    state, _, _ = run_graph(chat_models={"critic": critic})
    assert state.status == "done"
    assert "unusable" in all_text(critic)


def test_a_proposer_without_code_fails_its_attempts_and_the_run_goes_on(run_graph, graph_store):
    from autotts_graph.store.ledger import llm_calls

    talk = [AIMessage(content="I would use more branches."), AIMessage(content="Let me think."),
            AIMessage(content="Still thinking.")]
    proposer = fake(talk * 3)
    state, _, _ = run_graph(chat_models={"proposer": proposer})
    # Each attempt: three replies without code, then the attempt fails with its reason; after max_attempts the
    # slot ends and the run finishes without a candidate (nothing was proposed), recorded, not crashed.
    assert state.status == "no_candidate", state.error
    (lane,) = state.lanes.values()
    assert lane.outcome == "proposal_failed" and lane.candidate_id is None
    assert state.generations[0].failed == 1
    calls = llm_calls(graph_store, state.config.run_id)
    assert len(calls) == 9 and {c.node for c in calls} == {"propose"}
    assert history.list_candidates(graph_store, state.config.run_id) == []
    # The second attempt was told why the first failed.
    assert "no controller code after 3 replies" in all_text(proposer)


def test_proposer_code_in_reply_text_is_accepted(run_graph):
    proposer = fake([AIMessage(content="Here it is:\n```python\n" + controller(5) + "```\n")])
    state, _, _ = run_graph(chat_models={"proposer": proposer})
    assert state.status == "done" and len(state.evaluated) == 1


def test_extract_code_picks_the_class_block():
    text = "```bash\nls\n```\nthen\n```python\nclass A:\n    pass\n```"
    assert extract_code(text) == "class A:\n    pass\n"
    assert extract_code("no code here") is None


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_stops_cleanly(run_graph, graph_store, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    from autotts_graph.graph.configuration import RoleSettings
    from tiny_runs import tiny_config

    cfg = tiny_config()
    cfg.critic = RoleSettings(kind="llm", base_url=f"http://127.0.0.1:{_unused_port()}/v1", api_key_env="FAKE_KEY",
                              timeout_s=5)
    state, _, _ = run_graph(config=cfg, proposer=ScriptedProposer(), critic=None, diagnostician=None,
                            real_roles=("critic",))
    # The endpoint is probed when the roles are built: an unreachable one stops the run before any work.
    assert state.status == "failed"
    assert "critic: cannot reach http://127.0.0.1" in state.error
    assert history.list_candidates(graph_store, state.config.run_id) == []


class _Reject401(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", ' \
               b'"code": "invalid_api_key"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_invalid_key_stops_cleanly(run_graph, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Reject401)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FAKE_KEY", "sk-wrong")
    from autotts_graph.graph.configuration import RoleSettings
    from tiny_runs import tiny_config

    cfg = tiny_config()
    cfg.proposer = RoleSettings(kind="llm", base_url=f"http://127.0.0.1:{server.server_port}/v1",
                                api_key_env="FAKE_KEY")
    try:
        state, _, _ = run_graph(config=cfg, real_roles=("proposer",))
    finally:
        server.shutdown()
    assert state.status == "failed"
    assert "rejected the API key in FAKE_KEY (401)" in state.error


def test_missing_key_is_reported_before_work(monkeypatch):
    from autotts_graph.graph.agents.client import AgentError
    from autotts_graph.graph.agents.factory import make_role
    from autotts_graph.graph.configuration import RoleSettings, RunConfig

    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    cfg = RunConfig(critic=RoleSettings(kind="llm", api_key_env="NO_SUCH_KEY"))
    with pytest.raises(AgentError, match="NO_SUCH_KEY is not set"):
        make_role("critic", cfg)


def test_token_budget_stops_before_next_round(run_graph):
    proposer = fake([AIMessage(content="```python\n" + controller(k) + "```") for k in (1, 2, 3)])
    critic = fake([verdict_call(True)] * 3)
    state, _, _ = run_graph(rounds=3, max_llm_tokens=250, chat_models={"proposer": proposer, "critic": critic})
    # Round 0 used 150 (proposer) + 150 (critic) tokens >= 250: no second proposal, straight to selection.
    assert len(proposer.seen) == 1
    assert state.stop_reason == "LLM tokens 300 reached the limit 250"
    assert state.status == "done" and len(state.evaluated) == 1 and state.heldout is not None


def test_dollar_budget_uses_role_prices(run_graph):
    from autotts_graph.graph.configuration import RoleSettings
    from tiny_runs import tiny_config

    cfg = tiny_config(rounds=3, max_usd=0.001)
    cfg.proposer = RoleSettings(kind="llm", usd_per_mtok_in=5.0, usd_per_mtok_out=10.0)  # 100 in + 50 out = $0.001
    proposer = fake([AIMessage(content="```python\n" + controller(k) + "```") for k in (1, 2, 3)])
    state, _, _ = run_graph(config=cfg, chat_models={"proposer": proposer})
    assert len(proposer.seen) == 1
    assert state.stop_reason.startswith("LLM spend $0.0010 reached the limit $0.001")
    assert abs(state.total_spend().usd - 0.001) < 1e-9
