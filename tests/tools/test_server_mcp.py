"""The MCP server in memory: tool surface, contract, held-out invisibility, argument errors, timeouts."""

from __future__ import annotations

import asyncio
import json

import pytest
from autotts_graph.tools.contract import EXAMPLE_CONTROLLER, contract_text
from autotts_graph.tools.server import TOOL_SPECS, gate_of, make_server

from .conftest import (
    HELDOUT_ENV,
    SEARCH_ENV,
    SLOW_SOLVE,
    baseline_src,
    mcp_error,
    mcp_result,
    memory_session,
    serve,
)

TOOLS = {"list_environments", "describe_environment", "controller_contract", "validate_controller",
         "evaluate_controller", "get_evaluation", "get_traces", "run_baseline", "query_store"}


def run(coro):
    return asyncio.run(coro)


def test_tool_surface(make_ctx):
    mcp = serve(make_ctx())

    async def go():
        async with memory_session(mcp) as s:
            tools = (await s.list_tools()).tools
            assert {t.name for t in tools} == TOOLS
            for t in tools:
                assert len(t.description) > 150, t.name
                assert t.inputSchema["type"] == "object" and t.outputSchema, t.name
            ev = next(t for t in tools if t.name == "evaluate_controller")
            props = ev.inputSchema["properties"]
            assert set(ev.inputSchema["required"]) == {"source", "envs"}
            betas = next(t for t in props["betas"]["anyOf"] if t["type"] == "array")
            seeds = next(t for t in props["seeds"]["anyOf"] if t["type"] == "integer")
            assert betas["items"]["maximum"] == 1.0 and seeds["maximum"] == 1000
            assert all(p.get("description") for p in props.values())
            assert ev.annotations.readOnlyHint is False
            resources = {str(r.uri) for r in (await s.list_resources()).resources}
            assert "autotts://contract" in resources
            text = (await s.read_resource("autotts://contract")).contents[0].text
            assert text == contract_text()
            asc = (await s.read_resource("autotts://baselines/asc")).contents[0].text
            assert asc == baseline_src("asc")

    run(go())


def test_contract_is_enough_to_write_a_valid_controller(make_ctx):
    text = contract_text()
    for needle in ("probe_new()", "probe_more(i)", "get_new_branch_final_answer()", "safe_probe_new",
                   "vote_stats", "beta_confidence", "weighted_vote", "schedule(beta)", "monotone", "'ERR'",
                   "finish", "MAX_BRANCHES", "numpy", "getattr()"):
        assert needle in text, needle
    mcp = serve(make_ctx())

    async def go():
        async with memory_session(mcp) as s:
            doc = mcp_result(await s.call_tool("controller_contract", {}))
            assert doc["text"] == text and doc["example_source"] == EXAMPLE_CONTROLLER
            report = mcp_result(await s.call_tool("validate_controller", {"source": doc["example_source"]}))
            assert report["ok"], report
            assert report["schedule"]["1.0"]["max_branches"] == 64
            summary = mcp_result(await s.call_tool("evaluate_controller", {
                "source": doc["example_source"], "envs": [SEARCH_ENV], "betas": [0.0, 1.0], "seeds": 3}))
            assert summary["ok"] and len(summary["points"]) == 2
            low, high = summary["points"]
            assert low["avg_cost"] <= high["avg_cost"]

    run(go())


def test_heldout_invisible_through_every_tool(populated):
    hidden = populated.ctx()
    mcp = serve(hidden)
    src = baseline_src("asc")

    async def go():
        async with memory_session(mcp) as s:
            texts = []
            envs = mcp_result(await s.call_tool("list_environments", {}))
            assert HELDOUT_ENV not in [e["name"] for e in envs["environments"]]
            texts.append(json.dumps(envs))
            described = mcp_result(await s.call_tool("describe_environment", {"env": SEARCH_ENV}))
            texts.append(json.dumps(described))
            refused = [
                ("describe_environment", {"env": HELDOUT_ENV}),
                ("evaluate_controller", {"source": src, "envs": [HELDOUT_ENV], "betas": [0.5], "seeds": 2}),
                ("evaluate_controller", {"source": src, "envs": [SEARCH_ENV, HELDOUT_ENV], "betas": [0.5],
                                         "seeds": 2}),
                ("validate_controller", {"source": src, "env": HELDOUT_ENV}),
                ("run_baseline", {"method": "sc", "envs": [HELDOUT_ENV], "configs": [{"k": 2}], "seeds": 2}),
                ("get_evaluation", {"evaluation_id": populated.heldout_ev}),
                ("get_evaluation", {"evaluation_id": populated.mixed_ev}),
                ("get_traces", {"evaluation_id": populated.heldout_ev}),
                ("get_traces", {"evaluation_id": populated.mixed_ev, "env": SEARCH_ENV}),
                ("get_traces", {"evaluation_id": populated.search_ev, "env": HELDOUT_ENV}),
            ]
            for name, args in refused:
                err = mcp_error(await s.call_tool(name, args))
                assert "unknown environment" in err or "unknown evaluation" in err, (name, err)
                # The error may echo the caller's own argument; what it adds must not name held-out data.
                if "unknown environment" in err:
                    texts.append(err.split("(known:")[1])
                else:
                    assert "secret" not in err
            texts.append(json.dumps(mcp_result(await s.call_tool(
                "get_evaluation", {"evaluation_id": populated.search_ev, "per_question": True}))))
            texts.append(json.dumps(mcp_result(await s.call_tool(
                "get_traces", {"evaluation_id": populated.search_ev, "limit": 50}))))
            for sql in ("SELECT * FROM environments", "SELECT * FROM evaluations", "SELECT * FROM runs",
                        "SELECT DISTINCT env FROM branches", "SELECT DISTINCT env FROM traces"):
                texts.append(json.dumps(mcp_result(await s.call_tool("query_store", {"sql": sql}))))
            blob = "\n".join(texts)
            assert "secret" not in blob
            assert populated.heldout_ev not in blob and populated.mixed_ev not in blob

    run(go())
    exposed = serve(populated.ctx(expose_heldout=True))

    async def go_exposed():
        async with memory_session(exposed) as s:
            envs = mcp_result(await s.call_tool("list_environments", {}))
            assert HELDOUT_ENV in [e["name"] for e in envs["environments"]]
            ev = mcp_result(await s.call_tool("get_evaluation", {"evaluation_id": populated.heldout_ev}))
            assert ev["points"][0]["env"] == HELDOUT_ENV
            rows = mcp_result(await s.call_tool("query_store", {"sql": "SELECT count(*) FROM evaluations"}))
            assert rows["rows"] == [[3]]

    run(go_exposed())


def test_bad_arguments_get_clear_errors(make_ctx):
    mcp = serve(make_ctx())
    src = baseline_src("asc")

    async def go():
        async with memory_session(mcp) as s:
            err = mcp_error(await s.call_tool("evaluate_controller", {"source": src, "envs": [SEARCH_ENV],
                                                                      "betas": [1.5]}))
            assert "betas" in err and "less than or equal to 1" in err
            err = mcp_error(await s.call_tool("evaluate_controller", {"envs": [SEARCH_ENV]}))
            assert "source" in err and "required" in err.lower()
            err = mcp_error(await s.call_tool("evaluate_controller", {"source": src, "envs": []}))
            assert "envs" in err
            err = mcp_error(await s.call_tool("evaluate_controller", {"source": src, "envs": ["No/such"],
                                                                      "betas": [0.5], "seeds": 2}))
            assert "unknown environment 'No/such'" in err and SEARCH_ENV in err
            err = mcp_error(await s.call_tool("get_traces", {"evaluation_id": "x", "limit": 500}))
            assert "limit" in err
            err = mcp_error(await s.call_tool("run_baseline", {"method": "magic", "envs": [SEARCH_ENV]}))
            assert "method" in err
            err = mcp_error(await s.call_tool("query_store", {"sql": "DROP TABLE environments"}))
            assert "only read-only" in err
            err = mcp_error(await s.call_tool("describe_environment", {}))
            assert "env" in err
            broken = mcp_result(await s.call_tool("evaluate_controller", {
                "source": "def oops(:\n", "envs": [SEARCH_ENV], "betas": [0.5], "seeds": 2}))
            assert not broken["ok"] and broken["error"]["kind"] == "syntax"
            report = mcp_result(await s.call_tool("validate_controller", {"source": "import os\n"}))
            assert not report["ok"] and "os" in report["errors"][0]

    run(go())


def test_call_timeout_then_server_still_answers(make_ctx):
    ctx = make_ctx()
    mcp = serve(ctx, heavy_timeout_s=0.5)

    async def go():
        async with memory_session(mcp) as s:
            err = mcp_error(await s.call_tool("evaluate_controller", {
                "source": SLOW_SOLVE, "envs": [SEARCH_ENV], "betas": [0.5], "seeds": 3}))
            assert "did not finish within 0.5 s" in err
            assert mcp_result(await s.call_tool("list_environments", {}))["environments"]
        stats = gate_of(mcp).stats
        assert stats.timed_out == 1

    run(go())


def test_process_sandbox_refused(store):
    from autotts_graph.tools.context import ToolContext

    with pytest.raises(ValueError, match="never 'process'"):
        make_server(ToolContext(store=store, sandbox="process"))


def test_registry_matches_server():
    assert {t.name for t in TOOL_SPECS} == TOOLS
    assert {t.name for t in TOOL_SPECS if t.sandbox} == {"validate_controller", "evaluate_controller",
                                                         "run_baseline"}


def test_run_baseline(make_ctx):
    mcp = serve(make_ctx())

    async def go():
        async with memory_session(mcp) as s:
            res = mcp_result(await s.call_tool("run_baseline", {"method": "sc", "envs": [SEARCH_ENV],
                                                                "configs": [{"k": 1}, {"k": 4}], "seeds": 2}))
            assert res["summary"]["ok"] and [r["label"] for r in res["rows"]] == ["SC@1", "SC@4"]
            one, four = (r["point"] for r in res["rows"])
            assert one["avg_cost"] < four["avg_cost"]
            err = mcp_error(await s.call_tool("run_baseline", {"method": "sc", "envs": [SEARCH_ENV],
                                                               "configs": [{"beta": 0.5}], "seeds": 2}))
            assert "configs[0]: sc needs k" in err

    run(go())


@pytest.mark.parametrize("tool", ["validate_controller", "evaluate_controller"])
def test_a_source_too_deep_to_parse_is_one_contract_error(make_ctx, tool):
    """Deep enough that the parser itself gives up (MemoryError, RecursionError): a contract error in one
    line, never an internal error."""
    mcp = serve(make_ctx())
    deep = [baseline_src("asc") + "\nX = " + "-" * 100_000 + "1\n", "X = a" + ".b" * 50_000 + "\n"]

    async def go():
        async with memory_session(mcp) as s:
            out = []
            for source in deep:
                args = {"source": source} if tool == "validate_controller" else {
                    "source": source, "envs": [SEARCH_ENV], "betas": [0.5], "seeds": 2}
                out.append(mcp_result(await s.call_tool(tool, args)))
            return out

    for report in asyncio.run(go()):
        assert report["ok"] is False
        errors = report["errors"] if tool == "validate_controller" else [report["error"]["message"]]
        assert len(errors) == 1 and "nested too deeply" in errors[0] and "\n" not in errors[0], errors
        if tool == "evaluate_controller":
            assert report["error"]["kind"] == "contract"
