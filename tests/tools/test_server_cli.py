"""`serve` as a process: the MCP client SDK over stdio, HTTP from the command line, refusals."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import REPO, SEARCH_ENV, baseline_src, http_session, mcp_error, mcp_result

ENV = {**os.environ, "PYTHONPATH": str(REPO.parent)}


def serve_args(store, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autotts_graph.cli.serve_cmd", "--store", str(store.path), *extra]


def test_stdio_with_the_client_sdk(store, sandbox):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if sandbox == "process":
        pytest.skip("neither docker nor bwrap works here, and `serve` refuses the process backend")
    params = StdioServerParameters(command=sys.executable, args=serve_args(store, "--sandbox", sandbox)[1:],
                                   env=ENV)

    async def go():
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    listed = mcp_result(await s.call_tool("list_environments", {}))["environments"]
                    assert SEARCH_ENV in {e["name"] for e in listed}
                    assert "Tiny/secret" not in {e["name"] for e in listed}
                    summary = mcp_result(await s.call_tool("evaluate_controller", {
                        "source": baseline_src("esc"), "envs": [SEARCH_ENV], "betas": [0.5], "seeds": 3}))
                    assert summary["ok"] and summary["backend"] in ("docker", "bwrap")
                    page = mcp_result(await s.call_tool(
                        "get_traces", {"evaluation_id": summary["evaluation_id"], "limit": 1}))
                    assert page["total"] == 3 and len(page["traces"]) == 1
                    err = mcp_error(await s.call_tool("describe_environment", {"env": "Tiny/secret"}))
                    assert "unknown environment" in err

    asyncio.run(go())


def test_http_from_the_command_line_with_token(store, sandbox):
    if sandbox == "process":
        pytest.skip("neither docker nor bwrap works here, and `serve` refuses the process backend")
    proc = subprocess.Popen(serve_args(store, "--transport", "http", "--port", "0", "--sandbox", sandbox),
                            env={**ENV, "AUTOTTS_MCP_TOKEN": "tok-123"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            found = re.search(r"(http://\S+/mcp)", line)
            url = found.group(1) if found else None
        assert url, "the server did not print its URL"
        assert httpx.post(url, json={}, timeout=10).status_code == 401

        async def go():
            async with http_session(url, token="tok-123") as s:
                assert mcp_result(await s.call_tool("list_environments", {}))["environments"]

        asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_refusals(store):
    def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(serve_args(store, *args), env=env or ENV, capture_output=True, text=True,
                              timeout=60)

    res = serve("--sandbox", "process")
    assert res.returncode == 1 and "process" in res.stderr and "Traceback" not in res.stderr
    res = serve("--transport", "http", "--host", "0.0.0.0")
    assert res.returncode == 1 and "bearer token" in res.stderr
    res = serve("--transport", "carrier-pigeon")
    assert res.returncode == 1 and "--transport" in res.stderr
    assert res.stdout == ""


def test_import_is_light():
    code = ("import sys, autotts_graph.cli.serve_cmd; "
            "print(sorted(m for m in ('mcp', 'langchain_core', 'uvicorn', 'duckdb', 'starlette') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
