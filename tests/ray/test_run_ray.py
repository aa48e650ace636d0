"""`autotts-graph run --executor ray` on the two-node loopback cluster: the same discovery as a local run, and a
driver killed with SIGKILL mid-run continues with `--resume` without losing or redoing work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from autotts_graph.cli.main import app
from kill_point import assert_nothing_lost_or_redone, kill_9_at
from typer.testing import CliRunner

pytestmark = pytest.mark.ray

GRAPH_TESTS = Path(__file__).resolve().parents[1] / "graph"  # scripted_roles.py
SCRIPTED = ["--proposer", "scripted_roles:ScriptedProposer", "--critic", "scripted_roles:ScriptedCritic",
            "--diagnostician", "scripted_roles:ScriptedDiagnostician"]
CANDIDATE_ID = re.compile(r"cand-[0-9a-f]{10}")


def tiny_store(path: Path):
    """Two tiny search environments and a tiny held-out one (as tests/e2e)."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.synth import preset, synthesize_into

    store = Store(path)
    for model, dataset, seed in (("m1", "search", 1), ("m2", "search", 2), ("m1", "heldout", 3)):
        synthesize_into(store, model, dataset, preset("synth-1.7b", n_questions=6, n_branches=16, seed=seed))
    return store


def run_args(store, sandbox: str, *extra: str) -> list[str]:
    return ["run", "--store", str(store.path), "--search", "m1/search", "--search", "m2/search", "--heldout",
            "m1/heldout", "--betas", "0.2,0.8", "--seeds", "2", "--rounds", "2", "--population", "2", "--sandbox",
            sandbox, "--baselines", "sc", "--no-live", *extra]


def figures(store) -> dict:
    """What must not depend on where the sandbox tasks ran: every evaluation's points and per-seed outcomes,
    the candidates (their genomes: the offline proposer's docstrings name other candidates, and which of two
    tied ones it calls the best so far follows the order the lanes finished in), the selection and the
    per-generation summary. Candidate ids are random: each is replaced by its (generation, slot, attempt)."""
    from autotts_graph.store import history

    (run,) = history.list_runs(store)
    run = history.get_run(store, run.run_id)
    cands = history.candidates(store, run.run_id)
    slot_of = {c.candidate_id: f"g{c.round}s{c.slot}a{c.attempt}" for c in cands}

    def mask(text: str | None) -> str | None:
        return None if text is None else CANDIDATE_ID.sub(lambda m: slot_of.get(m.group(0), "?"), text)

    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT evaluation_id, candidate_id, split, label, status FROM evaluations").fetchall()
    evaluations = {}
    for eid, cid, split, label, status in rows:
        ev = history.get_evaluation(store, eid)
        assert ev.protocol["executor"] in ("local", "ray")
        points = [(p.env, p.beta, p.accuracy, repr(p.avg_cost), repr(p.std_acc), p.description)
                  for p in ev.points]
        outcomes = [(o.point_index, o.env, o.seed, o.correct, o.tokens, o.answers)
                    for o in history.get_outcomes(store, eid)]
        key = (slot_of.get(cid, ""), split, mask(label))
        assert key not in evaluations, key
        evaluations[key] = (status, points, outcomes)
    gens = [{k: v for k, v in g.items() if k != "wall_s"} for g in (run.report or {}).get("generations", [])]
    return {"evaluations": evaluations, "selected": slot_of.get(run.best_candidate), "generations": gens,
            "candidates": [(slot_of[c.candidate_id], c.status, c.name, c.genome) for c in cands]}


def test_run_on_the_cluster_equals_a_local_run(two_nodes, tmp_path: Path, sandbox: str) -> None:
    """Offline roles with one seed: the same candidates, figures and selected controller on either executor."""
    offline = ["--proposer", "offline", "--critic", "offline", "--diagnostician", "offline", "--seed", "3"]
    runner = CliRunner(env={"COLUMNS": "200", "RAY_ADDRESS": None})
    out = {}
    for executor in ("local", "ray"):
        store = tiny_store(tmp_path / executor / "s.duckdb")
        extra = ["--executor", executor] + (["--ray-address", two_nodes.address] if executor == "ray" else [])
        res = runner.invoke(app, run_args(store, sandbox, *offline, *extra))
        assert res.exit_code == 0, res.output
        assert ("executor: ray, 2 node(s), 2 cores" in res.output) == (executor == "ray"), res.output
        out[executor] = figures(store)
    local, ray = out["local"], out["ray"]
    assert local["selected"] is not None and ray["selected"] == local["selected"]
    assert ray["candidates"] == local["candidates"]
    assert ray["evaluations"] == local["evaluations"]
    assert ray["generations"] == local["generations"]


def test_kill_9_driver_mid_run_then_resume(two_nodes, tmp_path: Path, sandbox: str) -> None:
    """Killed while generation 1's first candidate is screened on the cluster (its second lane still proposing);
    `--resume` goes back to the cluster and finishes with every node run once per candidate."""
    from autotts_graph.store import history

    store = tiny_store(tmp_path / "s.duckdb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(GRAPH_TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # The address from RAY_ADDRESS here (the resume gives --ray-address); slot s proposes after 0.5 + 4 s seconds.
    env.update({"RAY_ADDRESS": two_nodes.address, "SCRIPTED_PROPOSER_DELAY": "0.5", "SCRIPTED_SLOT_DELAY": "4.0"})
    cli = [sys.executable, "-m", "autotts_graph.cli.main"]
    proc = subprocess.Popen(cli + run_args(store, sandbox, *SCRIPTED, "--executor", "ray"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def screening_in_generation_1() -> bool:
        runs = history.list_runs(store)
        return bool(runs) and any(c.round == 1 and c.status == "approved"
                                  for c in history.candidates(store, runs[0].run_id))

    kill_9_at(proc, screening_in_generation_1, 240)
    run_id = history.list_runs(store)[0].run_id
    assert history.get_run(store, run_id).status == "running"
    before = {c.candidate_id: c for c in history.candidates(store, run_id)}
    assert sorted((c.round, c.slot, c.status) for c in before.values()) == [
        (0, 0, "evaluated"), (0, 1, "evaluated"), (1, 0, "approved")]

    env.pop("RAY_ADDRESS")
    done = subprocess.run(cli + ["run", "--resume", run_id, "--store", str(store.path), "--no-live",
                                 "--ray-address", two_nodes.address], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run {run_id}: done" in done.stdout
    assert "executor: ray, 2 node(s)" in done.stderr, done.stderr
    run = history.get_run(store, run_id)
    assert run.config["executor"] == "ray" and run.config["ray_address"] == two_nodes.address
    # Nothing recorded before the kill lost or changed; one candidate per slot and generation, each evaluated
    # once; every node once per candidate (a node killed half-way records no spend: its re-run is its only run).
    assert_nothing_lost_or_redone(store, run_id, before, slots=2)
    with store.connect(read_only=True) as con:
        protocols = [json.loads(p) for (p,) in con.execute("SELECT protocol FROM evaluations").fetchall()]
        baselines = con.execute("SELECT count(*) FROM evaluations WHERE label = 'baseline:sc' AND split = 'search'"
                                ).fetchone()[0]
    assert baselines == 1
    assert {p["executor"] for p in protocols} == {"ray"}, protocols
    assert run.status == "done" and [g["generation"] for g in run.report["generations"]] == [0, 1]
    assert history.find_evaluation(store, run_id=run_id, candidate_id=run.best_candidate,
                                   split="heldout") is not None
