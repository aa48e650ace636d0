"""Every route of the discovery graph, driven by scripted roles on tiny environments."""

from __future__ import annotations

from autotts_graph.store import history
from scripted_roles import ScriptedCritic, ScriptedProposer


def test_approve_path_records_everything(run_graph, graph_store):
    state, roles, _ = run_graph(rounds=2, baselines=["sc"])
    assert state.status == "done", state.error
    assert state.round == 2
    assert len(state.evaluated) == 2
    assert state.selected in state.evaluated
    # The best point estimate leads the finalists; the selection took the best lower bound on fresh seeds.
    selection = history.get_run(graph_store, state.config.run_id).report["selection"]
    assert state.best is not None and state.best.candidate_id == selection["point_pick"]
    assert selection["selected"] == state.selected and len(selection["finalists"]) == 2
    assert state.heldout is not None and state.heldout.ok and {p.env for p in state.heldout.curve} == {"m1/heldout"}
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["evaluated", "evaluated"]
    assert all(c.check_result["ok"] and c.critic["approve"] for c in cands)
    run = history.get_run(graph_store, state.config.run_id)
    assert run.status == "done" and run.best_candidate == state.selected
    assert set(history.get_diagnoses(graph_store, state.config.run_id)) == set(state.evaluated)
    spend = history.run_spend(graph_store, state.config.run_id)
    assert {"prepare", "propose", "check", "critique", "evaluate", "diagnose", "record", "select",
            "heldout"} <= set(spend)
    # The second proposal saw the first candidate's curve and the diagnosis.
    second = roles["proposer"].calls[1]
    assert second.history and second.history[0].curve and second.diagnosis is not None
    assert second.baselines and {b.env for b in second.baselines} == {"m1/search", "m2/search"}


def test_check_failures_go_back_with_errors(run_graph, graph_store):
    proposer = ScriptedProposer(["syntax", "nonmonotone"])
    state, _, _ = run_graph(proposer=proposer)
    assert state.status == "done"
    calls = proposer.calls
    assert len(calls) == 3
    assert calls[1].attempt == 1 and any("syntax error" in f for f in calls[1].feedback)
    assert calls[2].attempt == 2 and any("not monotone" in f for f in calls[2].feedback)
    assert calls[2].last_source is not None
    statuses = [c.status for c in history.candidates(graph_store, state.config.run_id)]
    assert statuses == ["check_failed", "check_failed", "evaluated"]


def test_critic_rejection_goes_back_with_reasons(run_graph):
    proposer = ScriptedProposer()
    state, _, _ = run_graph(proposer=proposer, critic=ScriptedCritic(["reject"]))
    assert state.status == "done"
    assert any("too similar" in f for f in proposer.calls[1].feedback)


def test_retries_are_bounded_then_round_ends(run_graph, graph_store):
    proposer = ScriptedProposer(["syntax"] * 10)
    state, _, _ = run_graph(proposer=proposer, rounds=2, max_attempts=2)
    assert len(proposer.calls) == 4  # 2 rounds x 2 attempts
    assert state.status == "no_candidate" and state.selected is None and state.heldout is None
    assert history.get_run(graph_store, state.config.run_id).status == "no_candidate"


def test_crash_goes_to_diagnostician_then_proposer_same_round(run_graph, graph_store):
    proposer = ScriptedProposer(["crash"])
    state, roles, _ = run_graph(proposer=proposer)
    assert state.status == "done"
    assert len(proposer.calls) == 2 and proposer.calls[1].round == 0 and proposer.calls[1].attempt == 1
    assert proposer.calls[1].diagnosis is not None and proposer.calls[1].diagnosis.crashed
    assert any("scripted crash" in f for f in proposer.calls[1].feedback)
    assert roles["diagnostician"].calls[0].error_kind == "runtime"
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["crashed", "evaluated"]


def test_audit_flag_is_a_failure_the_diagnostician_explains_and_never_selected(run_graph, graph_store):
    from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician
    from autotts_graph.graph.agents.roles import DiagnoseInput

    proposer = ScriptedProposer(["cheat"])
    state, roles, _ = run_graph(proposer=proposer)
    assert state.status == "done"
    call = roles["diagnostician"].calls[0]
    assert call.error_kind == "audit" and "data it had not observed" in call.error
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["crashed", "evaluated"]
    assert state.selected == cands[1].candidate_id  # the flagged candidate never competes
    diagnosis = StatsDiagnostician().diagnose(DiagnoseInput(candidate_id="c", source="", curve=[], baselines=[],
                                                            outcomes=[], traces=[], error_kind=call.error_kind,
                                                            error=call.error))
    assert diagnosis.failure_modes[0].kind == "hidden_information"
    assert "no memory across questions or seeds" in diagnosis.failure_modes[0].suggestion


def _answer_key(store) -> frozenset[str]:
    with store.connect(read_only=True) as con:
        return frozenset(r[0] for r in con.execute("SELECT gold_answer FROM questions").fetchall())


def test_an_answer_key_is_flagged_explained_and_never_selected(run_graph, graph_store):
    """The relabelling audit flags a candidate that knows the answers; the diagnostician names it."""
    from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician

    proposer = ScriptedProposer(["memorised"], key=_answer_key(graph_store))
    state, roles, _ = run_graph(proposer=proposer, diagnostician=StatsDiagnostician())
    assert state.status == "done"
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["crashed", "evaluated"]
    assert state.selected == cands[1].candidate_id
    assert "relabelling audit" in proposer.calls[1].feedback[0]
    diagnosis = history.get_diagnoses(graph_store, state.config.run_id)[cands[0].candidate_id]
    assert diagnosis["failure_modes"][0]["kind"] == "known_answers"
    assert "opaque labels" in diagnosis["failure_modes"][0]["suggestion"]


def test_the_strict_audit_before_selection_flags_what_the_lanes_missed(run_graph, graph_store, monkeypatch):
    """With no audit in the lanes (as if a rare cheater slipped through them), the strict audit of the
    candidate about to be selected flags it, the diagnostician explains it, and the next best is selected;
    the held-out evaluation is audited strictly too."""
    import autotts_graph.sandbox.audit as audit
    from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician

    budget = audit.audit_budget
    monkeypatch.setattr(audit, "audit_budget",
                        lambda level, sizes: budget(level, sizes) if level == "strict" else dict.fromkeys(sizes, 0))
    proposer = ScriptedProposer(["memorised", "weak"], key=_answer_key(graph_store))
    state, _, _ = run_graph(proposer=proposer, diagnostician=StatsDiagnostician(), rounds=2)
    assert state.status == "done"
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["flagged", "evaluated"]  # the cheater had the better fitness
    assert state.selected == cands[1].candidate_id
    diagnosis = history.get_diagnoses(graph_store, state.config.run_id)[cands[0].candidate_id]
    assert diagnosis["failure_modes"][0]["kind"] == "known_answers"
    held = history.get_evaluation(graph_store, state.heldout.evaluation_id)
    assert held.protocol["audit"] == "strict" and sum(held.protocol["audited_solves"].values()) > 0


def test_timeout_goes_to_diagnostician(run_graph):
    proposer = ScriptedProposer(["hang"])
    state, roles, _ = run_graph(proposer=proposer, eval_timeout_s=3)
    assert state.status == "done"
    assert roles["diagnostician"].calls[0].error_kind == "timeout"
    assert proposer.calls[1].attempt == 1


def test_wall_budget_stops_before_next_proposal(run_graph):
    proposer = ScriptedProposer()
    state, _, _ = run_graph(proposer=proposer, rounds=5, max_wall_s=0.01)
    assert len(proposer.calls) == 0  # prepare's baselines already used the budget
    assert state.stop_reason and "wall time" in state.stop_reason
    assert state.status == "no_candidate"


def test_identical_source_is_not_evaluated_twice(run_graph, graph_store):
    proposer = ScriptedProposer(["ok", "repeat"])
    state, _, _ = run_graph(proposer=proposer, rounds=2)
    assert state.status == "done"
    assert any("identical to candidate" in f and "already evaluated" in f for f in proposer.calls[2].feedback)
    cands = history.candidates(graph_store, state.config.run_id)
    assert [c.status for c in cands] == ["evaluated", "check_failed", "evaluated"]
    assert cands[0].code_hash == cands[1].code_hash != cands[2].code_hash
    run_id = state.config.run_id
    assert history.count_evaluations(graph_store, run_id=run_id, candidate_id=cands[1].candidate_id) == 0


def test_frontier_score_prefers_cheaper_accuracy():
    from autotts_graph.graph.agents.roles import BaselinePoint, CurvePoint
    from autotts_graph.graph.scoring import frontier_area, search_accuracy

    base = [BaselinePoint(method="sc", label="SC@1", env="e", accuracy=50, avg_cost=1_000),
            BaselinePoint(method="sc", label="SC@64", env="e", accuracy=70, avg_cost=100_000)]
    cheap = [CurvePoint(env="e", beta=0.0, accuracy=60, avg_cost=2_000),
             CurvePoint(env="e", beta=1.0, accuracy=70, avg_cost=50_000)]
    costly = [CurvePoint(env="e", beta=0.0, accuracy=60, avg_cost=40_000),
              CurvePoint(env="e", beta=1.0, accuracy=70, avg_cost=90_000)]
    assert search_accuracy(cheap) == search_accuracy(costly) == 70
    assert frontier_area(cheap, base) > frontier_area(costly, base) > 0


def test_frontier_selection_runs_end_to_end(run_graph):
    state, _, _ = run_graph(rounds=2, selection="frontier", baselines=["sc"])
    assert state.status == "done" and state.selected in state.evaluated
    # "frontier" is the fitness: the mean accuracy margin (points) over the baselines' frontier at equal cost.
    assert state.best is not None and -100 <= state.best.score <= 100


def test_studio_factory_graph_shape():
    import json
    from pathlib import Path

    from autotts_graph.graph.builder import LANE_NODES, NODES, build_lane_graph, make_graph
    from autotts_graph.graph.deps import DepsProvider

    spec = json.loads((Path(__file__).resolve().parents[2] / "langgraph.json").read_text())
    assert spec["graphs"]["discovery"] == "autotts_graph.graph.builder:make_graph"
    g = make_graph({})
    assert g.checkpointer is None
    drawn = g.get_graph()
    assert set(NODES) <= set(drawn.nodes)
    edges = {(e.source, e.target) for e in drawn.edges}
    for edge in [("prepare", "plan"), ("plan", "lane"), ("lane", "record"), ("record", "plan"), ("plan", "select"),
                 ("select", "heldout"), ("heldout", "__end__")]:
        assert edge in edges, edge
    lane = build_lane_graph(DepsProvider()).get_graph()
    assert set(LANE_NODES) <= set(lane.nodes)
    edges = {(e.source, e.target) for e in lane.edges}
    for edge in [("check", "propose"), ("critique", "propose"), ("diagnose", "propose"), ("propose", "__end__"),
                 ("critique", "review"), ("review", "check"), ("critique", "screen"), ("screen", "evaluate"),
                 ("screen", "diagnose"), ("evaluate", "diagnose"), ("diagnose", "__end__")]:
        assert edge in edges, edge
