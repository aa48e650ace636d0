"""The collector on the two-node cluster (tiny Qwen3 on CPU, one engine per node) equals a local collection."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

QUESTIONS = [
    {"question": "What is 3 + 4?", "answer": "7"},
    {"question": "Compute x^2 + y^2 when x + y = 10 and xy = 21.", "answer": "58", "id": "q-58"},
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    from autotts_graph.store.collect.tiny import write_tiny_model, write_tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-qwen3")
    write_tiny_model(directory, write_tiny_tokenizer(directory), train_steps=40)
    return directory


def _setup(model: Path):
    from autotts_graph.store.collect.collector import CollectOptions, QuestionItem
    from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec

    spec = CollectSpec(generation=GenerationSpec(model=str(model), tokenizer=str(model), backend="hf",
                                                 think_budget=32, answer_budget=8, temperature=0.7, top_p=0.95,
                                                 top_k=20),
                       probe=ProbeSpec(probe_every=8, max_tokens=6))
    options = CollectOptions(dataset="toy", env_model="Tiny-Qwen3", n_branches=3, batch_size=2)
    return spec, options, [QuestionItem.model_validate(q) for q in QUESTIONS]


def _branches(store) -> list[tuple]:
    with store.connect(read_only=True) as con:
        return con.execute("SELECT question_index, branch_index, seed, prompt_tokens, token_ids, think_tokens, "
                           "forced, finished, probe_cuts, probe_texts, probe_answers, final_answer, branch_tokens "
                           "FROM collect_branches ORDER BY question_index, branch_index").fetchall()


def test_collection_on_the_cluster_equals_a_local_one(two_nodes, tmp_path, tiny_model) -> None:
    import torch
    from autotts_graph.store.collect.backend import ChatTokenizer
    from autotts_graph.store.collect.collector import run_collection
    from autotts_graph.store.collect.hf import HFBackend
    from autotts_graph.store.collect.ray_collect import EngineSpec, RayCollector
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import export_records

    torch.set_num_threads(1)
    spec, options, items = _setup(tiny_model)
    tok = ChatTokenizer(str(tiny_model))
    local_store = Store(tmp_path / "local.duckdb")
    engine = HFBackend(str(tiny_model), tok.stop_ids, device="cpu", batch_size=options.batch_size)
    local = run_collection(local_store, spec, items, options, engine, tok)

    ray_store = Store(tmp_path / "ray.duckdb")
    runner = RayCollector(EngineSpec(backend="hf", model=str(tiny_model), tokenizer=str(tiny_model),
                                     batch_size=options.batch_size, threads=1), spec, items, options.dataset,
                          address=two_nodes.address, workers=2)
    events = []
    try:
        on_ray = run_collection(ray_store, spec, items, options, None, None, progress=events.append, runner=runner)
        nodes = {runner.ray.get(a.where.remote())[0] for a in runner.actors}
    finally:
        runner.close()
    assert len(nodes) == 2, "one engine per node"
    assert _branches(ray_store) == _branches(local_store)
    assert export_records(ray_store, on_ray.env) == export_records(local_store, local.env)
    assert (on_ray.generated_branches, on_ray.generated_tokens, on_ray.probe_tokens) == (
        local.generated_branches, local.generated_tokens, local.probe_tokens)
    assert events[-1].done == events[-1].total == 6

    # Resumable as locally: a rerun finds every branch stored and starts no engine.
    again = RayCollector(EngineSpec(backend="hf", model=str(tiny_model), tokenizer=str(tiny_model)), spec, items,
                         options.dataset, address=two_nodes.address, workers=2)
    try:
        rerun = run_collection(ray_store, spec, items, options, None, None, runner=again)
    finally:
        again.close()
    assert rerun.generated_branches == 0 and again.engines_started == 0
