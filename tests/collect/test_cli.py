"""`store collect` through typer: output, idempotence, one-line errors, and resume after a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import typer
from autotts_graph.cli.collect_cmd import collect
from autotts_graph.store.collect.backend import Backend
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import list_environments
from typer.testing import CliRunner

app = typer.Typer()
app.command()(collect)
app.command("noop")(lambda: None)  # two commands keep `collect` a named subcommand, as under `store`
runner = CliRunner(env={"COLUMNS": "200"})


def _flat(output: str) -> str:
    """The output with rich's panel borders and line wrapping removed."""
    return " ".join(output.replace("│", " ").split())


def _args(model_dir: Path, questions: Path, store: Path, *extra: str) -> list[str]:
    return ["collect", "--model", str(model_dir), "--questions", str(questions), "--dataset", "toy",
            "--backend", "hf", "--branches", "3", "--probe-every", "8", "--think-budget", "32",
            "--answer-budget", "8", "--probe-tokens", "6", "--store", str(store), *extra]


def test_cli_collects_then_is_idempotent(tmp_path: Path, tiny_model_dir: Path, questions_file: Path) -> None:
    pytest.importorskip("torch")
    store = tmp_path / "s.duckdb"
    first = runner.invoke(app, _args(tiny_model_dir, questions_file, store, "--env-model", "Tiny-Qwen3"))
    assert first.exit_code == 0, first.output
    assert "collected Tiny-Qwen3/toy: 2 questions x 3 branches; 6 generated, 0 reused" in first.output
    assert "tokens/s" in first.output
    envs = list_environments(Store(store))
    assert [(e.name, e.n_questions, e.n_branches, e.probe_freq, e.origin) for e in envs] == [
        ("Tiny-Qwen3/toy", 2, 3, 8, "collect")]
    again = runner.invoke(app, _args(tiny_model_dir, questions_file, store, "--env-model", "Tiny-Qwen3"))
    assert again.exit_code == 0, again.output
    assert "unchanged Tiny-Qwen3/toy: 2 questions x 3 branches; 0 generated, 6 reused" in again.output


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--backend", "tpu"], 2, "choose vllm, openai or hf"),
    (["--canonicalize", "fuzzy"], 2, "choose none, gold or norm"),
    (["--engine-arg", "novalue"], 2, "expected KEY=VALUE"),
    (["--backend", "openai"], 1, "error: --backend openai needs --base-url"),
    (["--tokenizer", "/no/such/tokenizer"], 1, "error: cannot load tokenizer '/no/such/tokenizer'"),
])
def test_cli_errors_are_one_line(tmp_path: Path, tiny_tokenizer_dir: Path, questions_file: Path,
                                 extra: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, _args(tiny_tokenizer_dir, questions_file, tmp_path / "s.duckdb", *extra))
    assert result.exit_code == code, result.output
    assert message in _flat(result.output)
    assert "Traceback" not in result.output


def test_cli_missing_questions_file(tmp_path: Path) -> None:
    result = runner.invoke(app, _args(tmp_path, tmp_path / "none.jsonl", tmp_path / "s.duckdb"))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith("none.jsonl: no such file"), result.output


KILL_SCRIPT = textwrap.dedent("""
    import torch
    torch.set_num_threads(1)
    import typer
    from autotts_graph.cli.collect_cmd import collect
    app = typer.Typer()
    app.command()(collect)
    app.command("noop")(lambda: None)
    app()
""")


def _stored(store: Path) -> int:
    from autotts_graph.store.collect.collector import ensure_tables

    s = Store(store)
    ensure_tables(s)
    with s.connect(read_only=True) as con:
        return con.execute("SELECT count(*) FROM collect_branches").fetchone()[0]


def test_resume_after_sigkill_repeats_no_generation(tmp_path: Path, tiny_model_dir: Path,
                                                   questions_file: Path, chat_tokenizer, hf_backend) -> None:
    store = tmp_path / "s.duckdb"
    script = tmp_path / "collect.py"
    script.write_text(KILL_SCRIPT)
    args = ["collect", "--model", str(tiny_model_dir), "--questions", str(questions_file), "--dataset", "toy",
            "--backend", "hf", "--branches", "6", "--batch-size", "1", "--probe-every", "50",
            "--probe-tokens", "6", "--think-budget", "300", "--answer-budget", "8", "--store", str(store)]
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists() and _stored(store) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = _stored(store)
    assert 2 <= kept < 12

    class Counting(Backend):
        def __init__(self) -> None:
            self.first_phase = 0

        def sample(self, requests):
            self.first_phase += sum(r.max_tokens == 300 for r in requests)
            return hf_backend.sample(requests)

        def probe(self, requests):
            return hf_backend.probe(requests)

    from autotts_graph.store.collect.collector import CollectOptions, read_questions, run_collection

    counting = Counting()
    spec = CollectSpec(generation=GenerationSpec(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir),
                                                 backend="hf", think_budget=300, answer_budget=8),
                       probe=ProbeSpec(probe_every=50, max_tokens=6))
    options = CollectOptions(dataset="toy", env_model=tiny_model_dir.name, n_branches=6, batch_size=4)
    items = read_questions(questions_file)
    result = run_collection(Store(store), spec, items, options, counting, chat_tokenizer)
    assert counting.first_phase == 12 - kept == result.generated_branches
    assert result.created and _stored(store) == 12
