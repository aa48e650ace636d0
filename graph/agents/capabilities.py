"""What an OpenAI-compatible endpoint can do, found out once per run by a few tiny requests (no guessing from
model names): the servers users run (vLLM, llama.cpp's ``llama-server``, Ollama, LM Studio,
llama-cpp-python, hosted gateways) each support a different part of the chat-completions API.

``probe_endpoint`` checks, with requests of a few tokens each:

* the model is served (``GET /models``; a model the list does not name is one clear error before any work),
  and the context window where the server says it (``/models`` fields, llama-server's ``/props``);
* plain text, and whether ``max_tokens`` is honoured (else ``max_completion_tokens`` is sent);
* usage figures in a stream (``stream_options.include_usage``): streamed calls can then be cut off and still
  be accounted with the server's own figures;
* a forced ``tool_choice`` naming a function, ``response_format`` with a JSON schema: the two ways to get a
  structured answer (critic, diagnostician);
* tool calls with ``tool_choice: "auto"``, whether the server then honours ``max_tokens``, and whether a
  tool result survives the chat template (a second turn whose tool message grows must grow the prompt): the
  proposer's tool loop.

The result (``EndpointCapabilities``) chooses each role's path and is recorded in the run's report.
``CapabilityCache`` keeps one probe per endpoint for the run's lifetime (every lane's roles share it).
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

OPENAI_URL = "https://api.openai.com/v1"
StructuredMethod = Literal["tool", "json_schema", "text"]
_PROBE_TOOL = {"type": "function", "function": {
    "name": "record_number", "description": "Record one whole number.",
    "parameters": {"type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}}}
_PROBE_SCHEMA = _PROBE_TOOL["function"]["parameters"]
_CONTEXT_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length", "n_ctx")
_OVERFLOW_LIMIT = (re.compile(r"maximum context length is (\d+)", re.I), re.compile(r'"n_ctx"\s*:\s*(\d+)'),
                   re.compile(r"context (?:size|window|length)[^0-9]{0,40}(\d{3,7})", re.I))
_OVERFLOW_ASKED = re.compile(r"(?:requested|resulted in|n_prompt_tokens\"?\s*:?)\s*(\d+)", re.I)
_OVERFLOW_WORDS = re.compile(r"context (?:length|size|window)|n_ctx|too many tokens|exceeds? the (?:available )?"
                             r"context", re.I)


class ProbeStep(BaseModel):
    """One probe request: what it checked, whether the endpoint passed, and why not."""

    check: str
    ok: bool
    seconds: float
    note: str = ""
    prompt_tokens: int = 0  # the usage figures the server reported for this check's requests
    completion_tokens: int = 0


class EndpointCapabilities(BaseModel):
    """What one endpoint (base URL + model) supports, as probed (or as assumed for an injected chat model)."""

    base_url: str
    model: str
    served_models: list[str] = Field(default_factory=list)
    context_tokens: int | None = None
    context_source: str = ""  # "server", "--context-tokens", "overflow error", "" (unknown)
    token_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    honours_max_tokens: bool = True
    stream_usage: bool = False
    forced_tool: bool = False
    json_schema: bool = False
    auto_tools: bool = False
    auto_tools_bounded: bool = False  # the server honours max_tokens while it writes an automatic tool call
    tool_results_kept: bool = False  # a tool message reaches the model (else it is sent as a user turn)
    chars_per_token: float = 3.0  # learnt from usage figures; conservative until then
    probed: bool = True
    steps: list[ProbeStep] = Field(default_factory=list)
    probe_seconds: float = 0.0

    @classmethod
    def assumed(cls, model: str = "injected") -> EndpointCapabilities:
        """A chat model handed in by the caller (tests, custom models): every path, nothing probed."""
        return cls(base_url="(injected)", model=model, forced_tool=True, json_schema=True, auto_tools=True,
                   auto_tools_bounded=True, tool_results_kept=True, probed=False)

    def structured_method(self) -> StructuredMethod:
        """How a structured answer is asked for: a forced tool call, a JSON-schema response format, else plain
        text with the schema in the prompt."""
        if self.forced_tool:
            return "tool"
        if self.json_schema:
            return "json_schema"
        return "text"

    def proposer_uses_tools(self, setting: str) -> bool:
        """The proposer's mode for ``--proposer-tools``: ``auto`` means tools where automatic tool calls work and
        stay bounded (a server that ignores ``max_tokens`` while it writes tool arguments can write them
        without end: the no-tools mode is used there)."""
        if setting == "on":
            return True
        if setting == "off":
            return False
        return self.auto_tools and self.auto_tools_bounded

    def summary(self) -> str:
        """One line for logs and the report."""
        yes = [n for n, v in (("forced tool", self.forced_tool), ("json_schema", self.json_schema),
                              ("auto tools", self.auto_tools), ("stream usage", self.stream_usage)) if v]
        ctx = f"{self.context_tokens} tokens ({self.context_source})" if self.context_tokens else "unknown"
        return (f"{self.model} at {self.base_url}: {', '.join(yes) or 'plain text only'}; context {ctx}; "
                f"structured output by {self.structured_method()}")

    def learn_overflow(self, message: str, prompt_chars: int) -> bool:
        """Learn the context window (and the size of a token) from an overflow error; False if it is none."""
        if not _OVERFLOW_WORDS.search(message or ""):
            return False
        for pattern in _OVERFLOW_LIMIT:
            m = pattern.search(message)
            if m:
                # The server's own word beats a --context-tokens that was too large.
                self.context_tokens, self.context_source = int(m.group(1)), "overflow error"
                break
        asked = _OVERFLOW_ASKED.search(message)
        if asked and prompt_chars > 0:
            self.learn_ratio(prompt_chars, int(asked.group(1)))
        return True

    def learn_ratio(self, prompt_chars: int, prompt_tokens: int) -> None:
        """Characters per token of this endpoint's tokenizer, from a prompt whose size the server reported
        (only prompts long enough to say something; the smallest ratio seen wins, to stay on the safe side)."""
        if prompt_tokens > 200 and prompt_chars > 0:
            self.chars_per_token = max(1.0, min(self.chars_per_token, prompt_chars / prompt_tokens * 0.97))


class ProbeError(Exception):
    """The endpoint cannot be used at all (unreachable, key rejected, model not served): one line."""


class _Http:
    """The probe's HTTP calls (plain httpx: the status, body and usage of each answer are what is measured)."""

    def __init__(self, base_url: str, key: str, timeout_s: float) -> None:
        import httpx

        self.base = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})
        self.usage = [0, 0]  # prompt and completion tokens the server reported since the last step

    def _count(self, usage: dict[str, Any] | None) -> None:
        usage = usage or {}
        self.usage[0] += int(usage.get("prompt_tokens") or 0)
        self.usage[1] += int(usage.get("completion_tokens") or 0)

    def get(self, path: str) -> tuple[int, Any]:
        resp = self.client.get(self.base + path)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    def get_root(self, path: str) -> tuple[int, Any]:
        """A path at the server's root (llama-server's ``/props``), not under ``/v1``."""
        import httpx

        try:
            resp = self.client.get(self.base.removesuffix("/v1") + path)
        except httpx.HTTPError:
            return 0, None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, None

    def chat(self, body: dict[str, Any]) -> tuple[int, Any]:
        resp = self.client.post(self.base + "/chat/completions", json=body)
        try:
            data = resp.json()
        except ValueError:
            return resp.status_code, resp.text[:300]
        if isinstance(data, dict):
            self._count(data.get("usage"))
        return resp.status_code, data

    def stream_has_usage(self, body: dict[str, Any]) -> tuple[int, bool]:
        with self.client.stream("POST", self.base + "/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                return resp.status_code, False
            for line in resp.iter_lines():
                if line.startswith("data:") and '"usage"' in line:
                    data = line[5:].strip()
                    try:
                        usage = json.loads(data).get("usage")
                    except ValueError:
                        continue
                    if usage:
                        self._count(usage)
                        return 200, True
        return 200, False

    def close(self) -> None:
        self.client.close()


def _error_line(status: int, body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message", err) if isinstance(err, dict) else err
        return f"HTTP {status}: {' '.join(str(msg).split())[:200]}"
    return f"HTTP {status}: {' '.join(str(body).split())[:200]}"


def _message(body: Any) -> dict[str, Any]:
    try:
        return body["choices"][0]["message"] or {}
    except (KeyError, IndexError, TypeError):
        return {}


def _usage(body: Any) -> dict[str, int]:
    return (body.get("usage") or {}) if isinstance(body, dict) else {}


def _valid_number(text: Any) -> bool:
    try:
        obj = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("value"), int) and not isinstance(obj.get("value"), bool)


def _context_from_models(entry: dict[str, Any]) -> int | None:
    for source in (entry, entry.get("meta") or {}):
        for key in _CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def probe_endpoint(base_url: str | None, model: str, key: str, *, timeout_s: float = 60.0,
                   context_tokens: int | None = None, key_env: str = "") -> EndpointCapabilities:
    """Probe one endpoint (see the module docstring); ProbeError when it cannot be used at all."""
    import httpx

    url = (base_url or OPENAI_URL).rstrip("/")
    caps = EndpointCapabilities(base_url=url, model=model)
    http = _Http(url, key, min(timeout_s, 120.0))
    started = time.perf_counter()

    def step(check: str, ok: bool, t0: float, note: str = "") -> bool:
        caps.steps.append(ProbeStep(check=check, ok=ok, seconds=round(time.perf_counter() - t0, 3), note=note,
                                    prompt_tokens=http.usage[0], completion_tokens=http.usage[1]))
        http.usage = [0, 0]
        return ok

    def ask(messages: list[dict], max_tokens: int, **extra: Any) -> tuple[int, Any]:
        body = {"model": model, "messages": messages, caps.token_field: max_tokens, "temperature": 0, **extra}
        return http.chat(body)

    try:
        t0 = time.perf_counter()
        try:
            status, body = http.get("/models")
        except httpx.TransportError as exc:
            raise ProbeError(f"cannot reach {url} ({type(exc).__name__})") from None
        if status in (401, 403):
            raise ProbeError(f"{url} rejected the API key{f' in {key_env}' if key_env else ''} ({status})")
        if status == 200 and isinstance(body, dict) and isinstance(body.get("data"), list):
            entries = [e for e in body["data"] if isinstance(e, dict) and e.get("id")]
            caps.served_models = [str(e["id"]) for e in entries]
            match = next((e for e in entries if e["id"] in (model, f"{model}:latest")), None)
            if caps.served_models and match is None:
                raise ProbeError(f"model {model!r} is not served at {url} (served: "
                                 f"{', '.join(caps.served_models[:8])})")
            if match is not None:
                found = _context_from_models(match)
                if found:
                    caps.context_tokens, caps.context_source = found, "server"
            step("models", True, t0, f"{len(caps.served_models)} served")
        else:
            step("models", False, t0, _error_line(status, body))
        if caps.context_tokens is None and url != OPENAI_URL:
            t0 = time.perf_counter()
            status, body = http.get_root("/props")
            n_ctx = ((body.get("default_generation_settings") or {}).get("n_ctx")
                     if status == 200 and isinstance(body, dict) else None)
            if isinstance(n_ctx, int) and n_ctx > 0:
                caps.context_tokens, caps.context_source = n_ctx, "server"
        if context_tokens:
            caps.context_tokens, caps.context_source = context_tokens, "--context-tokens"

        say = [{"role": "user", "content": "Reply with one word: ready"}]
        t0 = time.perf_counter()
        try:
            status, body = ask(say, 4)
        except httpx.TransportError as exc:
            raise ProbeError(f"cannot reach {url} ({type(exc).__name__})") from None
        if status in (401, 403):
            raise ProbeError(f"{url} rejected the API key{f' in {key_env}' if key_env else ''} ({status})")
        if status == 404:
            raise ProbeError(f"model {model!r} or the URL path was not found at {url} (404)")
        if status == 400 and caps.token_field == "max_tokens" and "max_tokens" in json.dumps(body):
            caps.token_field = "max_completion_tokens"
            status, body = ask(say, 4)
        if status != 200:
            raise ProbeError(f"{url} cannot answer a plain chat request: {_error_line(status, body)}")
        out = _usage(body).get("completion_tokens")
        caps.honours_max_tokens = not (isinstance(out, int) and out > 4)
        step("plain text", True, t0, f"{out} completion tokens for max 4")

        t0 = time.perf_counter()
        try:
            status, has = http.stream_has_usage({"model": model, "messages": say, caps.token_field: 4,
                                                 "temperature": 0, "stream": True,
                                                 "stream_options": {"include_usage": True}})
        except httpx.HTTPError as exc:
            status, has = 0, False
            step("stream usage", False, t0, type(exc).__name__)
        else:
            caps.stream_usage = status == 200 and has
            step("stream usage", caps.stream_usage, t0, "" if status == 200 else f"HTTP {status}")

        ask_number = [{"role": "user", "content": "Call record_number with the value 7."}]
        t0 = time.perf_counter()
        status, body = ask(ask_number, 24, tools=[_PROBE_TOOL],
                           tool_choice={"type": "function", "function": {"name": "record_number"}})
        calls = _message(body).get("tool_calls") or []
        caps.forced_tool = status == 200 and bool(calls) and _valid_number(calls[0]["function"].get("arguments"))
        step("forced tool_choice", caps.forced_tool, t0, "" if status == 200 else _error_line(status, body))

        t0 = time.perf_counter()
        status, body = ask([{"role": "user", "content": 'Answer with JSON {"value": 7}.'}], 24,
                           response_format={"type": "json_schema", "json_schema": {
                               "name": "record_number", "schema": _PROBE_SCHEMA, "strict": False}})
        caps.json_schema = status == 200 and _valid_number(_message(body).get("content"))
        step("response_format json_schema", caps.json_schema, t0, "" if status == 200 else _error_line(status, body))

        t0 = time.perf_counter()
        status, body = ask(ask_number, 32, tools=[_PROBE_TOOL], tool_choice="auto")
        calls = _message(body).get("tool_calls") or []
        caps.auto_tools = status == 200 and bool(calls)
        step("auto tool_choice", caps.auto_tools, t0,
             _error_line(status, body) if status != 200 else ("" if calls else "answered in text"))
        if caps.auto_tools or caps.forced_tool:
            if caps.auto_tools:
                t0 = time.perf_counter()
                status, body = ask(ask_number, 2, tools=[_PROBE_TOOL], tool_choice="auto")
                out = _usage(body).get("completion_tokens")
                caps.auto_tools_bounded = not (status == 200 and isinstance(out, int) and out > 3)
                step("max_tokens with auto tools", caps.auto_tools_bounded, t0, f"{out} completion tokens for max 2")
            t0 = time.perf_counter()
            kept, note = _tool_results_kept(ask, ask_number)
            caps.tool_results_kept = kept
            step("tool result in the next turn", kept, t0, note)
    except httpx.HTTPError as exc:
        raise ProbeError(f"{url} stopped answering while probed ({type(exc).__name__})") from None
    finally:
        http.close()
    caps.probe_seconds = round(time.perf_counter() - started, 3)
    return caps


def _tool_results_kept(ask: Any, opening: list[dict]) -> tuple[bool, str]:
    """Whether a tool message reaches the model: the prompt of a second turn must grow with its tool result."""
    call = {"id": "call_probe", "type": "function",
            "function": {"name": "record_number", "arguments": json.dumps({"value": 7})}}

    def prompt_tokens(result: str) -> int | None:
        turn = [*opening, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_probe", "content": result}]
        status, body = ask(turn, 1, tools=[_PROBE_TOOL])
        return _usage(body).get("prompt_tokens") if status == 200 else None

    short, long = prompt_tokens("recorded"), prompt_tokens("recorded " + "seven " * 60)
    if short is None or long is None:
        return False, "a tool-result turn was refused"
    return long - short >= 30, f"prompt {short} -> {long} tokens with a 60-word result"


class CapabilityCache:
    """One probe per endpoint for a run: the roles of every lane share it (thread-safe)."""

    def __init__(self) -> None:
        self._caps: dict[tuple[str, str], EndpointCapabilities] = {}
        self._lock = threading.Lock()

    def get(self, base_url: str | None, model: str, key: str, *, timeout_s: float,
            context_tokens: int | None, key_env: str = "") -> EndpointCapabilities:
        """The endpoint's capabilities, probed on first use."""
        ident = ((base_url or OPENAI_URL).rstrip("/"), model)
        with self._lock:
            caps = self._caps.get(ident)
            if caps is None:
                caps = self._caps[ident] = probe_endpoint(base_url, model, key, timeout_s=timeout_s,
                                                          context_tokens=context_tokens, key_env=key_env)
            return caps

    def all(self) -> list[EndpointCapabilities]:
        """Every endpoint probed so far."""
        with self._lock:
            return list(self._caps.values())
