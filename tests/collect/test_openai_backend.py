"""The OpenAI-compatible backend against a real local HTTP server serving the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from autotts_graph.store.collect.backend import CollectError, SampleRequest, Sampling
from autotts_graph.store.collect.collector import CollectOptions, read_questions, run_collection
from autotts_graph.store.collect.openai_compat import OpenAIBackend
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import export_records

pytest.importorskip("torch")
pytest.importorskip("transformers")


def _spec(model: str, tokenizer: Path, backend: str) -> CollectSpec:
    return CollectSpec(generation=GenerationSpec(model=model, tokenizer=str(tokenizer), backend=backend,
                                                 think_budget=40, answer_budget=12),
                       probe=ProbeSpec(probe_every=8, max_tokens=6))


def test_server_collection_equals_the_in_process_one(tmp_path: Path, tiny_server, tiny_model_dir: Path,
                                                     hf_backend, chat_tokenizer,
                                                     questions_file: Path) -> None:
    items = read_questions(questions_file)
    options = CollectOptions(dataset="toy", env_model="tiny", n_branches=4, batch_size=4)
    client = OpenAIBackend(tiny_server.url, "tiny", chat_tokenizer, concurrency=3, backoff_s=0.01)
    try:
        over_http = Store(tmp_path / "http.duckdb")
        result = run_collection(over_http, _spec("tiny", tiny_model_dir, "openai"), items, options, client,
                                chat_tokenizer)
    finally:
        client.close()
    assert result.created and result.generated_branches == 8
    sent = tiny_server.requests
    assert all(isinstance(r["prompt"], list) and r["return_token_ids"] for r in sent)
    assert {r["top_k"] for r in sent if r["temperature"] > 0} == {20}
    assert {r["temperature"] for r in sent} == {0.0, 0.7}  # probes greedy, branches sampled

    in_process = Store(tmp_path / "hf.duckdb")
    run_collection(in_process, _spec(str(tiny_model_dir), tiny_model_dir, "hf"), items, options, hf_backend,
                   chat_tokenizer)
    assert export_records(over_http, "tiny/toy") == export_records(in_process, "tiny/toy")


def test_transient_failures_are_retried_and_persistent_ones_reported(tiny_server, chat_tokenizer) -> None:
    prompt = chat_tokenizer.prompt_ids("What is 3 + 4?", "", True)
    request = SampleRequest(prompt, 5, 1, Sampling(0.7, 0.95, 20))
    # The base URL without /v1 works too.
    client = OpenAIBackend(tiny_server.url.removesuffix("/v1"), "tiny", chat_tokenizer, retries=3,
                           backoff_s=0.01)
    try:
        expected = client.sample([request])[0]
        tiny_server.fail_next = 2
        before = client.requests_sent
        assert client.sample([request])[0] == expected
        assert client.requests_sent - before == 3
        tiny_server.fail_next = 10
        with pytest.raises(CollectError, match=r"failed after 4 attempts: HTTP 503"):
            client.sample([request])
        tiny_server.fail_next = 0
    finally:
        client.close()
    wrong = OpenAIBackend(tiny_server.url, "no-such-model", chat_tokenizer, retries=3, backoff_s=0.01)
    try:
        with pytest.raises(CollectError, match="refused the request: HTTP 404.*does not exist"):
            wrong.sample([request])
        assert wrong.requests_sent == 1  # a client error is not retried
    finally:
        wrong.close()


def test_unreachable_server_is_one_line(chat_tokenizer) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "tiny", chat_tokenizer, retries=1, backoff_s=0.01)
    try:
        with pytest.raises(CollectError, match="failed after 2 attempts: ConnectError"):
            client.sample([SampleRequest([1, 2, 3], 2, 0, Sampling(0.7))])
    finally:
        client.close()
