"""vLLM offline engine backend: token-id prompts, prefix caching, per-request seeds.

Probes run in waves by depth: every branch's depth-k probe is submitted together, after depth k-1
finished, so each prompt finds the previous depth's prefix in vLLM's prefix cache and only the new
``probe_every`` tokens plus the suffix are prefilled.
"""

from __future__ import annotations

from typing import Any

from .backend import Backend, CollectError, ProbeRequest, SampleRequest, SampleResult, strip_stop


class VLLMBackend(Backend):
    """Batched generation with ``vllm.LLM``."""

    name = "vllm"

    def __init__(self, model: str, tokenizer: str, stop_ids: set[int], *, dtype: str = "auto",
                 engine_args: dict[str, Any] | None = None) -> None:
        try:
            from vllm import LLM, SamplingParams
            from vllm.inputs import TokensPrompt
        except ImportError:
            raise CollectError("--backend vllm needs vLLM on a GPU machine: pip install vllm") from None
        self._params = SamplingParams
        self._prompt = TokensPrompt
        args = {"enable_prefix_caching": True, **(engine_args or {})}
        try:
            self.llm = LLM(model=model, tokenizer=tokenizer, dtype=dtype, **args)
        except Exception as exc:  # noqa: BLE001 - engine start-up failures are one user-facing line
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise CollectError(f"vLLM could not start {model!r}: {first}") from None
        self.stop_ids = stop_ids

    def _run(self, prompts: list[list[int]], params: list[Any]) -> list[SampleResult]:
        outs = self.llm.generate([self._prompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        results = []
        for out in outs:
            comp = out.outputs[0]
            ids, stop_seen = strip_stop(list(comp.token_ids), self.stop_ids)
            results.append(SampleResult(ids, stop_seen or comp.finish_reason == "stop"))
        return results

    def sample(self, requests: list[SampleRequest]) -> list[SampleResult]:
        params = [self._params(n=1, temperature=r.sampling.temperature, top_p=r.sampling.top_p,
                               top_k=r.sampling.top_k if r.sampling.top_k > 0 else -1, seed=r.seed,
                               max_tokens=r.max_tokens, stop_token_ids=sorted(self.stop_ids),
                               skip_special_tokens=False, detokenize=False)
                  for r in requests]
        return self._run([r.prompt for r in requests], params)

    def probe(self, requests: list[ProbeRequest]) -> list[list[list[int]]]:
        answers: list[list[list[int]]] = [[] for _ in requests]
        depth = 0
        while True:
            wave = [i for i, r in enumerate(requests) if depth < len(r.cuts)]
            if not wave:
                return answers
            params = [self._params(n=1, temperature=0.0, max_tokens=requests[i].max_tokens,
                                   stop_token_ids=sorted(self.stop_ids), detokenize=False) for i in wave]
            prompts = [requests[i].prefix[:requests[i].cuts[depth]] + requests[i].suffix for i in wave]
            for i, res in zip(wave, self._run(prompts, params), strict=True):
                answers[i].append(res.token_ids)
            depth += 1

    def close(self) -> None:
        del self.llm
