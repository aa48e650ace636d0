"""Hugging Face transformers backend (CPU or GPU): a hand-written decode loop with a KV cache.

``model.generate`` takes one random generator for the whole batch, so a branch's tokens would depend
on its batch neighbours; this loop draws each row from its own ``torch.Generator`` instead. Rows of
one batch share their prompt (branches of one question), so no padding is ever needed.
"""

from __future__ import annotations

import inspect
from typing import Any

from .backend import Backend, CollectError, ProbeRequest, SampleRequest, SampleResult, Sampling, strip_stop


class HFBackend(Backend):
    """Sampling and probing with a transformers causal LM."""

    name = "hf"

    def __init__(self, model: str, stop_ids: set[int], *, dtype: str = "auto", device: str | None = None,
                 batch_size: int = 8, model_kwargs: dict[str, Any] | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError:
            raise CollectError("--backend hf needs torch and transformers: "
                               "pip install 'autotts-graph[collect]'") from None
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        import transformers

        kwargs: dict[str, Any] = dict(model_kwargs or {})
        if dtype != "auto":
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise CollectError(f"unknown dtype {dtype!r} (auto, bfloat16, float16, float32)")
            # transformers 4.56 renamed ``torch_dtype`` to ``dtype``.
            major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
            kwargs["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = getattr(torch, dtype)
        from .backend import pretrained_args

        where, extra = pretrained_args(model)
        if extra:
            for needed in ("gguf", "accelerate"):
                try:
                    __import__(needed)
                except ImportError:
                    raise CollectError(f"loading {model} needs the {needed} package: pip install "
                                       "'autotts-graph[collect]'") from None
        try:
            self.model = AutoModelForCausalLM.from_pretrained(where, **extra, **kwargs).to(self.device).eval()
        except Exception as exc:  # noqa: BLE001 - any loading failure is one user-facing line
            raise CollectError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
        self.stop_ids = stop_ids
        self.batch_size = max(1, batch_size)
        # transformers renamed ``past_key_values`` to ``cache`` (5.x); accept both.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # -- model steps -------------------------------------------------------------------------------
    def _new_cache(self) -> Any:
        from transformers import DynamicCache
        return DynamicCache()

    def _forward(self, ids: Any, cache: Any) -> Any:
        """Logits of the last position after feeding ``ids`` (batch x new tokens) into ``cache``."""
        with self.torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
        return out.logits[:, -1, :].float()

    def _pick(self, logits: Any, sampling: Sampling, generators: list[Any]) -> list[int]:
        torch = self.torch
        if sampling.greedy:
            return logits.argmax(dim=-1).tolist()
        scores = logits / sampling.temperature
        if sampling.top_k > 0 and sampling.top_k < scores.shape[-1]:
            kth = torch.topk(scores, sampling.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if sampling.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
            cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            drop = (cum - sorted_scores.softmax(dim=-1)) >= sampling.top_p
            sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
        probs = scores.softmax(dim=-1)
        return [int(torch.multinomial(probs[i], 1, generator=g).item()) for i, g in enumerate(generators)]

    def _decode_rows(self, prompt: list[int], seeds: list[int], max_tokens: int,
                     sampling: Sampling) -> list[SampleResult]:
        torch = self.torch
        generators = []
        for s in seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(s)
            generators.append(g)
        cache = self._new_cache()
        ids = torch.tensor([prompt] * len(seeds), device=self.device)
        logits = self._forward(ids, cache)
        out: list[list[int]] = [[] for _ in seeds]
        stopped = [False] * len(seeds)
        for step in range(max_tokens):
            active = [i for i, s in enumerate(stopped) if not s]
            picks = self._pick(logits[active], sampling, [generators[i] for i in active])
            nxt = [0] * len(seeds)
            for i, t in zip(active, picks, strict=True):
                nxt[i] = t
                if t in self.stop_ids:
                    stopped[i] = True
                else:
                    out[i].append(t)
            if all(stopped) or step == max_tokens - 1:
                break
            # Finished rows keep being fed (their outputs are ignored): dropping them would change
            # the batch shape under the others, and with it the float rounding of their logits.
            logits = self._forward(torch.tensor([[t] for t in nxt], device=self.device), cache)
        return [SampleResult(o, s) for o, s in zip(out, stopped, strict=True)]

    # -- Backend API -------------------------------------------------------------------------------
    def sample(self, requests: list[SampleRequest]) -> list[SampleResult]:
        results: list[SampleResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((tuple(r.prompt), r.max_tokens, r.sampling), []).append(i)
        for (prompt, max_tokens, sampling), members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                seeds = [requests[i].seed for i in chunk]
                rows = self._decode_rows(list(prompt), seeds, max_tokens, sampling)
                for i, row in zip(chunk, rows, strict=True):
                    results[i] = row
        return [r for r in results if r is not None]

    def probe(self, requests: list[ProbeRequest]) -> list[list[list[int]]]:
        torch = self.torch
        answers: list[list[list[int]]] = []
        for req in requests:
            cache = self._new_cache()
            fed = 0
            per_cut: list[list[int]] = []
            if req.cuts and (req.cuts[-1] > len(req.prefix) or req.cuts[0] <= 0):
                raise ValueError(f"probe cuts must lie in 1..{len(req.prefix)}, "
                                 f"got {req.cuts[0]}..{req.cuts[-1]}")
            for cut in req.cuts:
                # Extend the cached prefix to this cut, answer, then crop back: depth k reuses depth k-1.
                if cut > fed:
                    self._forward(torch.tensor([req.prefix[fed:cut]], device=self.device), cache)
                    fed = cut
                logits = self._forward(torch.tensor([req.suffix], device=self.device), cache)
                ids: list[int] = []
                for _ in range(req.max_tokens):
                    t = int(logits.argmax(dim=-1).item())
                    ids.append(t)
                    if t in self.stop_ids or len(ids) >= req.max_tokens:
                        break
                    logits = self._forward(torch.tensor([[t]], device=self.device), cache)
                # A negative crop removes that many tokens in every transformers release (>= 4.51).
                cache.crop(cut - cache.get_seq_length())
                per_cut.append(strip_stop(ids, self.stop_ids)[0])
            answers.append(per_cut)
        return answers
