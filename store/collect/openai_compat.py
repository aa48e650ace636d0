"""Any OpenAI-compatible ``/v1/completions`` server taking token-id prompts (vLLM, SGLang, ...).

Requests run on a bounded thread pool; transient failures (connection errors, 429, 5xx) are retried
with exponential backoff. Probes of one branch are sent in depth order on one worker so a server with
prefix caching reuses the previous depth's prefix.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .backend import (
    GREEDY,
    Backend,
    ChatTokenizer,
    CollectError,
    ProbeRequest,
    SampleRequest,
    SampleResult,
    Sampling,
    strip_stop,
)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend(Backend):
    """Completions over HTTP with token ids in and (``return_token_ids``) token ids out."""

    name = "openai"

    def __init__(self, base_url: str, model: str, tokenizer: ChatTokenizer, *, concurrency: int = 16,
                 retries: int = 5, api_key: str | None = None, extra_body: dict[str, Any] | None = None,
                 timeout_s: float = 600.0, backoff_s: float = 0.5) -> None:
        base = base_url.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/completions"
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = tokenizer.stop_ids
        self.retries = retries
        self.backoff_s = backoff_s
        self.extra_body = extra_body or {}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers,
                                   limits=httpx.Limits(max_connections=concurrency))
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="collect-http")
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def _complete(self, prompt: list[int], max_tokens: int, sampling: Sampling,
                  seed: int | None) -> SampleResult:
        body: dict[str, Any] = {
            "model": self.model, "prompt": prompt, "max_tokens": max_tokens, "n": 1,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
            "skip_special_tokens": False, "return_token_ids": True, **self.extra_body,
        }
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if seed is not None:
            body["seed"] = seed
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            with self._count_lock:
                self.requests_sent += 1
            try:
                resp = self.client.post(self.url, json=body)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    return self._parse(resp.json())
                error = f"HTTP {resp.status_code}: {resp.text[:200].strip()}"
                if resp.status_code not in RETRY_STATUS:
                    raise CollectError(f"{self.url} refused the request: {error}")
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise CollectError(f"{self.url} failed after {self.retries + 1} attempts: {error}")

    def _parse(self, payload: dict[str, Any]) -> SampleResult:
        try:
            choice = payload["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise CollectError(f"{self.url} answered without choices: {str(payload)[:200]}") from None
        ids = choice.get("token_ids")
        if ids is None:
            # Servers that cannot return ids: re-encode the text (may differ from the sampled ids).
            ids = self.tokenizer.encode(choice.get("text") or "")
        ids, stop_in_ids = strip_stop([int(t) for t in ids], self.stop_ids)
        return SampleResult(ids, stop_in_ids or choice.get("finish_reason") == "stop")

    def sample(self, requests: list[SampleRequest]) -> list[SampleResult]:
        futures = [self.pool.submit(self._complete, r.prompt, r.max_tokens, r.sampling, r.seed)
                   for r in requests]
        return [f.result() for f in futures]

    def _probe_chain(self, req: ProbeRequest) -> list[list[int]]:
        return [self._complete(req.prefix[:cut] + req.suffix, req.max_tokens, GREEDY, None).token_ids
                for cut in req.cuts]

    def probe(self, requests: list[ProbeRequest]) -> list[list[list[int]]]:
        futures = [self.pool.submit(self._probe_chain, r) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
