"""The LLM client's logic that a real small model cannot show on demand: a stream that never ends (cut at the
output limit), the overflow messages of servers other than the one CI runs, request shaping, and the token
budget stopping new calls while every candidate already paid for is evaluated and reported. (The same paths
against a real server: tests/llm/.)"""

from __future__ import annotations

from typing import Any

import pytest
from autotts_graph.graph.agents.capabilities import EndpointCapabilities
from autotts_graph.graph.agents.client import CallFailed, LLMClient, shape_messages
from autotts_graph.graph.configuration import RoleSettings
from autotts_graph.store import history
from autotts_graph.store.ledger import llm_calls
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from scripted_roles import controller, fake, verdict_call


class EndlessStream(GenericFakeChatModel):
    """Streams words for ever, ignoring max_tokens (as some servers do while writing tool arguments)."""

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any):
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        while True:
            yield ChatGenerationChunk(message=AIMessageChunk(content="word "))


def test_a_stream_that_ignores_max_tokens_is_cut_at_the_output_limit():
    caps = EndpointCapabilities(base_url="x", model="m", stream_usage=True)
    settings = RoleSettings(kind="llm", max_output_tokens=50, timeout_s=30)
    client = LLMClient(EndlessStream(messages=iter([])), settings, "proposer", caps)
    with pytest.raises(CallFailed, match="ran past 50 output tokens") as err:
        client.invoke([HumanMessage("go")])
    assert err.value.kind == "output_limit"
    (rec,) = client.records
    assert rec.outcome == "output_limit" and rec.usage == "estimated" and rec.completion_tokens == 51


@pytest.mark.parametrize(("message", "limit"), [
    ("This model's maximum context length is 8192 tokens. However, you requested 10081 tokens (9081 in the "
     "messages, 1000 in the completion).", 8192),  # OpenAI, vLLM, llama-cpp-python
    ('{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it",'
     '"type":"exceed_context_size_error","n_prompt_tokens":5120,"n_ctx":4096}}', 4096),  # llama-server
])
def test_an_overflow_error_teaches_the_context_and_the_token_size(message, limit):
    caps = EndpointCapabilities(base_url="x", model="m")
    assert caps.learn_overflow(message, prompt_chars=12_000)
    assert caps.context_tokens == limit and caps.context_source == "overflow error"
    assert caps.chars_per_token < 3.0  # 12,000 characters were over 5,000 tokens: the estimate got safer
    assert not EndpointCapabilities(base_url="x", model="m").learn_overflow("Internal error: CUDA OOM", 100)


def test_requests_are_shaped_for_strict_servers():
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read_history", "arguments": "{}"}},
                    {"id": "c2", "type": "function", "function": {"name": "get_traces", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "three candidates"},
                {"role": "tool", "tool_call_id": "c2", "content": "a trace"}]
    kept = shape_messages(messages, tool_results_as_user=False)
    assert kept[1]["content"] == "" and [m["role"] for m in kept] == ["user", "assistant", "tool", "tool"]
    as_user = shape_messages(messages, tool_results_as_user=True)
    assert [m["role"] for m in as_user] == ["user", "assistant", "user"]  # one user turn: roles alternate
    assert as_user[2]["content"] == ("Result of the read_history call:\nthree candidates\n\n"
                                     "Result of the get_traces call:\na trace")


def test_a_prompt_is_shrunk_to_fit_and_fails_alone_when_it_cannot():
    caps = EndpointCapabilities(base_url="x", model="m", context_tokens=1000)
    client = LLMClient(fake([AIMessage(content="ok")]), RoleSettings(kind="llm", max_output_tokens=200), "critic",
                       caps)
    sizes = [9000, 5000, 2000, 1500]
    fitted = client.fit(lambda level: [HumanMessage("x" * sizes[level])], len(sizes))
    assert fitted.level == 2  # 2,000 characters: about 667 tokens, within 1,000 - 200 - 64
    with pytest.raises(CallFailed, match="even shrunk to the minimum.*context of 1,000 tokens") as err:
        client.fit(lambda level: [HumanMessage("x" * 9000)], 3)
    assert err.value.kind == "context"


def test_the_token_budget_stops_new_calls_and_keeps_what_was_paid_for(run_graph, graph_store):
    # The proposal costs 150 tokens against a budget of 100: the LLM critic and diagnostician make no call; the
    # rule critic and the statistics diagnostician take over, the candidate is evaluated, selected and held out.
    proposer = fake([AIMessage(content="```python\n" + controller(1) + "```")] * 2)
    critic = fake([verdict_call(True)])
    diag = fake([AIMessage(content="unused")])
    state, _, _ = run_graph(rounds=2, max_llm_tokens=100,
                            chat_models={"proposer": proposer, "critic": critic, "diagnostician": diag})
    assert state.status == "done" and state.heldout is not None and state.selected
    assert len(proposer.seen) == 1 and critic.seen == [] and diag.seen == []
    assert state.stop_reason == "LLM tokens 150 reached the limit 100"
    (cand,) = history.list_candidates(graph_store, state.config.run_id)
    assert cand["status"] == "evaluated" and "LLM token budget is used up" in cand["critic"]["reasons"][0]
    diagnosis = history.get_diagnoses(graph_store, state.config.run_id)[cand["candidate_id"]]
    assert diagnosis["summary"].startswith("(diagnosed by the statistics diagnostician")
    assert [c.role for c in llm_calls(graph_store, state.config.run_id)] == ["proposer"]


def test_the_diagnostician_prompt_names_no_gold_answer():
    """The LLM diagnostician learns whether a question's modal answer was right, never the gold answer: its
    diagnosis reaches the proposer, which could write answers it learns into a controller."""
    from autotts_graph.graph.agents.prompting import SHRINK_LEVELS, diagnostician_body
    from autotts_graph.graph.agents.roles import DiagnoseInput, QuestionOutcome

    outcomes = [QuestionOutcome(env="m/d", beta=0.5, question_index=0, gold="8675309", accuracy=0.0,
                                mean_tokens=900.0, modal_answer="41"),
                QuestionOutcome(env="m/d", beta=0.5, question_index=1, gold="12", accuracy=1.0, mean_tokens=500.0,
                                modal_answer="12")]
    body = diagnostician_body(DiagnoseInput(candidate_id="c", source="x = 1", outcomes=outcomes), SHRINK_LEVELS[0])
    assert "8675309" not in body
    assert "modal answer '41' (wrong)" in body and "modal answer '12' (correct)" in body
