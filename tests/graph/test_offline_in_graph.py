"""The offline roles wired into the real graph: later rounds build on the history, not from scratch."""

from autotts_graph.graph.agents.offline_critic import RuleCritic
from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician
from autotts_graph.graph.agents.offline_proposer import HeuristicProposer
from autotts_graph.store import history


def test_offline_proposer_builds_on_recorded_candidates(run_graph, graph_store):
    from tiny_runs import tiny_config

    state, _, _ = run_graph(config=tiny_config(rounds=3, baselines=["asc"]), proposer=HeuristicProposer(seed=0),
                            critic=RuleCritic(), diagnostician=StatsDiagnostician())
    assert state.status == "done"
    cands = [c for c in history.candidates(graph_store, state.config.run_id) if c.evaluation_id]
    assert len(cands) >= 3
    assert all(c.genome for c in cands)  # the genome travels through the store back to the proposer
    later = [c for c in cands if c.round > 0]
    assert later and all("no history" not in (c.rationale or "") for c in later)
    known = {c.candidate_id for c in cands}
    assert any(c.parent in known for c in later)
