"""The transformers backend on the tiny model: seeds, probing through the cache, a full collection."""

from __future__ import annotations

from pathlib import Path

import pytest
from autotts_graph.store.collect.backend import GREEDY, ChatTokenizer, ProbeRequest, SampleRequest, Sampling
from autotts_graph.store.collect.collector import CollectOptions, read_questions, run_collection
from autotts_graph.store.collect.extract import ERR, extract_probe_answer
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import export_records, pack_path

pytest.importorskip("torch")
pytest.importorskip("transformers")

SAMPLING = Sampling(0.7, 0.95, 20)


def _prompt(tok: ChatTokenizer) -> list[int]:
    return tok.prompt_ids("What is 3 + 4?", "Please reason step by step.", True)


def test_per_branch_seeds_do_not_depend_on_batching(hf_backend, chat_tokenizer) -> None:
    prompt = _prompt(chat_tokenizer)
    seeds = [11, 12, 13, 14, 15]
    hf_backend.batch_size = 4
    batched = hf_backend.sample([SampleRequest(prompt, 24, s, SAMPLING) for s in seeds])
    hf_backend.batch_size = 1
    alone = hf_backend.sample([SampleRequest(prompt, 24, s, SAMPLING) for s in reversed(seeds)])[::-1]
    hf_backend.batch_size = 4
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert [r.stopped for r in batched] == [r.stopped for r in alone]
    assert len({tuple(r.token_ids) for r in batched}) > 1  # different seeds, different branches
    again = hf_backend.sample([SampleRequest(prompt, 24, 13, SAMPLING)])[0]
    assert again.token_ids == batched[2].token_ids


def test_probing_through_the_cache_equals_decoding_each_prefix_afresh(hf_backend, chat_tokenizer) -> None:
    prompt = _prompt(chat_tokenizer)
    gen = hf_backend.sample([SampleRequest(prompt, 40, 3, Sampling(1.0, 1.0, -1))])[0].token_ids
    prefix = prompt + gen
    suffix = chat_tokenizer.encode("\n</think>\n\nThe final answer is \\boxed{")
    cuts = [len(prompt) + k for k in range(4, len(gen), 9)]
    cached = hf_backend.probe([ProbeRequest(prefix, cuts, suffix, 8)])[0]
    fresh = [hf_backend.sample([SampleRequest(prefix[:c] + suffix, 8, 0, GREEDY)])[0].token_ids for c in cuts]
    assert cached == fresh
    with pytest.raises(ValueError, match="probe cuts"):
        hf_backend.probe([ProbeRequest(prefix, [len(prefix) + 1], suffix, 8)])


def hf_spec(model_dir: Path, **gen: object) -> CollectSpec:
    g = {"model": str(model_dir), "tokenizer": str(model_dir), "backend": "hf", "think_budget": 48,
         "answer_budget": 16, **gen}
    return CollectSpec(generation=GenerationSpec(**g), probe=ProbeSpec(probe_every=8, max_tokens=6))


def test_tiny_model_collection_replays_in_the_evaluator(tmp_path: Path, tiny_model_dir: Path, hf_backend,
                                                        chat_tokenizer, questions_file: Path) -> None:
    from autotts_graph.sandbox.judge import score_in_process
    from autotts_graph.sandbox.runtime.evaluate import load_controller_class

    store = Store(tmp_path / "s.duckdb")
    items = read_questions(questions_file)
    spec = hf_spec(tiny_model_dir)
    options = CollectOptions(dataset="toy", env_model="tiny", n_branches=6, batch_size=4)
    result = run_collection(store, spec, items, options, hf_backend, chat_tokenizer)
    assert result.created and result.generated_tokens > 0 and result.probe_tokens > 0

    records = export_records(store, "tiny/toy")
    assert len(records) == 2 and all(len(r["each_branch"]) == 6 for r in records)
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT token_ids, think_tokens, forced, finished, probe_cuts, probe_texts,"
                           " probe_answers, prompt_tokens, branch_tokens FROM collect_branches").fetchall()
    think_end = chat_tokenizer.single_token("</think>")
    for ids, think, forced, _finished, cuts, texts, answers, prompt_len, tokens in rows:
        assert tokens == len(ids) <= 48 + len(chat_tokenizer.encode(spec.generation.force_text)) + 16
        assert cuts == [prompt_len + 8 * k for k in range(1, (think - 1) // 8 + 1)]
        assert answers == [extract_probe_answer(t) for t in texts]
        if forced:  # the budget ran out while thinking: the forcing text follows the 48 sampled tokens
            assert think == 48 and think_end not in ids[:48]
        elif think_end in ids:
            assert think == ids.index(think_end)
    probes = [a for r in rows for a in r[6]]
    # The model closes some probe braces (an answer is read out). Whether some stay unclosed (ERR) depends on
    # how the few training steps came out under the installed torch and transformers (none did under
    # transformers 5.25); extraction's ERR cases are test_extract_spec's.
    assert any(a != ERR for a in probes)
    assert any(r[2] for r in rows)  # some branch exhausted its thinking budget and was forced

    pack = pack_path(store, "tiny/toy")
    source = (Path(__file__).resolve().parents[2] / "sandbox" / "controllers" / "asc.py").read_text()
    point = score_in_process(load_controller_class(source), pack, {"beta": 0.5}, seeds=[0, 1])
    assert 0.0 <= point["accuracy"] <= 100.0 and point["avg_cost"] > 0
    finals = {b[2] for r in records for b in r["each_branch"]}
    assert {a for row in point["answers"] for a in row} <= finals | {None}
