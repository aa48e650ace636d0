"""The backend interface the collector drives, and the tokenizer wrapper shared by all backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from autotts_graph.store.db import StoreError


class CollectError(StoreError):
    """A user-facing collection problem (bad input, missing extra, unreachable server); one line."""


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


GREEDY = Sampling()


@dataclass
class SampleRequest:
    """Continue ``prompt`` (token ids) for at most ``max_tokens`` tokens with a private seed."""

    prompt: list[int]
    max_tokens: int
    seed: int
    sampling: Sampling


@dataclass
class SampleResult:
    """Generated ids without the stop token; ``stopped`` is True when the model ended by itself."""

    token_ids: list[int]
    stopped: bool


@dataclass
class ProbeRequest:
    """Greedy answers of one branch cut at several points.

    For each ``cut`` (ascending), the model continues ``prefix[:cut] + suffix`` greedily for at most
    ``max_tokens`` tokens. Backends answer cuts in ascending order so each reuses the previous prefix.
    """

    prefix: list[int]
    cuts: list[int]
    suffix: list[int]
    max_tokens: int
    results: list[list[int]] = field(default_factory=list)


class Backend(ABC):
    """A generation engine: batched seeded sampling and greedy probing on token-id prompts."""

    name: str = "backend"

    @abstractmethod
    def sample(self, requests: list[SampleRequest]) -> list[SampleResult]:
        """Results in request order; each request's tokens depend only on its prompt, seed and settings."""

    @abstractmethod
    def probe(self, requests: list[ProbeRequest]) -> list[list[list[int]]]:
        """Per request, per cut: the greedy continuation ids (stop token removed)."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release the engine (GPU memory, connections)."""


class ChatTokenizer:
    """A Hugging Face tokenizer with the few operations the collector needs."""

    def __init__(self, name_or_path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise CollectError("the collector needs transformers: pip install 'autotts-graph[collect]'") \
                from None
        self.name_or_path = name_or_path
        where, kwargs = pretrained_args(name_or_path)
        try:
            self.tok: Any = AutoTokenizer.from_pretrained(where, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any loading failure is reported as one line
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CollectError(f"cannot load tokenizer {name_or_path!r}: {first}") from None
        if not getattr(self.tok, "chat_template", None):
            raise CollectError(f"tokenizer {name_or_path!r} has no chat template")
        eos = self.tok.eos_token_id
        if eos is None:
            raise CollectError(f"tokenizer {name_or_path!r} defines no end-of-sequence token")
        self.stop_ids: set[int] = {int(eos)} | _generation_eos(name_or_path)

    def prompt_ids(self, question: str, instruction: str, enable_thinking: bool) -> list[int]:
        """The chat-templated user turn plus the assistant generation prompt, as token ids."""
        content = f"{question}\n{instruction}" if instruction else question
        text = self.tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                            add_generation_prompt=True, enable_thinking=enable_thinking)
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added BOS/EOS."""
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, special tokens kept (``</think>`` must stay visible)."""
        return self.tok.decode(ids, skip_special_tokens=False)

    def single_token(self, text: str) -> int:
        """The id of a text that must be exactly one token (the end-of-thinking marker)."""
        ids = self.encode(text)
        if len(ids) != 1:
            raise CollectError(f"the tokenizer splits {text!r} into {len(ids)} tokens; it must be one token")
        return ids[0]


def pretrained_args(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """``from_pretrained`` arguments for a model name, a folder, or a GGUF file (transformers reads GGUF files
    through ``gguf_file=``, dequantised; it needs the ``gguf`` and ``accelerate`` packages)."""
    from pathlib import Path

    path = Path(name_or_path)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise CollectError(f"{name_or_path}: no such GGUF file")
        return str(path.parent), {"gguf_file": path.name}
    return name_or_path, {}


def _generation_eos(name_or_path: str) -> set[int]:
    """Extra end-of-sequence ids from the model's generation config (Qwen3 lists two), if it has one."""
    if name_or_path.lower().endswith(".gguf"):
        return set()  # a GGUF file carries its end-of-sequence token in the tokenizer
    try:
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(name_or_path).eos_token_id
    except Exception:  # noqa: BLE001 - no generation config: the tokenizer's EOS is enough
        return set()
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list) else [eos])}


def strip_stop(ids: list[int], stop_ids: set[int]) -> tuple[list[int], bool]:
    """Cut ids at the first stop token; True when one was found."""
    for i, t in enumerate(ids):
        if t in stop_ids:
            return ids[:i], True
    return ids, False


def make_backend(name: str, model: str, tokenizer: ChatTokenizer, *, dtype: str = "auto",
                 engine_args: dict[str, Any] | None = None, base_url: str | None = None,
                 batch_size: int = 8, concurrency: int = 16, retries: int = 5, api_key: str | None = None,
                 device: str | None = None) -> Backend:
    """Build the named backend (heavy imports happen here, not at module import)."""
    if name == "hf":
        from .hf import HFBackend
        return HFBackend(model, tokenizer.stop_ids, dtype=dtype, device=device, batch_size=batch_size,
                         model_kwargs=engine_args or {})
    if name == "openai":
        from .openai_compat import OpenAIBackend
        if not base_url:
            raise CollectError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIBackend(base_url, model, tokenizer, concurrency=concurrency, retries=retries,
                             api_key=api_key, extra_body=engine_args or {})
    if name == "vllm":
        from .vllm import VLLMBackend
        return VLLMBackend(model, tokenizer.name_or_path, tokenizer.stop_ids, dtype=dtype,
                           engine_args=engine_args or {})
    raise CollectError(f"unknown backend {name!r} (vllm, openai or hf)")
