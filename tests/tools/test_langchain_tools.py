"""The tools as LangChain tools: in process (make_langchain_tools) and over MCP (langchain-mcp-adapters),
driven by a LangGraph agent whose scripted chat model calls evaluate_controller, then get_traces."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from autotts_graph.tools.langchain import make_langchain_tools
from autotts_graph.tools.server import running_http_server
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from .conftest import HELDOUT_ENV, SEARCH_ENV, baseline_src, serve


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)


class ScriptedModel(BaseChatModel):
    """A fake chat model with tools: evaluate a controller, read the failures' traces, then answer."""

    source: str
    env: str

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            msg = AIMessage(content="", tool_calls=[{"name": "evaluate_controller", "id": "call-1", "args": {
                "source": self.source, "envs": [self.env], "betas": [0.2], "seeds": 3, "trace_seeds": 1}}])
        elif len(results) == 1:
            summary = json.loads(_text(results[0].content))
            msg = AIMessage(content="", tool_calls=[{"name": "get_traces", "id": "call-2", "args": {
                "evaluation_id": summary["evaluation_id"], "failures_only": False, "limit": 5}}])
        else:
            page = json.loads(_text(results[1].content))
            msg = AIMessage(content=f"read {len(page['traces'])} of {page['total']} traces")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def make_agent(model: BaseChatModel, tools: list) -> Any:
    """A minimal LangGraph tool-calling agent: model -> tools -> model ... -> end."""
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "model")
    return graph.compile()


def check_conversation(messages: list[BaseMessage]) -> None:
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_messages] == ["evaluate_controller", "get_traces"]
    assert all(m.status != "error" for m in tool_messages), [m.content for m in tool_messages]
    summary = json.loads(_text(tool_messages[0].content))
    assert summary["ok"] and summary["points"][0]["env"] == SEARCH_ENV
    page = json.loads(_text(tool_messages[1].content))
    assert page["total"] == 3 and len(page["traces"]) == 3
    assert page["traces"][0]["steps"][0]["event"] == "start"
    assert messages[-1].content == "read 3 of 3 traces"


def test_in_process_tools(make_ctx):
    ctx = make_ctx()
    tools = make_langchain_tools(ctx, names=["evaluate_controller", "get_traces", "list_environments"])
    assert [t.name for t in tools] == ["evaluate_controller", "get_traces", "list_environments"]
    by_name = {t.name: t for t in tools}
    assert by_name["list_environments"].args == {}
    assert "betas" in by_name["evaluate_controller"].args
    listed = json.loads(by_name["list_environments"].invoke({}))
    assert HELDOUT_ENV not in [e["name"] for e in listed["environments"]]
    assert "unknown environment" in by_name["evaluate_controller"].invoke(
        {"source": "x", "envs": [HELDOUT_ENV], "betas": [0.5], "seeds": 2})
    assert "invalid argument seeds" in by_name["evaluate_controller"].invoke(
        {"source": "x", "envs": [SEARCH_ENV], "seeds": 0})
    with pytest.raises(ValueError, match="unknown tool"):
        make_langchain_tools(ctx, names=["rm_rf"])
    agent = make_agent(ScriptedModel(source=baseline_src("asc"), env=SEARCH_ENV), tools)
    out = agent.invoke({"messages": [HumanMessage("evaluate asc and show me its traces")]})
    check_conversation(out["messages"])
    artifact = next(m for m in out["messages"] if isinstance(m, ToolMessage)).artifact
    assert artifact.ok and artifact.evaluation_id


def test_mcp_adapters_in_a_langgraph_agent(make_ctx):
    from langchain_mcp_adapters.client import MultiServerMCPClient

    mcp = serve(make_ctx())

    async def go(url: str) -> list[BaseMessage]:
        client = MultiServerMCPClient({"autotts": {"transport": "streamable_http", "url": url}})
        tools = await client.get_tools()
        assert {t.name for t in tools} >= {"evaluate_controller", "get_traces", "query_store"}
        agent = make_agent(ScriptedModel(source=baseline_src("esc"), env=SEARCH_ENV), tools)
        out = await agent.ainvoke({"messages": [HumanMessage("evaluate esc and show me its traces")]})
        return out["messages"]

    with running_http_server(mcp) as url:
        messages = asyncio.run(go(url))
    check_conversation(messages)
