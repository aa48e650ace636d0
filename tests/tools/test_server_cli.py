"""`serve` as a process: the MCP client SDK over stdio, HTTP from the command line, refusals."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from ..sandbox.bypasses import MEMO
from .conftest import REPO, SEARCH_ENV, baseline_src, http_session, mcp_error, mcp_result

ENV = {**os.environ, "PYTHONPATH": str(REPO.parent)}


def serve_args(store, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autotts_graph.cli.serve_cmd", "--store", str(store.path), *extra]


def served_url(proc: subprocess.Popen) -> str:
    """The /mcp URL an HTTP server prints on stderr once it listens (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        found = re.search(r"(http://\S+/mcp)", line)
        if found:
            return found.group(1)
    raise AssertionError("the server did not print its URL")


@asynccontextmanager
async def stdio_session(store, *flags: str):
    """An initialised MCP ClientSession with `autotts-graph serve` spawned over stdio (its stderr dropped)."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=serve_args(store, *flags)[1:], env=ENV)
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s


def test_stdio_with_the_client_sdk(store, sandbox):
    if sandbox == "process":
        pytest.skip("neither docker nor bwrap works here, and `serve` refuses the process backend")

    async def go():
        async with stdio_session(store, "--sandbox", sandbox) as s:
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
        url = served_url(proc)
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


def test_one_container_pool_cheater_then_honest_client_then_shutdown(store, sandbox):
    """Through the server with a pool of one container: a cheating client is flagged and leaves nothing for
    the next client, whose baseline equals the in-process figures; stopping the server removes its containers."""
    import docker
    from autotts_graph.sandbox.judge import score_in_process
    from autotts_graph.sandbox.pool import OWNER_LABEL
    from autotts_graph.sandbox.runtime.evaluate import load_controller_class
    from autotts_graph.store.trajectories import import_records, pack_path

    from .conftest import make_records

    if sandbox != "auto":
        pytest.skip("needs the docker sandbox")
    # Enough questions for the audit's six solves (one per question) to meet the cheat.
    import_records(store, "Tiny", "wide", make_records(8, 24, 5))
    proc = subprocess.Popen(serve_args(store, "--transport", "http", "--port", "0", "--sandbox", "docker"),
                            env={**ENV, "AUTOTTS_SANDBOX_POOL": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    client = docker.from_env()

    def ours() -> list:
        # The low-level listing: the high-level one inspects each container and races with removals.
        return [c for c in client.api.containers(all=True, filters={"label": OWNER_LABEL})
                if (c.get("Labels") or {}).get(OWNER_LABEL, "").split(":")[1:2] == [str(proc.pid)]]

    try:
        url = served_url(proc)

        async def go():
            async with http_session(url) as cheater:
                flagged = mcp_result(await cheater.call_tool("evaluate_controller", {
                    "source": MEMO, "envs": ["Tiny/wide"], "betas": [0.5, 1.0], "seeds": 4}))
            assert not flagged["ok"] and flagged["error"]["kind"] == "audit", flagged
            async with http_session(url) as honest:
                return mcp_result(await honest.call_tool("run_baseline", {
                    "method": "asc", "envs": [SEARCH_ENV], "configs": [{"max_samples": 8, "threshold": 0.95}],
                    "seeds": 4}))

        result = asyncio.run(go())
        point = result["rows"][0]["point"]
        local = score_in_process(load_controller_class(baseline_src("asc")), pack_path(store, SEARCH_ENV),
                                 {"max_samples": 8, "threshold": 0.95}, list(range(4)))
        assert (point["accuracy"], repr(point["avg_cost"])) == (local["accuracy"], repr(local["avg_cost"]))
        assert ours(), "the server keeps a warm container"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert ours() == []  # the server's shutdown removed every container it started
