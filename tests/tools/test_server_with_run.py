"""The server keeps answering while a real `autotts-graph run` writes to the same store in another process,
and the run's held-out evaluation never shows through the server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from autotts_graph.store import history
from autotts_graph.tools.server import running_http_server

from .conftest import HELDOUT_ENV, REPO, SEARCH_ENV, http_session, mcp_error, mcp_result, serve


@pytest.mark.slow
def test_server_alongside_a_discovery_run(tmp_path, store, make_ctx, sandbox):
    mcp = serve(make_ctx())
    cmd = [sys.executable, "-m", "autotts_graph.cli.main", "run", "--rounds", "1", "--search", SEARCH_ENV,
           "--heldout", HELDOUT_ENV, "--seeds", "3", "--betas", "0,1", "--proposer", "offline", "--critic",
           "offline", "--diagnostician", "offline", "--sandbox", sandbox, "--store", str(store.path)]
    env = {**os.environ, "PYTHONPATH": str(REPO.parent), "OPENAI_API_KEY": ""}
    run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latencies: list[float] = []
    seen_evaluations: set[str] = set()

    async def go(url: str) -> None:
        async with http_session(url) as s:
            while run.poll() is None:
                for name, args in (("describe_environment", {"env": SEARCH_ENV}), ("list_environments", {}),
                                   ("query_store", {"sql": "SELECT evaluation_id, split FROM evaluations"})):
                    started = time.perf_counter()
                    res = mcp_result(await s.call_tool(name, args))
                    latencies.append(time.perf_counter() - started)
                    if name == "query_store":
                        assert all(split != "heldout" for _, split in res["rows"])
                        seen_evaluations.update(ev for ev, _ in res["rows"])
                await asyncio.sleep(0.3)
            output = run.stdout.read()
            assert run.returncode == 0, output[-3000:]
            rows = mcp_result(await s.call_tool("query_store", {"sql": "SELECT evaluation_id FROM evaluations"}))
            visible = {r[0] for r in rows["rows"]}
            assert visible and seen_evaluations <= visible
            for ev in visible:
                mcp_result(await s.call_tool("get_evaluation", {"evaluation_id": ev}))
            exposed = make_ctx(expose_heldout=True)
            with exposed.store.connect(read_only=True) as con:
                heldout = [r[0] for r in con.execute(
                    "SELECT DISTINCT evaluation_id FROM evaluation_points WHERE env = ?", [HELDOUT_ENV]).fetchall()]
            assert heldout, "the run made no held-out evaluation"
            for ev in heldout:
                assert ev not in visible
                assert history.get_evaluation(exposed.store, ev).points
                assert "unknown evaluation" in mcp_error(await s.call_tool("get_evaluation", {"evaluation_id": ev}))
                assert "unknown evaluation" in mcp_error(await s.call_tool("get_traces", {"evaluation_id": ev}))
            runs = mcp_result(await s.call_tool("query_store", {"sql": "SELECT * FROM runs"}))
            assert "secret" not in str(runs["rows"]) and runs["rows"]

    try:
        with running_http_server(mcp) as url:
            asyncio.run(go(url))
    finally:
        if run.poll() is None:
            run.kill()
    assert len(latencies) >= 6
    print(f"\nFIGURES alongside a run: {len(latencies)} calls, latency max {max(latencies):.2f} s")
