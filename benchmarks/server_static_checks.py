"""How much one client's large source stalls another client of the tool server (issue 20, item 6).

    python benchmarks/server_static_checks.py [--chars 3000000 200000] [--repeats 3]

Starts the MCP server over HTTP in this process (as `autotts-graph serve --transport http` does) on a
throw-away store, then, for each size, one client sends ``validate_controller`` with a source of that many
characters (copies of the CMC baseline, valid Python, with a forbidden import at the end so no sandbox
runs) while a second client calls ``list_environments`` back to back. It prints, per size: the heavy call's
wall time and answer, the light calls' count, median and worst latency during the heavy call, and the
server process's peak memory growth. Before issue 20 the source had no cap and was parsed on the server's
interpreter lock; now a source over 200k characters is refused in one line and the rest are checked in a
bounded worker process. The load average is printed: on a shared machine take the best of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _records(n_questions: int = 3, n_branches: int = 8) -> list[dict]:
    records = []
    for q in range(n_questions):
        branches = [[["ERR", str(q)], 900, str(q)] for _ in range(n_branches)]
        records.append({"question": f"q{q}", "gold_answer": str(q), "probe_freq": 500, "each_branch": branches,
                        "final_answers_trace": [b[2] for b in branches]})
    return records


def big_source(chars: int) -> str:
    """About ``chars`` characters of valid Python (CMC copies), ending in a forbidden import."""
    cmc = (REPO / "sandbox" / "controllers" / "cmc.py").read_text()
    parts, size, i = [], 0, 0
    while size + len(cmc) < chars - 20:
        part = cmc.replace("class CMC", f"class CMC{i}")
        parts.append(part)
        size += len(part)
        i += 1
    return "".join(parts) + "\nimport os\n"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _measure(url: str, source: str) -> dict:
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session(client):
        return streamable_http_client(url, http_client=client)

    async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=600)) as c1, \
            httpx.AsyncClient(timeout=httpx.Timeout(60, read=600)) as c2:
        async with await session(c1) as (r1, w1, _), await session(c2) as (r2, w2, _):
            async with ClientSession(r1, w1) as heavy, ClientSession(r2, w2) as light:
                await heavy.initialize()
                await light.initialize()
                await light.call_tool("list_environments", {})  # warm
                done = asyncio.Event()
                latencies: list[float] = []

                async def poll() -> None:
                    while not done.is_set():
                        t = time.perf_counter()
                        await light.call_tool("list_environments", {})
                        latencies.append(time.perf_counter() - t)
                        await asyncio.sleep(0.01)

                poller = asyncio.create_task(poll())
                await asyncio.sleep(0.1)
                started = time.perf_counter()
                res = await heavy.call_tool("validate_controller", {"source": source})
                wall = time.perf_counter() - started
                done.set()
                await poller
    answer = res.content[0].text if res.isError else json.dumps(res.structuredContent.get("errors", [])[:1])
    return {"heavy_wall_s": round(wall, 3), "heavy_error": res.isError, "answer": answer[:160],
            "light_calls": len(latencies), "light_median_s": round(statistics.median(latencies), 4),
            "light_max_s": round(max(latencies), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, nargs="+", default=[3_000_000, 200_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.getLogger("mcp").setLevel(logging.CRITICAL)  # the SDK logs every closed client stream as an error
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_records
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.server import make_server, running_http_server

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        import_records(store, "Bench", "env", _records())
        ctx = ToolContext(store=store, sandbox="process", workers=1)
        mcp = make_server(ctx, allow_process_sandbox=True)
        try:
            with running_http_server(mcp) as url:
                for chars in args.chars:
                    source = big_source(chars)
                    for run in range(args.repeats):
                        before = _peak_mb()
                        figures = asyncio.run(_measure(url, source))
                        figures.update(chars=len(source), run=run, peak_rss_growth_mb=round(_peak_mb() - before, 1),
                                       load="/".join(f"{x:.1f}" for x in os.getloadavg()))
                        print(json.dumps(figures), flush=True)
        finally:
            ctx.close()


if __name__ == "__main__":
    main()
