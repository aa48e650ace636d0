"""Search strategies (evolve, random, greedy) and ablations (--no-diagnosis, --no-critic) on tiny runs: what each
one shows the proposer and what it records; their report lines; ``run --repeat``; the lane graph's edges."""

from __future__ import annotations

from autotts_graph.graph.agents.offline_proposer import HeuristicProposer
from autotts_graph.graph.agents.roles import ProposerInput
from autotts_graph.store import history
from scripted_roles import ScriptedCritic, ScriptedDiagnostician, ScriptedProposer


class RecordingProposer(HeuristicProposer):
    """The real offline proposer, recording every input it was given."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.calls: list[ProposerInput] = []

    def propose(self, inp: ProposerInput):
        self.calls.append(inp)
        return super().propose(inp)


def _offline(**over):
    """A tiny run's configuration with a cheap screen before the full grid (the cascade runs)."""
    from tiny_runs import tiny_config

    return tiny_config(betas=[0.2, 0.5, 0.8], screen_betas=[0.5], screen_seeds=1, **over)


def test_random_proposals_are_independent_and_distinct(run_graph, graph_store):
    proposer = RecordingProposer()
    state, _, _ = run_graph(config=_offline(strategy="random", population=2, rounds=3), proposer=proposer,
                            real_roles=("critic", "diagnostician"))
    assert state.status == "done", state.error
    cands = history.candidates(graph_store, state.config.run_id)
    assert {(c.round, c.slot) for c in cands} == {(g, s) for g in range(3) for s in range(2)}
    assert all(c.parent is None for c in cands)
    # The proposer saw no history, no parent, no inspirations and no diagnosis, in any generation.
    assert len(proposer.calls) >= 6 and {c.generation for c in proposer.calls} == {0, 1, 2}
    for inp in proposer.calls:
        assert inp.independent and not inp.history and inp.parent is None and not inp.inspirations
        assert inp.diagnosis is None and not any(f.startswith("diagnosis: ") for f in inp.feedback)
    # Independent draws, still distinct programs (varied by generation and slot), and the archive records them.
    assert len({c.code_hash for c in cands}) == len(cands)
    assert len({history.code_hash(c.source) for c in cands if c.status == "evaluated"}) >= 4
    assert history.list_archive(graph_store, state.config.run_id) and state.selected is not None


def test_greedy_refines_the_best_so_far_one_candidate_a_generation(run_graph, graph_store):
    proposer = RecordingProposer()
    # population 4 is overridden: greedy proposes one candidate a generation (budget = rounds).
    state, _, _ = run_graph(config=_offline(strategy="greedy", population=4, rounds=4, islands=3),
                            proposer=proposer, real_roles=("critic", "diagnostician"))
    assert state.status == "done", state.error
    run_id = state.config.run_id
    assert [g.candidates for g in state.generations] == [1, 1, 1, 1]
    cands = history.candidates(graph_store, run_id)
    assert {c.slot for c in cands} == {0} and state.screened == 4
    members = history.list_archive(graph_store, run_id)
    assert {m.island for m in members} == {0}
    firsts = [c for c in proposer.calls if c.attempt == 0]
    assert [c.generation for c in firsts] == [0, 1, 2, 3]
    assert firsts[0].parent is None
    for inp in firsts[1:]:
        earlier = [m for m in members if m.generation < inp.generation and m.stage >= 2 and m.fitness is not None]
        best = max(earlier, key=lambda m: (m.fitness, -m.generation))
        assert inp.parent is not None and inp.parent.candidate_id == best.candidate_id
        assert not inp.inspirations
    # Each candidate after the first is a child of the best so far.
    by_id = {c.candidate_id: c for c in cands}
    assert all(by_id[c.candidate_id].parent for c in cands if c.round > 0)


def test_no_critic_records_every_candidate_as_not_reviewed(run_graph, graph_store):
    from autotts_graph.cli.run_report import render_markdown
    from autotts_graph.graph.run_view import build_run_view

    critic = ScriptedCritic(["reject"] * 5)  # would reject everything, were it asked
    state, _, _ = run_graph(critic=critic, rounds=2, use_critic=False)
    assert state.status == "done", state.error
    assert critic.calls == []
    cands = history.candidates(graph_store, state.config.run_id)
    assert cands and all(c.critic["no_critic"] and c.critic["approve"] for c in cands)
    assert all("no critic" in c.critic["reasons"][0] for c in cands)
    md = render_markdown(build_run_view(graph_store, state.config.run_id), None)
    assert "ablations no-critic" in md


def test_no_diagnosis_never_reaches_the_proposer(run_graph, graph_store):
    proposer = ScriptedProposer(["crash"])
    diagnostician = ScriptedDiagnostician()
    state, _, _ = run_graph(proposer=proposer, diagnostician=diagnostician, rounds=3, use_diagnosis=False)
    assert state.status == "done", state.error
    assert len(proposer.calls) == 4  # the crash's retry, then a candidate a generation
    for inp in proposer.calls:
        assert inp.diagnosis is None
        assert not any(f.startswith("diagnosis: ") for f in inp.feedback)
        for entry in [*inp.history, *inp.inspirations, *([inp.parent] if inp.parent else [])]:
            assert entry.diagnosis is None
    assert proposer.calls[1].feedback and any("scripted crash" in f for f in proposer.calls[1].feedback)
    assert proposer.calls[-1].history and proposer.calls[-1].history[-1].curve  # scores are still shown
    # The configured (LLM-capable) diagnostician is never called; the statistics one explains each candidate
    # for the ledger.
    assert diagnostician.calls == []
    diagnoses = history.get_diagnoses(graph_store, state.config.run_id)
    assert len(diagnoses) == 4
    assert all(d["summary"].startswith("(not shown to the proposer: --no-diagnosis)") for d in diagnoses.values())


def test_evolve_shows_the_diagnosis_for_comparison(run_graph):
    proposer = ScriptedProposer(["crash"])
    state, _, _ = run_graph(proposer=proposer, rounds=2)
    assert state.status == "done", state.error
    assert proposer.calls[1].diagnosis is not None
    assert "diagnosis: runtime: remove the failing path" in proposer.calls[1].feedback
    assert proposer.calls[-1].history[-1].diagnosis is not None


def test_report_names_strategy_ablations_and_seed(run_graph, graph_store):
    from autotts_graph.cli.run_report import render_markdown
    from autotts_graph.graph.run_view import build_run_view

    state, _, _ = run_graph(strategy="random", seed=7, cascade=False, use_diagnosis=False)
    assert state.status == "done", state.error
    view = build_run_view(graph_store, state.config.run_id)
    assert view.search_settings.strategy == "random" and view.search_settings.seed == 7
    assert view.search_settings.ablations == ["no-diagnosis", "no-cascade"]
    md = render_markdown(view, None)
    assert "- search: **strategy random, ablations no-diagnosis, no-cascade, discovery seed 7**" in md
    state, _, _ = run_graph()
    md = render_markdown(build_run_view(graph_store, state.config.run_id), None)
    assert "strategy evolve, ablations none, discovery seed 0" in md


def test_lane_graph_draws_every_route():
    from autotts_graph.graph.builder import build_lane_graph
    from autotts_graph.graph.deps import DepsProvider

    drawn = build_lane_graph(DepsProvider()).get_graph()
    edges = {(e.source, e.target) for e in drawn.edges}
    end = "__end__"
    assert edges == {("__start__", "propose"),
                     ("propose", "check"), ("propose", "propose"), ("propose", end),
                     ("check", "critique"), ("check", "propose"), ("check", end),
                     ("critique", "review"), ("critique", "screen"), ("critique", "propose"), ("critique", end),
                     ("review", "screen"), ("review", "check"), ("review", "propose"), ("review", end),
                     ("screen", "evaluate"), ("screen", "diagnose"),
                     ("evaluate", "diagnose"),
                     ("diagnose", "propose"), ("diagnose", end)}
    assert all(e.conditional for e in drawn.edges if e.source != "__start__")


def test_strategy_flags_and_resume_rules():
    from autotts_graph.graph.configuration import GivenFlags, RunConfig, cli_flags, resume_update

    flags = {f.field: f for f in cli_flags() if f.role is None}
    assert flags["strategy"].choices == ("evolve", "random", "greedy") and not flags["strategy"].resumable
    assert flags["use_critic"].names == ("--no-critic",) and flags["use_diagnosis"].names == ("--no-diagnosis",)
    assert not flags["use_critic"].resumable and not flags["use_diagnosis"].resumable
    stored = RunConfig(search_envs=["a"]).model_dump(mode="json")
    for field, value, name in (("strategy", "random", "--strategy"), ("use_critic", False, "--no-critic")):
        try:
            resume_update(stored, GivenFlags(run={field: value}, roles={}, names={field: name}))
        except ValueError as exc:
            assert f"{name} cannot change on --resume" in str(exc)
        else:
            raise AssertionError(f"{name} was accepted on --resume")
    assert RunConfig(strategy="greedy", population=8).lanes_per_generation() == 1
    assert RunConfig(population=8).lanes_per_generation() == 8


def test_llm_proposer_tools_follow_the_strategy():
    from autotts_graph.graph.agents.tools import HISTORY_TOOL, ProposerToolbox, hidden_tools

    def names(strategy: str, use_diagnosis: bool) -> set[str]:
        box = ProposerToolbox(ctx=None, run_id="r", search_envs=["a"], quick_betas=[0.5], quick_seeds=1,
                              hidden=hidden_tools(strategy, use_diagnosis))
        return {s.name for s in box.specs()}

    everything = names("evolve", True)
    assert {HISTORY_TOOL, "get_traces", "query_store", "get_evaluation", "submit_controller"} <= everything
    assert names("greedy", True) == everything
    assert everything - names("random", True) == {HISTORY_TOOL, "get_traces", "query_store", "get_evaluation"}
    assert everything - names("evolve", False) == {HISTORY_TOOL, "get_traces", "query_store"}
    assert "evaluate_controller" in names("random", False) and "submit_controller" in names("random", False)
    # The prompt lists only the tools given, and tells the model to skip the steps that name the others.
    from autotts_graph.graph.agents.prompting import load_prompt

    box = ProposerToolbox(ctx=None, run_id="r", search_envs=["a"], quick_betas=[0.5], quick_seeds=1,
                          hidden=hidden_tools("random", True))
    prompt = load_prompt("proposer", box.specs())
    listed = prompt.split("## How to work")[0]
    assert "`evaluate_controller`" in listed and "`get_traces`" not in listed and HISTORY_TOOL not in listed
    assert "skip any step below that names another" in listed


SCRIPTED = ["--proposer", "scripted_roles:ScriptedProposer", "--critic", "scripted_roles:ScriptedCritic",
            "--diagnostician", "scripted_roles:ScriptedDiagnostician"]


def _cli(store, *extra):
    from autotts_graph.cli.main import app
    from typer.testing import CliRunner

    args = ["run", "--store", str(store.path), "--search", "m1/search", "--search", "m2/search", "--heldout",
            "m1/heldout", "--betas", "0.2,0.8", "--seeds", "2", "--rounds", "1", "--population", "1", "--sandbox",
            "process", "--baselines", "cmc", "--no-live", *SCRIPTED, *extra]
    return CliRunner().invoke(app, args)


def test_cli_repeat_runs_each_seed_then_the_spread(graph_store):
    from autotts_graph.cli.repeat_report import rows_of

    res = _cli(graph_store, "--repeat", "2", "--seed", "3", "--strategy", "random", "--no-critic")
    assert res.exit_code == 0, res.output
    runs = history.list_runs(graph_store)
    assert len(runs) == 2 and len({r.run_id for r in runs}) == 2
    configs = sorted((history.get_run(graph_store, r.run_id).config for r in runs), key=lambda c: c["seed"])
    assert [c["seed"] for c in configs] == [3, 4]
    assert all(c["strategy"] == "random" and c["use_critic"] is False for c in configs)
    assert "2 discovery seeds" in res.output and "mean ± sd" in res.output
    assert res.output.count("report: ") == 2
    rows = rows_of(graph_store, [c["run_id"] for c in configs])
    assert [r.seed for r in rows] == [3, 4] and all(r.status == "done" for r in rows)
    # The held-out figures are the report's: CMC was run on the held-out set too.
    assert all(r.heldout_accuracy is not None and r.dominated_by_cmc is not None for r in rows)
    assert all(r.dominated_by_frontier is not None and r.betas == 2 for r in rows)


def test_cli_repeat_with_resume_is_a_one_line_error(graph_store):
    res = _cli(graph_store, "--repeat", "2", "--resume", "run-x")
    assert res.exit_code == 1
    assert res.output.strip() == ("error: --repeat starts new runs and cannot be combined with --resume: resume each "
                                  "run by its own id")
    assert history.list_runs(graph_store) == []


def test_repeat_table_mean_and_sd():
    from autotts_graph.cli.repeat_report import SeedRow, mean_sd, table

    rows = [SeedRow(run_id="a", seed=0, strategy="evolve", status="done", search_fitness=0.1, dominated_by_cmc=2),
            SeedRow(run_id="b", seed=1, strategy="evolve", status="done", search_fitness=0.3, dominated_by_cmc=4)]
    mean, sd, n = mean_sd([r.search_fitness for r in rows])
    assert n == 2 and abs(mean - 0.2) < 1e-12 and abs(sd - 0.1414213562) < 1e-9
    columns, cells = table(rows)
    assert cells[-1][0] == "mean ± sd"
    assert cells[-1][columns.index("search fitness")] == "+0.200 ± 0.141"
    assert cells[-1][columns.index("β dominated by CMC (bootstrap)")] == "3.00 ± 1.41"
    assert cells[-1][columns.index("β dominating CMC (bootstrap)")] == "–"


def test_a_paused_lane_edited_in_place_goes_on_to_its_evaluation(graph_store):
    """Studio's stepping, in process: a lane paused before its evaluation, its state edited (update_state drops a
    Command's goto; the route kept in the lane's state must carry the lane on), then resumed."""
    from autotts_graph.graph.builder import build_graph
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.runner import make_serde
    from autotts_graph.graph.state import DiscoveryState
    from langgraph.checkpoint.memory import InMemorySaver
    from tiny_runs import tiny_config

    roles = {"proposer": ScriptedProposer(), "critic": ScriptedCritic(), "diagnostician": ScriptedDiagnostician()}
    provider = DepsProvider(store_path=graph_store.path, roles=roles)
    graph = build_graph(provider, checkpointer=InMemorySaver(serde=make_serde()))
    thread = {"configurable": {"thread_id": "edit", "lane_interrupt_before": ["evaluate"]}}
    try:
        graph.invoke(DiscoveryState(config=tiny_config()), thread)
        paused = graph.get_state(thread, subgraphs=True)
        assert paused.next == ("lane",)
        lane = paused.tasks[0].state
        assert lane.next == ("evaluate",) and lane.values["route"] == "evaluate"
        cand = lane.values["candidate"]
        graph.update_state(lane.config, {"candidate": cand.model_copy(update={"name": "edited-in-place"})})
        graph.invoke(None, thread)
        final = graph.get_state(thread).values
    finally:
        provider.close()
    assert final["status"] == "done", final.get("error")
    assert final["best"].name == "edited-in-place" and final["heldout"].ok
