"""The vLLM backend's adapter logic against a stand-in ``vllm`` module (real vLLM needs a GPU).

The stand-in has vLLM's offline API shape (``LLM.generate`` over ``TokensPrompt`` with one
``SamplingParams`` per prompt) and runs the tiny model through the transformers backend, so the
adapter's parameter mapping, stop handling and depth-wave probing are checked end to end. The real
engine is exercised by ``benchmarks/collector_gpu.sh`` on a GPU machine.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
from autotts_graph.store.collect.backend import GREEDY, SampleRequest, Sampling
from autotts_graph.store.collect.collector import CollectOptions, read_questions, run_collection
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import export_records

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, hf_backend):
    calls: list[dict] = []

    class SamplingParams:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update({"seed": None, "top_p": 1.0, "top_k": -1, **kw})

    class LLM:
        def __init__(self, **kw: object) -> None:
            calls.append({"init": kw})

        def generate(self, prompts: list[dict], params: list[SamplingParams], use_tqdm: bool = True) -> list:
            assert use_tqdm is False and len(prompts) == len(params)
            calls.append({"prompts": [p["prompt_token_ids"] for p in prompts], "params": params})
            outs = []
            for prompt, sp in zip(prompts, params, strict=True):
                sampling = GREEDY if sp.temperature == 0 else Sampling(sp.temperature, sp.top_p, sp.top_k)
                r = hf_backend.sample([SampleRequest(prompt["prompt_token_ids"], sp.max_tokens, sp.seed or 0,
                                                     sampling)])[0]
                ids = r.token_ids + (sp.stop_token_ids[:1] if r.stopped else [])  # vLLM keeps the stop id
                outs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids,
                                                                     finish_reason="stop" if r.stopped
                                                                     else "length")]))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda **kw: dict(kw)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    return calls


def test_vllm_adapter_matches_the_transformers_backend(tmp_path: Path, fake_vllm, tiny_model_dir: Path,
                                                       hf_backend, chat_tokenizer, questions_file: Path) -> None:
    from autotts_graph.store.collect.vllm import VLLMBackend

    def spec(backend: str) -> CollectSpec:
        return CollectSpec(generation=GenerationSpec(model=str(tiny_model_dir), tokenizer=str(tiny_model_dir),
                                                     backend=backend, think_budget=40, answer_budget=10),
                           probe=ProbeSpec(probe_every=8, max_tokens=6))

    items = read_questions(questions_file)
    options = CollectOptions(dataset="toy", env_model="tiny", n_branches=3, batch_size=8)
    engine = VLLMBackend(str(tiny_model_dir), str(tiny_model_dir), chat_tokenizer.stop_ids,
                         engine_args={"load_format": "dummy"})
    via_vllm = Store(tmp_path / "v.duckdb")
    run_collection(via_vllm, spec("vllm"), items, options, engine, chat_tokenizer)
    via_hf = Store(tmp_path / "h.duckdb")
    run_collection(via_hf, spec("hf"), items, options, hf_backend, chat_tokenizer)
    assert export_records(via_vllm, "tiny/toy") == export_records(via_hf, "tiny/toy")

    init = fake_vllm[0]["init"]
    assert init["enable_prefix_caching"] is True and init["load_format"] == "dummy"
    sampled = [c for c in fake_vllm[1:] if c["params"][0].temperature > 0]
    first = sampled[0]["params"]
    assert {(p.top_p, p.top_k, p.max_tokens, p.detokenize) for p in first} == {(0.95, 20, 40, False)}
    assert len({p.seed for p in first}) == 6  # one seed per branch
    waves = [c for c in fake_vllm[1:] if c["params"][0].temperature == 0]
    # Depth waves: wave k holds each still-probed branch's prefix cut k+1 times delta, so the
    # prompts of one wave all extend a prompt of the wave before (a prefix-cache hit).
    for before, after in zip(waves, waves[1:], strict=False):
        assert len(after["prompts"]) <= len(before["prompts"])
        assert min(map(len, after["prompts"])) > min(map(len, before["prompts"]))
