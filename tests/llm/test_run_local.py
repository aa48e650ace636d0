"""`autotts-graph run` with every role on a real local model (llama-cpp-python + SmolLM2-135M-Instruct): the
end-to-end run on real replay data, and a server killed mid-run, then `--resume`. No fake model anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from autotts_graph.store import history
from autotts_graph.store.db import Store
from autotts_graph.store.ledger import llm_calls
from llm_server import KEY_ENV

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autotts_graph.cli.main", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_"))}
    env.update(LANGGRAPH_CLI_NO_ANALYTICS="1", LANGGRAPH_NO_VERSION_CHECK="true", COLUMNS="200")
    return env


LLM_ROLES = ["--proposer", "llm", "--critic", "llm", "--diagnostician", "llm", "--model", "smollm2",
             "--api-key-env", KEY_ENV]


def test_discovery_on_real_replay_data_with_every_role_on_the_local_model(recorder, replay_dir, tmp_path):
    store = Store(tmp_path / "run.duckdb")
    from autotts_graph.store.trajectories import import_path

    import_path(store, replay_dir / "Qwen3-0.6B" / "aime24.json")
    import_path(store, replay_dir / "Qwen3-0.6B" / "aime25.json", split="heldout")
    done = subprocess.run(_cli("run", *LLM_ROLES, "--base-url", recorder.base_url, "--rounds", "1", "--population",
                               "2", "--search", "Qwen3-0.6B/aime24", "--heldout", "Qwen3-0.6B/aime25",
                               "--max-attempts", "2", "--seeds", "2", "--screen-seeds", "2", "--betas", "0,0.5,1",
                               "--baselines", "sc,cmc", "--context-tokens", "4096", "--max-output-tokens", "256",
                               "--call-timeout", "300", "--store", str(store.path), "--no-live"),
                          env=_env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = history.list_runs(store)
    run_id = run.run_id
    assert f"run {run_id}: {run.status}" in done.stdout and run.status in ("done", "no_candidate")
    calls = llm_calls(store, run_id)
    proposals = [c for c in calls if c.node == "propose"]
    assert proposals and {c.model for c in proposals} == {"smollm2"}
    # Whatever the 135M model wrote went through check -> revision -> failure routing, and stays recorded with
    # its errors: a failed first attempt of a slot is followed by a second one that was told why.
    cands = history.list_candidates(store, run_id)
    for c in cands:
        if c["status"] == "check_failed":
            assert c["check_result"]["errors"], c
    attempts = {}
    for c in cands:
        attempts.setdefault(c["slot"], set()).add(c["attempt"])
    failed_first = [s for s in (0, 1) if any(c["slot"] == s and c["attempt"] == 0 and c["status"] != "evaluated"
                                             for c in cands)
                    or not any(c["slot"] == s and c["attempt"] == 0 for c in cands)]
    for slot in failed_first:
        second = [c for c in proposals if c.slot == slot]
        assert len(second) >= 2 or 1 in attempts.get(slot, set()), (slot, attempts, second)
    # The report and the command's last lines show LLM calls, tokens and time per role.
    assert "LLM: proposer" in done.stdout
    report = (store.path.parent / (store.path.name + ".runs") / run_id / "report.md").read_text()
    assert "## LLM calls per role" in report and "| proposer | smollm2 |" in report
    assert "## LLM endpoints" in report and "smollm2" in report
    # Spend figures in the store are the server's reported usage, request by request.
    assert all(c.usage == "server" for c in calls), [c for c in calls if c.usage != "server"]
    assert sum(c.prompt_tokens + c.completion_tokens for c in calls) == recorder.reported_tokens()
    spent = sum(s.llm_tokens for s in history.run_spend(store, run_id).values())
    assert spent == sum(c.prompt_tokens + c.completion_tokens for c in calls if c.node != "probe")


def test_a_server_killed_mid_run_then_resume(own_llm_server, small_store):
    import time

    from llm_server import free_port

    args = ["run", *LLM_ROLES, "--search", "m1/search", "--heldout", "m1/heldout", "--rounds", "1",
            "--population", "1", "--max-attempts", "1", "--seeds", "2", "--betas", "0.2,0.8", "--baselines", "sc",
            "--sandbox", "process", "--context-tokens", "3072", "--max-output-tokens", "128",
            "--store", str(small_store.path), "--no-live"]
    proc = subprocess.Popen(_cli(*args, "--base-url", own_llm_server.base_url), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            runs = history.list_runs(small_store)
            if runs and "prepare" in history.run_spend(small_store, runs[0].run_id):
                break  # the baselines are done: the proposer's call is next (or in flight)
            time.sleep(0.2)
        own_llm_server.kill()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    run_id = history.list_runs(small_store)[0].run_id
    assert "cannot reach" in out and f"resume with: autotts-graph run --resume {run_id}" in out, out
    assert history.get_run(small_store, run_id).status == "failed"
    before = llm_calls(small_store, run_id)
    # The server comes back elsewhere; the resume names the new URL (a resume may change a role's endpoint).
    own_llm_server.port = free_port()
    own_llm_server.start()
    done = subprocess.run(_cli("run", "--resume", run_id, "--base-url", own_llm_server.base_url, "--store",
                               str(small_store.path), "--no-live"), env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = history.get_run(small_store, run_id)
    assert run.status in ("done", "no_candidate") and f"run {run_id}: {run.status}" in done.stdout
    assert run.config["proposer"]["base_url"] == own_llm_server.base_url
    assert {e["base_url"] for e in run.report["endpoints"]} == {own_llm_server.base_url}
    after = llm_calls(small_store, run_id)
    assert after[:len(before)] == before  # nothing recorded before the kill was lost
    assert any(c.node == "propose" for c in after[len(before):])
    assert history.run_spend(small_store, run_id)["prepare"].calls == 1  # the baselines were not redone
