"""The collector on a real model: SmolLM2-135M-Instruct (the GGUF weights of .ci/llm-setup.sh, loaded by
transformers with ``gguf_file=``, dequantised) answers short arithmetic word problems on this CPU; its
branches and probes are stored, imported as an environment, and `autotts-graph run` discovers on them. The
whole pipeline, model -> store -> discovery -> report, on real model output, at a bounded size (the full size
is benchmarks/collector_cpu.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from autotts_graph.store import history
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import list_environments

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "store" / "collect" / "questions" / "arithmetic.jsonl"


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    sys.path.append(str(REPO / "tests"))
    from llm_server import LocalModelMissing, gguf_path

    pytest.importorskip("torch")
    try:
        return gguf_path()
    except LocalModelMissing as exc:
        if os.environ.get("AUTOTTS_REQUIRE_LLM"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autotts_graph.cli.main", *args]


def test_a_real_model_is_collected_imported_and_discovered_on(smollm2_gguf, tmp_path):
    questions = tmp_path / "arithmetic2.jsonl"
    questions.write_text("".join(QUESTIONS.read_text().splitlines(keepends=True)[:2]))
    store = Store(tmp_path / "real.duckdb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_"))}
    env["COLUMNS"] = "200"
    collected = subprocess.run(_cli(
        "store", "collect", "--model", str(smollm2_gguf), "--backend", "hf", "--no-thinking", "--env-model",
        "SmolLM2-135M", "--dataset", "arith", "--questions", str(questions), "--branches", "6", "--probe-every",
        "16", "--think-budget", "48", "--answer-budget", "12", "--probe-tokens", "8", "--threads", "1",
        "--batch-size", "6", "--store", str(store.path)), env=env, capture_output=True, text=True, timeout=1500)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert "collected SmolLM2-135M/arith: 2 questions x 6 branches; 12 generated, 0 reused" in collected.stdout
    (e,) = list_environments(store)
    assert (e.name, e.n_questions, e.n_branches, e.probe_freq, e.origin) == ("SmolLM2-135M/arith", 2, 6, 16,
                                                                              "collect")
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT token_ids, think_tokens, forced, probe_cuts, probe_answers, final_answer, "
                           "branch_tokens FROM collect_branches").fetchall()
        spec = json.loads(con.execute("SELECT spec FROM environments").fetchone()[0])
    assert len(rows) == 12 and spec["generation"]["think_end"] == "" and spec["probe"]["probe_every"] == 16
    for ids, think, forced, cuts, answers, final, tokens in rows:
        # Real sampled ids, budgets kept; a probe every 16 tokens inside the reasoning, each with an answer or ERR;
        # a branch that ran out of budget was forced to answer (the forcing text and the answer follow it).
        assert 0 < think <= 48 and tokens == len(ids) and len(cuts) == len(answers) == (think - 1) // 16
        assert all(isinstance(a, str) and a for a in answers) and final
        assert tokens > think if forced else tokens == think
    # Different seeds give different branches (sampling at temperature 0.7), and some answers are numbers.
    assert len({tuple(r[0]) for r in rows}) > 8
    assert any(r[5].strip().lstrip("-").isdigit() for r in rows)
    # A reply that ended without a boxed answer was asked for it at its end: few finals are left as ERR.
    assert sum(r[5] == "ERR" for r in rows) <= len(rows) // 2, [r[5] for r in rows]

    run = subprocess.run(_cli("run", "--search", "SmolLM2-135M/arith", "--rounds", "1", "--population", "2",
                              "--seeds", "4", "--betas", "0,0.5,1", "--baselines", "sc,asc", "--store",
                              str(store.path), "--no-live"), env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (r,) = history.list_runs(store)
    assert r.status == "done" and r.search_envs == ["SmolLM2-135M/arith"]
    report = (store.path.parent / (store.path.name + ".runs") / r.run_id / "report.md").read_text()
    assert "## Discovered controller" in report and "SmolLM2-135M/arith" in report
