"""Generations: lanes fan out with Send and fan back in to the archive; the cascade; the archive's rules."""

from __future__ import annotations

from autotts_graph.graph import archive
from autotts_graph.graph.configuration import RunConfig
from autotts_graph.store import history
from autotts_graph.store.rows import ArchiveRow
from scripted_roles import ScriptedProposer


def test_generation_fans_out_and_back_in(run_graph, graph_store):
    proposer = ScriptedProposer()
    state, _, _ = run_graph(proposer=proposer, population=3, rounds=2, islands=2, migrate_every=1)
    assert state.status == "done", state.error
    run_id = state.config.run_id
    cands = history.candidates(graph_store, run_id)
    # Three lanes per generation, one candidate each, every one fully evaluated (tiny grid: no cascade).
    assert [(c.round, c.slot) for c in cands] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [c.status for c in cands] == ["evaluated"] * 6 and all(c.stage == 2 for c in cands)
    assert len(state.evaluated) == 6 and state.screened == 6 and state.round == 2
    assert [g.candidates for g in state.generations] == [3, 3]
    # The fan-in ran once per generation; each lane's nodes ran once per candidate.
    spend = history.run_spend(graph_store, run_id)
    assert spend["record"].calls == 2 and spend["plan"].calls == 3  # the third plan stops
    assert spend["propose"].calls == spend["evaluate"].calls == 6
    assert state.spend["propose"].calls == 6  # the lanes' spend reached the run's ledger
    per_candidate = history.candidate_spend(graph_store, run_id)
    assert set(per_candidate) == {c.candidate_id for c in cands}
    assert {v.calls for v in per_candidate.values()} == {6}  # propose, check, critique, screen, evaluate, diagnose
    # Every candidate of a generation was proposed from the same history (earlier generations only).
    calls = sorted(proposer.calls, key=lambda c: (c.generation, c.slot))
    assert [(c.generation, c.slot, c.island) for c in calls] == [(0, 0, 0), (0, 1, 1), (0, 2, 0), (1, 0, 0),
                                                                  (1, 1, 1), (1, 2, 0)]
    assert all(not c.history and c.parent is None for c in calls[:3])
    gen0 = {c.candidate_id for c in cands[:3]}
    for c in calls[3:]:
        assert {h.candidate_id for h in c.history} == gen0
        assert all(h.stage == 2 and h.fitness is not None and h.niche for h in c.history)
        assert c.parent is not None and c.parent.candidate_id in gen0 and c.parent.curve
        assert c.inspirations and c.parent.candidate_id not in {i.candidate_id for i in c.inspirations}
    # The archive holds every candidate on its island; migration copied each island's best to the next.
    rows = history.list_archive(graph_store, run_id)
    native = [r for r in rows if r.migrated_from is None]
    assert sorted(r.candidate_id for r in native) == sorted(c.candidate_id for c in cands)
    assert {(r.slot, r.island) for r in native} == {(0, 0), (1, 1), (2, 0)}
    assert any(r.migrated_from is not None for r in rows)
    assert state.archive_members == 6 and state.best is not None and state.selected == state.best.candidate_id
    assert history.get_run(graph_store, run_id).report["generations"][1]["generation"] == 1


def _easy_env(store, name: str, seed: int) -> str:
    """An environment where most branches end on the gold answer: a majority vote is right, one probe is not."""
    import random

    from autotts_graph.store.trajectories import import_records

    rng = random.Random(seed)
    records = []
    for q in range(8):
        gold = str(100 + q)
        branches = []
        for b in range(16):
            final = gold if rng.random() < 0.7 else str(200 + b % 3)
            n = rng.randint(3, 6)
            probes = ["ERR"] + [final] * (n - 1)  # the first probe never has the answer
            branches.append([probes, n * 400, final])
        records.append({"question": f"easy question {q}", "gold_answer": gold, "probe_freq": 400,
                        "each_branch": branches, "final_answers_trace": [b[2] for b in branches]})
    model, dataset = name.split("/")
    import_records(store, model, dataset, records, split="search")
    return name


def test_cascade_screens_first_and_skips_stage_two_for_a_weak_candidate(run_graph, graph_store):
    envs = [_easy_env(graph_store, "easy1/search", 1), _easy_env(graph_store, "easy2/search", 2)]
    proposer = ScriptedProposer(["ok", "weak"])
    state, _, _ = run_graph(proposer=proposer, rounds=2, search_envs=envs, betas=[0.2, 0.5, 0.8], seeds=3,
                            screen_seeds=2, screen_betas=[0.5], screen_margin=5.0, baselines=["sc"])
    assert state.status == "done", state.error
    run_id = state.config.run_id
    first, weak = history.candidates(graph_store, run_id)
    assert weak.name.startswith("weak")
    # The first candidate: screened (nothing to compare with yet), then fully evaluated: two evaluations.
    screen_id = history.find_evaluation(graph_store, run_id=run_id, candidate_id=first.candidate_id,
                                        split="search", label_prefix="screen ")
    full_id = history.find_evaluation(graph_store, run_id=run_id, candidate_id=first.candidate_id,
                                      split="search", label_prefix="candidate ")
    assert screen_id and full_id and screen_id != full_id
    assert first.stage == 2 and first.screen_evaluation_id == screen_id and first.evaluation_id == full_id
    screen, full = history.get_evaluation(graph_store, screen_id), history.get_evaluation(graph_store, full_id)
    assert screen.protocol["seeds"] == 2 and {p.beta for p in screen.points} == {0.5}
    assert full.protocol["seeds"] == 3 and {p.beta for p in full.points} == {0.2, 0.5, 0.8}
    # The weak one trails the best screen: screened only, never fully evaluated, never selected.
    assert weak.status == "screened" and weak.stage == 1
    assert history.count_evaluations(graph_store, run_id=run_id, candidate_id=weak.candidate_id) == 1
    assert state.evaluated == [first.candidate_id] and state.selected == first.candidate_id
    assert state.screened == 2 and [g.promoted for g in state.generations] == [1, 0]
    rows = {r.candidate_id: r for r in history.list_archive(graph_store, run_id)}
    assert rows[weak.candidate_id].stage == 1 and rows[weak.candidate_id].fitness is None
    assert rows[weak.candidate_id].screen_fitness < rows[first.candidate_id].screen_fitness
    # The weak screen was still diagnosed (from its screen), for the proposers that come after.
    assert weak.candidate_id in history.get_diagnoses(graph_store, run_id)


def test_max_evaluations_bounds_the_candidates_screened(run_graph, graph_store):
    state, _, _ = run_graph(population=2, rounds=5, max_evaluations=3)
    assert state.status == "done", state.error
    assert state.screened == 3 and [g.candidates for g in state.generations] == [2, 1]
    assert "3 candidates screened" in state.stop_reason


def test_failures_in_one_lane_leave_the_others_alone(run_graph, graph_store):
    proposer = ScriptedProposer(scripts={1: ["syntax", "crash"]})
    state, _, _ = run_graph(proposer=proposer, population=2, max_attempts=2)
    assert state.status == "done", state.error
    cands = history.candidates(graph_store, state.config.run_id)
    assert [(c.slot, c.attempt, c.status) for c in cands] == [(0, 0, "evaluated"), (1, 0, "check_failed"),
                                                                       (1, 1, "crashed")]
    slot1 = [c for c in proposer.calls if c.slot == 1]
    assert slot1[1].attempt == 1 and any("syntax error" in f for f in slot1[1].feedback)
    assert state.evaluated == [cands[0].candidate_id]
    assert state.generations[0].failed == 1
    assert {r.candidate_id for r in history.list_archive(graph_store, state.config.run_id)} == \
        {cands[0].candidate_id}  # a crashed candidate never enters the archive


# --------------------------------------------------------------------------- the archive's rules

def _row(cid, *, island=0, gen=0, slot=0, band=14, fam="a", stage=2, fit=50.0, screen=None, tokens=None):
    return ArchiveRow(run_id="r", candidate_id=cid, island=island, generation=gen, slot=slot,
                      niche=archive.niche_of(band, fam), cost_band=band, family=fam, stage=stage,
                      fitness=fit if stage >= 2 else None, screen_fitness=fit if screen is None else screen,
                      mean_tokens=tokens or 2.0 ** band, search_accuracy=fit, code_hash=f"h{cid}",
                      evaluation_id=f"ev{cid}", screen_evaluation_id=f"sc{cid}")


def test_archive_insert_niches_and_elites(graph_store):
    from autotts_graph.graph.agents.roles import CurvePoint

    curve = [CurvePoint(env=e, beta=b, accuracy=50, avg_cost=c) for e in ("x", "y")
             for b, c in ((0.0, 10_000), (1.0, 30_000))]
    row = archive.member_row("r", candidate_id="c1", island=1, generation=0, slot=1, genome=None, screen_curve=curve,
                             stage=1, fitness=None, screen_fitness=48.0, search_accuracy=50.0, code_hash="h",
                             evaluation_id="e", screen_evaluation_id="e")
    assert row.mean_tokens == 20_000 and row.cost_band == 14 and row.family == "llm"
    assert row.niche == "c14|llm"
    history.record_archive(graph_store, [row, row.model_copy(update={"screen_fitness": 49.0})])  # same key: replaced
    (stored,) = history.list_archive(graph_store, "r")
    assert stored.screen_fitness == 49.0 and stored.island == 1

    arch = archive.Archive([_row("a", fit=60), _row("b", fit=70), _row("c", band=15, fit=55),
                            _row("d", fam="b", fit=40, island=1, slot=1), _row("e", stage=1, fit=90)])
    assert [m.candidate_id for m in arch.elites()] == ["b", "c", "d"]  # one per cell, stage 2 only, best first
    assert [m.candidate_id for m in arch.elites(island=1)] == ["d"]
    assert len(arch.cells()) == 3 and arch.best().candidate_id == "b"
    # The gate: within the margin of the niche's best screen (the run's best for an empty niche), and
    # within three margins of the run's best.
    assert arch.gate_reference(archive.niche_of(14, "a"), 1.0)[0] == 69
    assert arch.gate_reference(archive.niche_of(20, "z"), 1.0)[0] == 69
    assert arch.gate_reference(archive.niche_of(15, "a"), 1.0)[0] == 67  # its best (55) trails the run's by 15
    assert arch.gate_reference(archive.niche_of(15, "a"), 10.0)[0] == 45
    assert archive.Archive([_row("e", stage=1)]).gate_reference("c14|a", 1.0)[0] is None
    # Lanes compare with earlier generations only: a sibling's result never changes the gate.
    later = archive.Archive([_row("a", fit=60), _row("late", gen=3, fit=95)])
    assert later.before(3).gate_reference(archive.niche_of(14, "a"), 1.0)[0] == 59
    assert later.gate_reference(archive.niche_of(14, "a"), 1.0)[0] == 94


def test_parent_choice_is_by_rank_reproducible_and_explores():
    rows = [_row(f"m{i}", band=10 + i, fit=100 - i, gen=i) for i in range(6)]
    arch = archive.Archive(rows)
    cfg = RunConfig(population=4, islands=1, seed=7, explore_rate=0.0)
    picks = [arch.choose_parent(cfg, g, s).candidate_id for g in range(50) for s in range(4)]
    assert picks == [arch.choose_parent(cfg, g, s).candidate_id for g in range(50) for s in range(4)]
    counts = {m: picks.count(m) for m in sorted(set(picks))}
    assert counts["m0"] > counts.get("m1", 0) > counts.get("m5", 0)  # rank-based
    other = [arch.choose_parent(cfg.model_copy(update={"seed": 8}), g, s).candidate_id for g in range(50)
             for s in range(4)]
    assert other != picks
    explore = cfg.model_copy(update={"explore_rate": 1.0})
    uniform = [arch.choose_parent(explore, g, s).candidate_id for g in range(50) for s in range(4)]
    assert min(uniform.count(f"m{i}") for i in range(6)) > 15
    assert archive.Archive([]).choose_parent(cfg, 0, 0) is None


def test_parents_come_from_the_slots_island_and_migration_moves_the_best():
    arch = archive.Archive([_row("a", island=0, fit=50), _row("b", island=1, slot=1, fit=80),
                            _row("c", island=1, slot=3, band=16, fit=60)])
    cfg = RunConfig(population=4, islands=2, explore_rate=0.0, migrate_every=2)
    assert {arch.choose_parent(cfg, g, 0).candidate_id for g in range(20)} == {"a"}
    assert {arch.choose_parent(cfg, g, 1).candidate_id for g in range(20)} <= {"b", "c"}
    assert arch.migrants(cfg, 0) == []  # not due yet
    moves = {(m.candidate_id, dest) for m, dest in arch.migrants(cfg, 1)}
    assert moves == {("a", 1), ("b", 0)}


def test_inspirations_are_the_best_and_the_most_different():
    arch = archive.Archive([_row("p", fit=60), _row("best", band=13, fit=90), _row("near", band=15, fit=80),
                            _row("far", band=20, fam="other", fit=30, island=1, slot=1),
                            _row("mid", band=16, fit=40)])
    parent = next(m for m in arch.members if m.candidate_id == "p")
    cfg = RunConfig(inspirations=2)
    assert [m.candidate_id for m in arch.inspirations(cfg, parent)] == ["best", "far"]
    assert [m.candidate_id for m in arch.inspirations(cfg, parent, k=4)] == ["best", "near", "far", "mid"]
    assert arch.inspirations(cfg.model_copy(update={"inspirations": 0}), parent) == []


def test_a_seeded_population_run_is_reproducible(run_graph, graph_store):
    """Same seed, same programs in the same slots: nothing a proposal sees depends on the lanes' timing.
    (The offline roles as a run builds them: one set of role objects per slot.)"""
    from tiny_runs import tiny_config

    runs = []
    for _ in range(2):
        state, _, _ = run_graph(config=tiny_config(population=3, rounds=2, seed=5, betas=[0.2, 0.5, 0.8],
                                                   screen_betas=[0.5], screen_seeds=1),
                                real_roles=("proposer", "critic", "diagnostician"))
        assert state.status == "done", state.error
        cands = history.candidates(graph_store, state.config.run_id)
        parents = {c.candidate_id: (c.round, c.slot, c.attempt) for c in cands}
        # Programs are compared by genome (their text names candidate ids, which are random).
        runs.append(([(c.round, c.slot, c.attempt, c.genome, c.status, c.stage,
                       c.search_accuracy, parents.get(c.parent)) for c in cands],
                     [(r.generation, r.slot, r.island, r.niche, r.migrated_from)
                      for r in history.list_archive(graph_store, state.config.run_id)],
                     state.best.score))
    assert runs[0] == runs[1]
