"""The run configuration as the one source of `autotts-graph run`'s flags, their help, and the resume rules."""

from __future__ import annotations

import pytest
from autotts_graph.cli.main import app
from autotts_graph.graph.configuration import (
    RoleSettings,
    RunConfig,
    cli_flags,
    config_from_flags,
    given_flags,
    resume_update,
)
from typer.testing import CliRunner


def test_every_flag_comes_from_a_field_with_its_description_and_bounds():
    flags = {n: f for f in cli_flags() for n in f.names}
    res = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    for name in ("--rounds", "--generations", "--max-tokens", "--max-usd", "--wall", "--proposer-tools",
                 "--context-tokens", "--max-output-tokens", "--call-timeout", "--proposer-models", "--critic-model"):
        assert name in flags and name in res.output, name
    assert flags["--rounds"].field == "rounds" and flags["--max-tokens"].field == "max_llm_tokens"
    assert flags["--proposer-tools"].choices == ("auto", "on", "off")
    assert flags["--seeds"].minimum == 1 and flags["--seeds"].maximum == 1000
    for name, field in (("--seeds", RunConfig.model_fields["seeds"]),
                        ("--call-timeout", RoleSettings.model_fields["timeout_s"])):
        assert flags[name].help.startswith(field.description.rstrip(".")) and flags[name].help in res.output


def test_flags_override_the_file_and_a_roles_own_flag_the_shared_one():
    given = given_flags({"rounds": 2, "all_roles__model": "shared", "critic__model": "own",
                         "all_roles__context_tokens": 8192, "proposer__tools": "off", "proposer__models": "a, b",
                         "betas": "0,0.5"})
    cfg = config_from_flags({"rounds": 5, "seeds": 3, "critic": {"kind": "offline"}}, given)
    assert (cfg.rounds, cfg.seeds, cfg.betas) == (2, 3, [0.0, 0.5])
    assert (cfg.proposer.model, cfg.critic.model, cfg.diagnostician.model) == ("shared", "own", "shared")
    assert cfg.critic.kind == "offline" and cfg.proposer.tools == "off" and cfg.proposer.models == ["a", "b"]
    assert {cfg.proposer.context_tokens, cfg.critic.context_tokens} == {8192}


def test_a_bad_value_is_reported_under_its_flag():
    with pytest.raises(ValueError, match=r"^--context-tokens: Input should be greater than or equal to 256"):
        config_from_flags({}, given_flags({"all_roles__context_tokens": 10}))
    with pytest.raises(ValueError, match=r"^--betas: every beta must lie in \[0, 1\]"):
        config_from_flags({}, given_flags({"betas": "0,2"}))


def test_resume_changes_only_what_a_resume_may_change():
    stored = RunConfig(search_envs=["a/b"], rounds=1).model_dump(mode="json")
    update = resume_update(stored, given_flags({"rounds": 4, "max_llm_tokens": 100, "proposer__base_url": "http://x/v1",
                                                "all_roles__call_timeout": None}))
    assert update["rounds"] == 4 and update["max_llm_tokens"] == 100
    assert update["proposer"].base_url == "http://x/v1" and "critic" not in update
    with pytest.raises(ValueError, match="--seeds cannot change on --resume"):
        resume_update(stored, given_flags({"seeds": 7}))
    with pytest.raises(ValueError, match="--search cannot change on --resume"):
        resume_update(stored, given_flags({"search_envs": ["c/d"]}))


def test_cli_resume_with_a_measuring_flag_is_a_one_line_error(graph_store):
    from autotts_graph.graph.nodes.prepare import resolve_config
    from autotts_graph.store.ledger import RunLedger
    from tiny_runs import tiny_config

    cfg = resolve_config(tiny_config(), graph_store)
    RunLedger(graph_store, cfg.run_id).open(config=cfg.model_dump(mode="json"), search_envs=cfg.search_envs,
                                            heldout_envs=cfg.heldout_envs)
    res = CliRunner().invoke(app, ["run", "--resume", cfg.run_id, "--store", str(graph_store.path), "--seeds", "5",
                                   "--no-live"])
    assert res.exit_code == 1 and "error: --seeds cannot change on --resume" in res.output
    assert "Traceback" not in res.output
