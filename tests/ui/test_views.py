"""What each page of the run browser shows, read from a store filled by a real offline run."""

from __future__ import annotations

import difflib
import json
import urllib.error
import urllib.request

import duckdb
import pytest
from autotts_graph.cli.main import app
from autotts_graph.graph.run_view import build_candidate_view, build_run_view, crossover_mate, edge_origin
from autotts_graph.store import history
from autotts_graph.store.ledger import RunLedger
from autotts_graph.tools.traces import MAX_STEPS_PER_TRACE
from autotts_graph.ui.source import BrowserSource, StoreUnusable, check_store
from typer.testing import CliRunner
from ui_server import Server


def test_run_prints_the_ui_command_next_to_the_report(finished_run):
    store, _, output = finished_run
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("report: "))
    assert f"browse: autotts-graph ui --store {store.path}" in lines[at:at + 3]


def test_the_runs_page_counts_what_the_store_holds(finished_run):
    store, run_id, _ = finished_run
    source = BrowserSource(store.path)
    try:
        (row,) = source.runs()
    finally:
        source.close()
    members = [m for m in history.list_archive(store, run_id) if m.migrated_from is None]
    cands = history.candidates(store, run_id)
    assert (row.run_id, row.status, row.search_envs, row.heldout_envs) == (run_id, "done", ["m1/search", "m2/search"],
                                                                            ["m1/heldout"])
    assert row.totals.generations == 3 and row.totals.candidates == len(cands) == 9
    assert row.totals.screened == len(members) and row.totals.fully_evaluated == sum(m.stage >= 2 for m in members)
    assert row.totals.best_fitness == max(m.fitness for m in members if m.stage >= 2)
    spend = history.run_spend(store, run_id)
    assert row.spend.calls == sum(s.calls for s in spend.values()) and row.wall_s > 0


def test_the_run_view_holds_generations_archive_lineage_and_curves(finished_run):
    store, run_id, _ = finished_run
    view = build_run_view(store, run_id)
    members = [m for m in view.archive if m.migrated_from is None]
    assert [g.generation for g in view.generations] == [0, 1, 2]
    assert sum(g.screened for g in view.generations) == len(members) == view.screened
    so_far = [g.best_so_far for g in view.generations]
    assert so_far == sorted(so_far) and so_far[-1] == view.best_fitness
    for cell in view.cells:  # each cell's elite is its best fully evaluated member
        full = [m for m in view.archive if (m.island, m.niche) == (cell.island, cell.niche) and m.stage >= 2]
        assert (cell.elite.fitness if cell.elite else None) == max((m.fitness for m in full), default=None)
    # The winner's curve is its search evaluation, point for point; every baseline has its own curve.
    best = view.best
    ev = history.get_evaluation(store, history.find_evaluation(store, run_id=run_id, candidate_id=best.candidate_id,
                                                               split="search"))
    assert [(p.env, p.beta, p.accuracy) for p in view.search.winner.points] == \
        [(p.env, p.beta, p.accuracy) for p in ev.points]
    assert [b.method for b in view.search.baselines] == ["sc", "cmc"]
    assert view.search.versus_cmc and {v.env for v in view.search.versus_cmc} == {"m1/search", "m2/search", "mean"}
    # The lineage: every child's edge names its parent and how it was made from it.
    children = [c for c in view.candidates if c.parent]
    assert children
    for c in children:
        into = [e for e in view.lineage(c.candidate_id) if e.child == c.candidate_id]
        assert into[0].parent == c.parent and into[0].origin == edge_origin(c) != "seed" and not into[0].mate
        mates = [e.parent for e in into[1:]]
        assert all(e.mate and e.origin == "crossover" for e in into[1:])
        assert mates == ([m] if (m := crossover_mate(c)) and m != c.parent else [])
        parents = {c.parent, *mates}
        assert set(view.ancestors(c.candidate_id)) >= parents | {c.candidate_id}
    origins = {edge_origin(c) for c in children}
    assert origins <= {"mutation", "crossover", "diagnosis-driven edit"} and len(origins) >= 2


def test_the_candidate_view_has_source_diff_gate_evaluations_diagnosis_traces_audit_and_spend(finished_run):
    store, run_id, _ = finished_run
    view = build_run_view(store, run_id)
    child = next(c for c in view.candidates if c.parent and c.stage == 2)
    cv = build_candidate_view(store, view, child.candidate_id)
    parent = view.candidate(child.parent)
    expected = list(difflib.unified_diff(parent.source.splitlines(), child.source.splitlines(), lineterm=""))
    assert cv.diff[2:] == expected[2:] and cv.added > 0  # same hunks (file names are the titles)
    assert cv.gate.promoted and cv.gate.floor is not None and cv.gate.screen_fitness == cv.placement.screen_fitness
    finalist = child.candidate_id in {f.candidate_id for f in view.selection.finalists}
    assert [e.stage for e in cv.evaluations] == ["screen", "full"] + ["strict audit"] * finalist
    full = cv.evaluations[1]
    assert full.evaluation_id == child.evaluation_id and {p.env for p in full.points} == {"m1/search", "m2/search"}
    assert cv.diagnosis is not None and cv.diagnosis.summary == view.diagnoses[child.candidate_id].summary
    assert cv.traces and all(len(t.steps) <= MAX_STEPS_PER_TRACE for t in cv.traces)
    assert all(t.env in ("m1/search", "m2/search") for t in cv.traces)  # never held-out traces
    assert all(set(a.audited_solves) == {"counterfactual", "relabelling"} and not a.flagged for a in cv.audits)
    assert cv.spend == history.candidate_spend(store, run_id)[child.candidate_id] and cv.spend.calls >= 5
    stopped = next((c for c in view.candidates if c.stage == 1), None)
    if stopped is not None:  # a screen below its gate: stopped, with the figures that stopped it
        gate = build_candidate_view(store, view, stopped.candidate_id).gate
        assert not gate.promoted and (gate.twin or gate.screen_fitness < gate.floor)


def test_held_out_figures_appear_only_after_selection(store_copy):
    store, run_id = store_copy
    done = build_run_view(store, run_id)
    assert done.heldout is not None and done.heldout.winner.split == "heldout"
    assert done.heldout.winner.envs == ["m1/heldout"] and all(b.split == "heldout" for b in done.heldout.baselines)
    winner = build_candidate_view(store, done, done.run.best_candidate)
    assert [e.stage for e in winner.evaluations][-1] == "heldout" and winner.selected
    RunLedger(store, run_id).resume()  # as if selection had not happened yet
    running = build_run_view(store, run_id)
    assert running.heldout is None
    assert all(e.split == "search" for e in build_candidate_view(store, running, done.run.best_candidate).evaluations)
    assert all("heldout" not in p.env for c in running.search_curves.values() for p in c.points)


def test_the_app_never_writes_the_store(finished_run):
    store, run_id, _ = finished_run
    before = (store.path.stat().st_mtime_ns, store.path.stat().st_size)
    srv = Server(store.path)
    try:
        view = build_run_view(store, run_id)
        paths = ["/", f"/runs/{run_id}", f"/runs/{run_id}/compare?c={view.run.best_candidate}&b=cmc",
                 *[f"/runs/{run_id}/candidates/{c.candidate_id}" for c in view.candidates]]
        for path in paths:
            with urllib.request.urlopen(srv.url + path, timeout=60) as res:
                assert res.status == 200 and b"</main>" in res.read()
    finally:
        srv.stop()
    assert (store.path.stat().st_mtime_ns, store.path.stat().st_size) == before
    assert not store.path.with_name(store.path.name + ".wal").exists()


def test_unknown_runs_and_candidates_are_404_pages_with_a_link_back(server, finished_run):
    _, run_id, _ = finished_run
    for path, back, text in (("/runs/run-nope", 'href="/"', "no run &#39;run-nope&#39;"),
                             (f"/runs/{run_id}/candidates/cand-nope", f'href="/runs/{run_id}"', "no candidate"),
                             ("/no/such/page", 'href="/"', "no such page")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + path, timeout=30)
        body = err.value.read().decode()
        assert err.value.code == 404 and back in body and text in body, body


def test_a_store_that_is_missing_or_not_ours_is_one_line_at_start(tmp_path):
    runner = CliRunner()
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_text("hello")
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    cases = [(tmp_path / "missing.duckdb", "no store at"), (not_duckdb, "is not an autotts-graph store"),
             (foreign, "is a DuckDB file but not an autotts-graph store")]
    for path, message in cases:
        with pytest.raises(StoreUnusable, match=message):
            check_store(path)
        res = runner.invoke(app, ["ui", "--store", str(path), "--port", "0"])
        assert res.exit_code == 1 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "missing.duckdb").exists()  # nothing was created


def test_listening_beyond_loopback_needs_the_flag_and_is_announced(finished_run):
    res = CliRunner().invoke(app, ["ui", "--store", str(finished_run[0].path), "--host", "0.0.0.0"])
    assert res.exit_code == 1 and "--allow-remote" in res.output and "Traceback" not in res.output
    srv = Server(finished_run[0].path, "--host", "0.0.0.0", "--allow-remote")
    try:
        srv.proc.terminate()
        _, err = srv.proc.communicate(timeout=10)
    finally:
        srv.stop()
    assert "warning: listening on 0.0.0.0, reachable from other machines" in err


def test_the_runs_json_follows_a_run_while_it_writes(store_copy):
    """A run in progress: the app keeps answering while the run's ledger writes, and shows the new rows."""
    store, run_id = store_copy
    ledger = RunLedger(store, run_id)
    ledger.resume()
    srv = Server(store.path)
    try:
        def runs() -> dict:
            with urllib.request.urlopen(srv.url + "/api/runs", timeout=60) as res:
                return json.loads(res.read())["runs"][0]
        first = runs()
        assert first["status"] == "running" and first["candidates"] == 9
        cand = history.candidates(store, run_id)[-1]
        for i in range(3):  # the run writes: three more candidates in a new generation
            ledger.add_candidate(cand.model_copy(update={"candidate_id": f"cand-live{i}", "round": 3, "slot": i}))
        import time

        deadline = time.monotonic() + 30
        while runs()["candidates"] != 12:
            assert time.monotonic() < deadline, "the new candidates never showed"
            time.sleep(0.5)
        assert runs()["generations"] == 4
    finally:
        srv.stop()


def test_the_run_page_states_strategy_ablations_and_seed(server, finished_run):
    _, run_id, _ = finished_run
    body = urllib.request.urlopen(f"{server.url}/runs/{run_id}", timeout=30).read().decode()
    assert "<dt>search</dt><dd>strategy evolve, ablations none, discovery seed 1</dd>" in body
