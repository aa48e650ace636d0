"""Tiny offline Qwen3-style models and tokenizers: tests and GPU checks without any download.

``write_tiny_tokenizer`` trains a byte-level BPE locally with ``tokenizers`` and gives it a Qwen-like
chat template (thinking mode); ``write_tiny_model`` saves a randomly initialised ``Qwen3ForCausalLM``
(or, with ``weights=False``, only its ``config.json``, for vLLM's dummy weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# The parts of Qwen3's template that matter for token ids: turns, generation prompt, thinking switch.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

_CORPUS = [
    "Find the number of positive integers n such that n^2 + 3n + 2 is divisible by 7.",
    "Let x and y be real numbers with x + y = 10 and xy = 21. Compute x^2 + y^2.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "The final answer is \\boxed{42}. So the answer is \\frac{1}{2} or \\sqrt{6}.",
    "Wait, let me check again: 3 + 4 = 7, and 7 * 6 = 42. Therefore the sum is 204.",
    "Consider the triangle ABC with sides 13, 14, 15; its area is 84 and its inradius is 4.",
    "Considering the limited time by the user, I have to give the solution based on the thinking "
    "directly now.",
]

# Qwen3-0.6B's shape (its published config.json), for GPU checks with dummy weights.
QWEN3_0_6B: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
}
TINY: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096, "tie_word_embeddings": True,
}


def write_tiny_tokenizer(directory: str | Path, vocab_size: int = 1000) -> Any:
    """Train a byte-level BPE on a built-in corpus and save it as a HF fast tokenizer; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [f"{line} {i}" for i in range(200) for line in _CORPUS]
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:])
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(directory))
    return tok


def _format_texts(tokenizer: Any, n: int, seed: int) -> list[str]:
    """Chats in the collector's format: thinking of random length, then a boxed answer."""
    import random

    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        a, b = rng.randrange(50), rng.randrange(50)
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"What is {a} + {b}? Please reason step by step, and put your final "
                                         "answer within \\boxed{}."}],
            tokenize=False, add_generation_prompt=True, enable_thinking=True)
        thinking = " ".join(rng.choice(_CORPUS) for _ in range(rng.randrange(1, 4)))
        answer = f"The final answer is \\boxed{{{a + b}}}."
        texts.append(f"{prompt}<think>\n{thinking}\n</think>\n\n{answer}<|im_end|>")
    return texts


def train_briefly(model: Any, tokenizer: Any, steps: int, seed: int = 0) -> None:
    """A few optimizer steps on format-only chats, so probes and answers close their ``\\boxed{}``.

    A purely random model never emits ``}`` or ``</think>``; a few dozen steps teach it the shape of an
    answer (not arithmetic), which exercises every path of the collector on real model outputs.
    """
    import torch

    torch.manual_seed(seed)
    batch = tokenizer(_format_texts(tokenizer, 64, seed), return_tensors="pt", padding=True,
                      add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        rows = torch.arange(16) + (step * 16) % 64
        out = model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows],
                    labels=labels[rows])
        optim.zero_grad()
        out.loss.backward()
        optim.step()
    model.eval()


def write_tiny_model(directory: str | Path, tokenizer: Any, shape: dict[str, Any] | None = None,
                     seed: int = 0, weights: bool = True, train_steps: int = 0) -> None:
    """Save a random Qwen3 causal LM (or only its config) sized by ``shape`` next to the tokenizer.

    ``train_steps`` > 0 trains it briefly on format-only chats (see ``train_briefly``).
    """
    dims = dict(shape or TINY)
    dims.setdefault("vocab_size", len(tokenizer))
    if not weights:
        # Written by hand, in the published Qwen3 layout, so any transformers/vLLM version reads it.
        config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu",
                  "attention_bias": False, "attention_dropout": 0.0, "initializer_range": 0.02,
                  "rope_scaling": None, "sliding_window": None, "use_sliding_window": False,
                  "max_window_layers": dims["num_hidden_layers"], "use_cache": True,
                  "torch_dtype": "bfloat16", "bos_token_id": tokenizer.eos_token_id,
                  "eos_token_id": tokenizer.eos_token_id, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, **dims}
        Path(directory, "config.json").write_text(json.dumps(config, indent=2))
        return
    from transformers import Qwen3Config

    config = Qwen3Config(**dims, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None)
    import torch
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    if train_steps:
        train_briefly(model, tokenizer, train_steps, seed)
    model.save_pretrained(str(directory))
