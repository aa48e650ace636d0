"""Runner (SQLite checkpoints, human review, retry after a clean stop) and the run/report CLI."""

from __future__ import annotations

from pathlib import Path

from autotts_graph.cli.main import app
from autotts_graph.graph.configuration import RoleSettings
from autotts_graph.graph.deps import DepsProvider
from autotts_graph.graph.nodes.prepare import resolve_config
from autotts_graph.graph.runner import checkpoint_path, load_state, resume_run, start_run
from autotts_graph.store import history
from scripted_roles import ScriptedCritic, ScriptedDiagnostician, ScriptedProposer, controller
from typer.testing import CliRunner

SCRIPTED = ["--proposer", "scripted_roles:ScriptedProposer", "--critic", "scripted_roles:ScriptedCritic",
            "--diagnostician", "scripted_roles:ScriptedDiagnostician"]


def _provider(store, **roles):
    defaults = {"proposer": ScriptedProposer(), "critic": ScriptedCritic(), "diagnostician": ScriptedDiagnostician()}
    return DepsProvider(store_path=store.path, roles={**defaults, **roles})


def test_review_reject_edit_approve(graph_store):
    from tiny_runs import tiny_config

    cfg = resolve_config(tiny_config(review=True), graph_store)
    proposer = ScriptedProposer()
    decisions = [{"action": "reject", "reason": "too timid"},
                 {"action": "edit", "source": controller(33), "reason": "wider"},
                 {"action": "approve"}]
    seen = []

    def reviewer(payload):
        seen.append(payload)
        return decisions.pop(0)

    provider = _provider(graph_store, proposer=proposer)
    state = start_run(cfg, provider, reviewer=reviewer)
    provider.close()
    assert state.status == "done"
    assert len(seen) == 3 and seen[2]["source"] == controller(33)
    assert any("reviewer: too timid" in f for f in proposer.calls[1].feedback)
    cands = history.candidates(graph_store, cfg.run_id)
    assert [(c.status, c.origin) for c in cands] == [("rejected", "scripted-proposer"),
                                                          ("rejected", "scripted-proposer"), ("evaluated", "human")]
    assert cands[2].parent == cands[1].candidate_id
    assert checkpoint_path(graph_store, cfg.run_id).exists()


class _CriticThatLosesItsServer(ScriptedCritic):
    """A critic whose endpoint went away after the run started (the real-server test kills a real one)."""

    def review(self, inp):
        from autotts_graph.graph.agents.client import AgentError

        raise AgentError("critic: cannot reach http://127.0.0.1:9/v1 (ConnectError)")


def test_clean_stop_then_resume_with_a_working_critic(graph_store):
    from tiny_runs import tiny_config

    cfg = resolve_config(tiny_config(), graph_store)
    first = _provider(graph_store, critic=_CriticThatLosesItsServer())
    state = start_run(cfg, first)
    first.close()
    assert state.status == "failed" and "critic: cannot reach" in state.error
    assert history.get_run(graph_store, cfg.run_id).status == "failed"
    (cand,) = history.candidates(graph_store, cfg.run_id)
    # Resume with the critic fixed: the same candidate goes on to be evaluated, nothing is proposed again.
    proposer = ScriptedProposer()
    second = _provider(graph_store, proposer=proposer)
    state = resume_run(cfg.run_id, second, config_update={"critic": RoleSettings(kind="offline")})
    second.close()
    assert state.status == "done", state.error
    assert proposer.calls == []
    assert state.selected == cand.candidate_id
    assert load_state(cfg.run_id, graph_store).status == "done"


def _run(args, env=None):
    return CliRunner().invoke(app, args, env=env)


def _base(store: Path) -> list[str]:
    return ["run", "--store", str(store), "--betas", "0.2,0.8", "--seeds", "2", "--rounds", "1", "--sandbox",
            "process", "--baselines", "sc", "--no-live", *SCRIPTED]


def test_cli_bad_inputs_are_one_line_errors(graph_store):
    cases = [
        (["--search", "m1/search", "--search", "nope/x"], "unknown environment 'nope/x'"),
        (["--search", "m1/search", "--heldout", "m1/search"], "listed both as search and held-out"),
        (["--heldout", "m1/heldout"], "the search set is empty"),
        (["--search", "m1/search", "--critic", "llm", "--api-key-env", "NO_SUCH_KEY_VAR"],
         "NO_SUCH_KEY_VAR is not set"),
        (["--search", "m1/search", "--proposer", "no_such_module:X"], "cannot import it"),
    ]
    for extra, message in cases:
        res = _run(_base(graph_store.path) + extra)
        assert res.exit_code == 1, res.output
        assert message in res.output, res.output
        assert "Traceback" not in res.output
    assert history.list_runs(graph_store) == []  # nothing started


def test_cli_run_with_config_file_then_report(graph_store, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('search_envs = ["m1/search", "m2/search"]\nheldout_envs = ["m1/heldout"]\nrounds = 5\n'
                    'population = 2\nseeds = 2\nbetas = [0.2, 0.8]\nsandbox = "process"\nbaselines = ["sc"]\n'
                    'proposer = "scripted_roles:ScriptedProposer"\n[critic]\nkind = "scripted_roles:ScriptedCritic"\n'
                    '[diagnostician]\nkind = "scripted_roles:ScriptedDiagnostician"\n')
    # --rounds on the command line overrides the file's 5.
    res = _run(["run", "--config", str(toml), "--store", str(graph_store.path), "--rounds", "1", "--no-live"])
    assert res.exit_code == 0, res.output
    (run,) = history.list_runs(graph_store)
    assert f"run {run.run_id}: done" in res.output
    assert "spend: $0.00 and" in res.output
    assert history.get_run(graph_store, run.run_id).config["rounds"] == 1
    out = tmp_path / "rep"
    res = _run(["report", run.run_id, "--store", str(graph_store.path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    assert "## Discovered controller" in md and "Held-out environments" in md and "Candidate lineage" in md
    assert "| SC@1 |" in md
    # The archive: one generation of the population of 2, both screened, and the cells they fill.
    archive = md[md.index("## Archive"):md.index("## Candidate lineage")]
    assert "2 candidates screened" in archive and "| 0 | 2 |" in archive
    elite = history.get_run(graph_store, run.run_id).best_candidate
    assert f"| {elite} |" in archive
    assert (out / "accuracy_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = _run(["report", "--list", "--store", str(graph_store.path)])
    assert run.run_id in res.output
    res = _run(["report", "run-nope", "--store", str(graph_store.path)])
    assert res.exit_code == 1 and "unknown run 'run-nope'" in res.output


def test_cli_main_does_not_import_langgraph():
    import subprocess
    import sys

    code = ("import sys, autotts_graph.cli.main; "
            "print(sorted(m for m in sys.modules if m.startswith(('langgraph', 'langchain'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_without_flags_runs_longer_on_real_data_than_on_the_synthetic_default(tmp_path):
    """`autotts-graph run` with no environment flags: 12 generations on imported (real) data, the short first
    run (3 generations) on the synthetic environments; a flag the user gives still wins."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.synth import preset, synthesize
    from autotts_graph.store.trajectories import import_records
    from tiny_runs import synth_store

    real = Store(tmp_path / "real.duckdb")
    for dataset, split, seed in (("aime24", "search", 1), ("aime25", "heldout", 3)):
        records = synthesize(preset("synth-1.7b", n_questions=6, n_branches=16, seed=seed))
        import_records(real, "m1", dataset, records, origin="import", split=split)
    synthetic = synth_store(tmp_path / "synth.duckdb")
    quick = ["--betas", "0.5", "--seeds", "2", "--population", "1", "--max-evaluations", "1", "--sandbox",
             "process", "--baselines", "sc", "--no-live", *SCRIPTED]
    rounds = {}
    for name, store, extra in (("real", real, []), ("synthetic", synthetic, []), ("given", real, ["--rounds", "2"])):
        before = {r.run_id for r in history.list_runs(store)}
        res = CliRunner().invoke(app, ["run", "--store", str(store.path), *quick, *extra])
        assert res.exit_code == 0, res.output
        (run,) = [r for r in history.list_runs(store) if r.run_id not in before]
        rounds[name] = run.config["rounds"]
    assert rounds == {"real": 12, "synthetic": 3, "given": 2}
