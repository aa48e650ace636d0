"""The graph writes its run through the ledger: the configuration resolved once and recorded once, and the
run's wall time (not the sum of its parallel lanes' seconds) in the store and the report."""

from __future__ import annotations

import pytest
from autotts_graph.cli.run_report import render_markdown
from autotts_graph.graph.deps import DepsProvider
from autotts_graph.graph.nodes import prepare
from autotts_graph.graph.run_view import build_run_view
from autotts_graph.graph.runner import start_run
from autotts_graph.store import history
from autotts_graph.store.db import StoreError
from autotts_graph.store.ledger import RunLedger, RunStatus
from scripted_roles import ScriptedCritic, ScriptedDiagnostician, ScriptedProposer


@pytest.fixture
def counted(monkeypatch):
    """Counts of resolve_config calls made by the graph and of runs opened in the ledger."""
    calls = {"resolve": 0, "open": 0}
    resolve, open_run = prepare.resolve_config, RunLedger.open

    def counting_resolve(*args, **kwargs):
        calls["resolve"] += 1
        return resolve(*args, **kwargs)

    def counting_open(self, **kwargs):
        calls["open"] += 1
        return open_run(self, **kwargs)

    monkeypatch.setattr(prepare, "resolve_config", counting_resolve)
    monkeypatch.setattr(RunLedger, "open", counting_open)
    return calls


def test_a_started_run_is_resolved_and_recorded_once_with_its_wall_time(graph_store, counted):
    from tiny_runs import tiny_config

    cfg = prepare.resolve_config(tiny_config(population=2), graph_store)  # what the CLI does first
    assert counted == {"resolve": 1, "open": 0} and history.list_runs(graph_store) == []
    provider = DepsProvider(store_path=graph_store.path, roles={
        "proposer": ScriptedProposer(), "critic": ScriptedCritic(), "diagnostician": ScriptedDiagnostician()})
    state = start_run(cfg, provider)
    provider.close()
    assert state.status == "done", state.error
    assert counted == {"resolve": 1, "open": 1}  # the prepare node found the run recorded
    run = history.get_run(graph_store, cfg.run_id)
    assert run.status == RunStatus.DONE and run.config["population"] == 2
    spend = history.run_spend(graph_store, cfg.run_id)
    assert spend["prepare"].calls == 1 and spend["propose"].calls == 2
    # Two lanes ran side by side: their seconds add up in the spend, not in the run's wall time.
    assert run.wall_s == pytest.approx(state.wall_s)
    assert run.wall_s < sum(s.seconds for s in spend.values())
    view = build_run_view(graph_store, cfg.run_id)
    assert view.wall_s == run.wall_s
    md = render_markdown(view, None)
    assert f"and {run.wall_s / 60:.1f} minutes" in md


def test_a_bare_configuration_is_resolved_and_recorded_by_the_graph_itself(run_graph, graph_store, counted):
    state, _, _ = run_graph()  # as LangGraph Studio starts it: no run id, nothing recorded
    assert state.status == "done", state.error
    assert counted == {"resolve": 1, "open": 1}
    assert history.get_run(graph_store, state.config.run_id).status == "done"


def test_an_unresolved_configuration_is_refused_by_the_runner(graph_store):
    from tiny_runs import tiny_config

    with pytest.raises(StoreError, match="not resolved yet"):
        start_run(tiny_config(), DepsProvider(store_path=graph_store.path))
    assert history.list_runs(graph_store) == []
