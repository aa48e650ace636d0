"""Frozen, hashed descriptions of how an environment is collected (generation and probing settings).

Every field of ``GenerationSpec`` and ``ProbeSpec`` can change the tokens or answers of a branch, so
all of them go into the spec hash that keys the partial results: a resumed collection only reuses
branches made exactly the same way. Settings that cannot change a branch (batch size, concurrency,
number of branches, canonicalisation of answers at build time) stay outside the hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["vllm", "openai", "hf"]
Canonicalize = Literal["none", "gold", "norm"]

# Qwen3's own suggestion for ending an over-long thinking phase (its model card, "thinking budget").
DEFAULT_FORCE_TEXT = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking "
    "directly now.\n</think>\n\n"
)
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_PROBE_SUFFIX = "\n</think>\n\nThe final answer is \\boxed{"
# A model without a thinking phase (``think_end`` empty, e.g. SmolLM2): the whole reply is its reasoning; probes
# and the forced ending ask for the answer directly.
PLAIN_FORCE_TEXT = "\n\nI have to give the final answer now.\nThe final answer is \\boxed{"
PLAIN_PROBE_SUFFIX = "\n\nThe final answer is \\boxed{"
EXTRACTOR_VERSION = "first-unmatched-brace/v1"


class GenerationSpec(BaseModel):
    """How the full branches are sampled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="model name or path, as given to the backend")
    tokenizer: str = Field(description="tokenizer name or path (chat template and token ids)")
    backend: Backend
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(20, ge=-1, description="-1 or 0: no top-k truncation")
    think_budget: int = Field(40000, gt=0, description="tokens sampled before the thinking is forced to end")
    answer_budget: int = Field(2048, gt=0, description="tokens sampled at most for the answer")
    seed: int = Field(0, description="base of the per-branch seeds")
    instruction: str = DEFAULT_INSTRUCTION
    enable_thinking: bool = True
    force_text: str = DEFAULT_FORCE_TEXT
    think_end: str = Field("</think>", description="the single token that ends the thinking; empty for a model "
                                                   "without a thinking phase")
    dtype: str = "auto"
    engine_args: dict[str, Any] = Field(default_factory=dict,
                                        description="extra engine/model arguments (they can change numerics)")


class ProbeSpec(BaseModel):
    """How the saved branches are probed for their current answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_every: int = Field(500, gt=0, description="probe interval in tokens (the env's probe_freq)")
    suffix: str = DEFAULT_PROBE_SUFFIX
    max_tokens: int = Field(20, gt=0, description="greedy tokens decoded per probe")
    extractor: str = EXTRACTOR_VERSION


class CollectSpec(BaseModel):
    """Generation + probing: what makes a branch, hashed into ``spec_hash``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: GenerationSpec
    probe: ProbeSpec

    @property
    def spec_hash(self) -> str:
        """Short hex digest of the canonical JSON of both specs."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def branch_seed(base_seed: int, question_id: str, branch_index: int, phase: int = 0) -> int:
    """The sampling seed of one branch (phase 1 = the answer after a forced or cut thinking).

    Derived by hashing, so it does not depend on batching, order or which branches already exist.
    """
    digest = hashlib.sha256(f"{base_seed}:{question_id}:{branch_index}:{phase}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
