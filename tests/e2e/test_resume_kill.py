"""A real `autotts-graph run` killed with SIGKILL mid-round (or mid-generation, with parallel lanes) continues
with `--resume` without losing or redoing work."""

from __future__ import annotations

import subprocess
import sys

import pytest
from autotts_graph.store import history
from kill_point import assert_nothing_lost_or_redone, kill_9_at

pytestmark = pytest.mark.slow

SCRIPTED = ["--proposer", "scripted_roles:ScriptedProposer", "--critic", "scripted_roles:ScriptedCritic",
            "--diagnostician", "scripted_roles:ScriptedDiagnostician"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autotts_graph.cli.main", *args]


def test_kill_9_mid_round_then_resume(tiny_env_store, subprocess_env, tmp_path):
    store = tiny_env_store
    args = ["run", "--store", str(store.path), "--search", "m1/search", "--search", "m2/search", "--heldout",
            "m1/heldout", "--betas", "0.2,0.8", "--seeds", "2", "--rounds", "3", "--population", "1", "--sandbox",
            "process", "--baselines", "sc", "--no-live", *SCRIPTED]
    env = {**subprocess_env, "SCRIPTED_PROPOSER_DELAY": "1.0"}
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def in_round_1() -> bool:
        runs = history.list_runs(store)
        if not runs:
            return False
        cands = history.candidates(store, runs[0].run_id)
        return any(c.round == 1 for c in cands)

    kill_9_at(proc, in_round_1, 180)
    run_id = history.list_runs(store)[0].run_id
    before = {c.candidate_id: c for c in history.candidates(store, run_id)}
    round0 = [c for c in before.values() if c.round == 0 and c.status == "evaluated"]
    assert len(round0) == 1
    assert history.get_run(store, run_id).status == "running"
    prepare_rows_before = history.run_spend(store, run_id)["prepare"].calls

    done = subprocess.run(_cli("run", "--resume", run_id, "--store", str(store.path), "--no-live"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run {run_id}: done" in done.stdout
    after = {c.candidate_id: c for c in history.candidates(store, run_id)}
    # Nothing recorded before the kill was lost or changed.
    for cid, c in before.items():
        assert cid in after and after[cid].source == c.source and after[cid].round == c.round
    # Finished work was not redone: the baselines ran once, round 0's candidate was evaluated once (and once
    # more, on fresh seeds under the strict audit, if it is one of the selection's finalists).
    assert history.run_spend(store, run_id)["prepare"].calls == prepare_rows_before == 1
    finalists = {f["candidate_id"] for f in history.get_run(store, run_id).report["selection"]["finalists"]}
    assert history.count_evaluations(store, run_id=run_id, candidate_id=round0[0].candidate_id,
                                     split="search") == 1 + (round0[0].candidate_id in finalists)
    # The proposal of round 1 survived the kill (it was checkpointed): one proposal per round in all.
    assert history.run_spend(store, run_id)["propose"].calls == 3
    assert sorted(c.round for c in after.values() if c.status == "evaluated") == [0, 1, 2]
    assert len(after) == 3
    assert history.get_run(store, run_id).status == "done"
    assert history.find_evaluation(store, run_id=run_id, candidate_id=history.get_run(store, run_id).best_candidate,
                                   split="heldout") is not None


def test_kill_9_mid_generation_then_resume(tiny_env_store, subprocess_env):
    """Three lanes per generation; killed when generation 1 has finished lanes and unfinished ones."""
    store = tiny_env_store
    args = ["run", "--store", str(store.path), "--search", "m1/search", "--search", "m2/search", "--heldout",
            "m1/heldout", "--betas", "0.2,0.8", "--seeds", "2", "--rounds", "2", "--population", "3", "--sandbox",
            "process", "--baselines", "sc", "--no-live", *SCRIPTED]
    # Slot s proposes after 1 + 3 s seconds: the lanes of a generation finish far apart.
    env = {**subprocess_env, "SCRIPTED_PROPOSER_DELAY": "1.0", "SCRIPTED_SLOT_DELAY": "3.0"}
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def mid_generation_1() -> bool:
        runs = history.list_runs(store)
        if not runs:
            return False
        gen1 = [c for c in history.candidates(store, runs[0].run_id) if c.round == 1]
        done = [c for c in gen1 if c.status == "evaluated"]
        return bool(done) and len(done) < 3

    kill_9_at(proc, mid_generation_1, 240)
    run_id = history.list_runs(store)[0].run_id
    before = {c.candidate_id: c for c in history.candidates(store, run_id)}
    assert sorted((c.round, c.slot) for c in before.values() if c.round == 0) == [(0, 0), (0, 1), (0, 2)]
    assert history.get_run(store, run_id).status == "running"

    done = subprocess.run(_cli("run", "--resume", run_id, "--store", str(store.path), "--no-live"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run {run_id}: done" in done.stdout
    # Nothing recorded before the kill lost or changed; one candidate per slot and generation, each evaluated
    # once; every node once per candidate (a node killed half-way records no spend: its re-run is its only run).
    after = assert_nothing_lost_or_redone(store, run_id, before, slots=3)
    # The archive holds all six, once each on its home island.
    rows = [r for r in history.list_archive(store, run_id) if r.migrated_from is None]
    assert sorted(r.candidate_id for r in rows) == sorted(after)
    run = history.get_run(store, run_id)
    assert run.status == "done" and [g["generation"] for g in run.report["generations"]] == [0, 1]
    assert history.find_evaluation(store, run_id=run_id, candidate_id=run.best_candidate,
                                   split="heldout") is not None
