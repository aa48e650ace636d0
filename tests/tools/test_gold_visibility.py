"""Gold answers stay on the host: no tool output over a real MCP client (stdio, HTTP) states one, unless the
server runs with --expose-gold; correctness of answers is given instead."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import baseline_src, build_store, http_session, make_records, mcp_result, serve
from .test_server_cli import stdio_session

LABELS_ENV = "Tiny/labels"
# Gold answers no branch ever gives: any output that contains one states the gold. Questions 3 and 4 keep
# ordinary gold answers (reached by most branches), so correctness has something to report.
DISTINCT_GOLD = ["GOLD_Q0_ZX81", "GOLD_Q1_QW27", "GOLD_Q2_PL64"]


@pytest.fixture(scope="module")
def gold_store(tmp_path_factory, sandbox):
    """The tool tests' store plus an environment with distinctive gold answers, and evaluations of it (traces,
    outcomes) made by a trusted context."""
    from autotts_graph.store.trajectories import import_records
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    store = build_store(tmp_path_factory.mktemp("gold") / "store.duckdb")
    records = make_records(5, 12, 7)
    for record, gold in zip(records, DISTINCT_GOLD, strict=False):
        record["gold_answer"] = gold
    import_records(store, "Tiny", "labels", records)
    ctx = ToolContext(store=store, sandbox=sandbox, workers=2)
    try:
        for method in ("esc", "asc"):
            summary = evaluate_controller(ctx, EvaluateInput(source=baseline_src(method), envs=[LABELS_ENV],
                                                             betas=[0.5], seeds=3, trace_seeds=3))
            assert summary.ok, summary.error
    finally:
        ctx.close()
    return store


def _text(res) -> str:
    return json.dumps(res.structuredContent, default=str) + "".join(getattr(c, "text", "") for c in res.content)


async def _every_output(s) -> tuple[str, dict]:
    """Every tool's output on this store (all tables, every evaluation, every trace page), as one text; and the
    describe_environment answer of the labels environment."""
    out = [_text(await s.call_tool("list_environments", {})), _text(await s.call_tool("controller_contract", {}))]
    for uri in ("autotts://contract", "autotts://baselines/asc"):
        out.append((await s.read_resource(uri)).contents[0].text)
    envs = [e["name"] for e in mcp_result(await s.call_tool("list_environments", {}))["environments"]]
    described = {}
    for env in envs:
        res = await s.call_tool("describe_environment", {"env": env})
        described[env] = mcp_result(res)
        out.append(_text(res))
    tables = mcp_result(await s.call_tool("query_store", {"sql": "SELECT table_name FROM duckdb_tables()"}))
    for (table,) in tables["rows"]:
        res = await s.call_tool("query_store", {"sql": f"SELECT * FROM {table}", "max_rows": 1000})
        assert not mcp_result(res)["truncated"], table
        out.append(_text(res))
    evaluations = mcp_result(await s.call_tool("query_store", {"sql": "SELECT evaluation_id FROM evaluations"}))
    assert evaluations["rows"]
    for (evaluation_id,) in evaluations["rows"]:
        out.append(_text(await s.call_tool("get_evaluation", {"evaluation_id": evaluation_id, "per_question": True})))
        offset = 0
        while offset is not None:
            page = await s.call_tool("get_traces", {"evaluation_id": evaluation_id, "offset": offset, "limit": 50})
            out.append(_text(page))
            offset = mcp_result(page)["next_offset"]
    return "\n".join(out), described[LABELS_ENV]


def _assert_no_gold(text: str, labels: dict) -> None:
    leaked = [g for g in DISTINCT_GOLD if g in text]
    assert leaked == [], f"gold answers in tool output: {leaked}"
    questions = labels["questions"]
    assert all(q["gold_answer"] is None for q in questions)
    # Correctness instead: the ordinary questions' most common final answer is right, the others' never.
    assert [q["modal_final_correct"] for q in questions] == [False, False, False, True, True]
    assert all(q["branch_accuracy"] == 0.0 for q in questions[:3]) and questions[3]["branch_accuracy"] > 0


def _assert_gold(text: str, labels: dict) -> None:
    assert [q["gold_answer"] for q in labels["questions"]][:3] == DISTINCT_GOLD
    assert all(g in text for g in DISTINCT_GOLD)


def _stdio(store, *flags: str):
    async def go():
        async with stdio_session(store, "--sandbox", "auto", *flags) as s:
            return await _every_output(s)

    return asyncio.run(go())


@pytest.mark.parametrize("expose", [False, True], ids=["default", "--expose-gold"])
def test_stdio_server(gold_store, sandbox, expose):
    if sandbox == "process":
        pytest.skip("neither docker nor bwrap works here, and `serve` refuses the process backend")
    text, labels = _stdio(gold_store, *(["--expose-gold"] if expose else []))
    (_assert_gold if expose else _assert_no_gold)(text, labels)


@pytest.mark.parametrize("expose", [False, True], ids=["default", "expose_gold"])
def test_http_server(gold_store, sandbox, expose):
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.server import running_http_server

    ctx = ToolContext(store=gold_store, sandbox=sandbox, workers=1, expose_gold=expose)
    try:
        with running_http_server(serve(ctx)) as url:
            async def go():
                async with http_session(url) as s:
                    return await _every_output(s)

            text, labels = asyncio.run(go())
    finally:
        ctx.close()
    (_assert_gold if expose else _assert_no_gold)(text, labels)


def test_exposing_heldout_data_does_not_expose_gold(gold_store, sandbox):
    """The held-out switch copies every table; the gold column stays out of it unless gold is exposed too."""
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.query_store import QueryInput, query_store

    for expose_gold in (False, True):
        ctx = ToolContext(store=gold_store, sandbox=sandbox, expose_heldout=True, expose_gold=expose_gold)
        columns = query_store(ctx, QueryInput(sql="SELECT * FROM questions")).columns
        assert ("gold_answer" in columns) is expose_gold
        ctx.close()


def test_the_graph_agents_tools_give_no_gold(gold_store, sandbox):
    """The graph's own agents get the registry's tools as LangChain tools (graph/agents/tools.py): the same
    answers, so no gold either."""
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.langchain import make_langchain_tools

    ctx = ToolContext(store=gold_store, sandbox=sandbox, workers=1)
    try:
        tools = {t.name: t for t in make_langchain_tools(ctx, ["describe_environment", "query_store"])}
        described = json.loads(tools["describe_environment"].invoke({"env": LABELS_ENV}))
        rows = tools["query_store"].invoke({"sql": "SELECT * FROM questions"})
    finally:
        ctx.close()
    _assert_no_gold(json.dumps(described) + str(rows), described)
