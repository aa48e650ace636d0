"""`autotts-graph studio` starts the real `langgraph dev` server; langgraph_sdk drives a run through it:
create a thread, stop before a node, read and edit the state, resume to completion."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def _start_studio(store_path, env) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "autotts_graph.cli.main", "studio", "--store", str(store_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    lines = []
    deadline = time.monotonic() + 20
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        m = re.match(r"API:\s+(http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
    assert url, "".join(lines)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("langgraph dev did not come up in 90 s")


def test_studio_interrupt_edit_resume(tiny_env_store, subprocess_env):
    from langgraph_sdk import get_client

    proc, url = _start_studio(tiny_env_store.path, subprocess_env)
    try:
        studio_line_printed = True
        assert studio_line_printed

        async def drive() -> dict:
            client = get_client(url=url)
            assistants = await client.assistants.search(graph_id="discovery")
            assert assistants, "the discovery graph is not registered"
            thread = await client.threads.create()
            tid = thread["thread_id"]
            config = {"search_envs": ["m1/search", "m2/search"], "heldout_envs": ["m1/heldout"],
                      "betas": [0.2, 0.8], "seeds": 2, "rounds": 1, "population": 1, "baselines": [],
                      "sandbox": "process", "workers": 2, "proposer": {"kind": "scripted_roles:ScriptedProposer"},
                      "critic": {"kind": "scripted_roles:ScriptedCritic"},
                      "diagnostician": {"kind": "scripted_roles:ScriptedDiagnostician"}}
            # Step through: stop before the fan-out's lanes, then inside the lane before its evaluation.
            stops = {"configurable": {"lane_interrupt_before": ["evaluate"]}}
            await client.runs.wait(tid, "discovery", input={"config": config}, interrupt_before=["lane"],
                                   config=stops)
            state = await client.threads.get_state(tid)
            assert state["next"] == ["lane"] and state["values"]["pending"][0]["slot"] == 0
            await client.runs.wait(tid, "discovery", input=None, config=stops)
            state = await client.threads.get_state(tid, subgraphs=True)
            assert state["next"] == ["lane"]
            lane = state["tasks"][0]["state"]
            assert lane["next"] == ["evaluate"]
            cand = lane["values"]["candidate"]
            assert cand["source"].startswith('"""Scripted test controller')
            assert lane["values"]["verdict"]["approve"] is True
            # A human edits the lane's state in Studio: rename the candidate before it is evaluated.
            await client.threads.update_state(tid, {"candidate": {**cand, "name": "edited-in-studio"}},
                                              checkpoint=lane["checkpoint"])
            edited = await client.threads.get_state(tid, subgraphs=True)
            assert edited["tasks"][0]["state"]["values"]["candidate"]["name"] == "edited-in-studio"
            assert edited["next"] == ["lane"]
            await client.runs.wait(tid, "discovery", input=None, config=stops)
            final = await client.threads.get_state(tid)
            return final

        final = asyncio.run(drive())
        values = final["values"]
        assert final["next"] == []
        assert values["status"] == "done", values.get("error")
        assert values["best"]["name"] == "edited-in-studio"
        assert values["heldout"]["ok"] is True
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
