"""Fixtures of the collector tests: a tiny Qwen3 model and a locally trained tokenizer.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a built-in corpus, the model a
randomly initialised 2-layer Qwen3 trained for a few dozen steps on format-only chats (so it closes
its ``\\boxed{}`` and its thinking some of the time), both written to a session temp folder.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    {"question": "What is 3 + 4?", "answer": "7"},
    {"question": "Compute x^2 + y^2 when x + y = 10 and xy = 21.", "answer": "58", "id": "q-58"},
]
TRAIN_STEPS = 60


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tokenizer with a Qwen-like chat template (needs transformers, not torch)."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from autotts_graph.store.collect.tiny import write_tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-tokenizer")
    write_tiny_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Qwen3ForCausalLM (2 layers, hidden 64) with its tokenizer and chat template."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)  # two threads were ~8x slower for a model this small
    from autotts_graph.store.collect.tiny import write_tiny_model, write_tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-qwen3")
    tok = write_tiny_tokenizer(directory)
    write_tiny_model(directory, tok, train_steps=TRAIN_STEPS)
    return directory


@pytest.fixture(scope="session")
def chat_tokenizer(tiny_model_dir: Path):
    from autotts_graph.store.collect.backend import ChatTokenizer

    return ChatTokenizer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def hf_backend(tiny_model_dir: Path, chat_tokenizer):
    from autotts_graph.store.collect.hf import HFBackend

    return HFBackend(str(tiny_model_dir), chat_tokenizer.stop_ids, device="cpu", batch_size=4)


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir: Path, chat_tokenizer):
    """The OpenAI-compatible test server on a free loopback port, serving the tiny model as 'tiny'."""
    from autotts_graph.store.collect.hf import HFBackend

    spec = importlib.util.spec_from_file_location("collect_tiny_server", HERE / "tiny_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    backend = HFBackend(str(tiny_model_dir), chat_tokenizer.stop_ids, device="cpu", batch_size=1)
    with module.TinyServer(backend, "tiny", chat_tokenizer.decode) as server:
        yield server


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path
