"""The LLM client of the agent roles: a ``ChatOpenAI`` per role over any OpenAI-compatible endpoint, and the one
bounded call every role makes through it.

* Requests are shaped to be accepted by the servers users run (``ShapedChatOpenAI``): no ``content: null``
  next to tool calls, ``max_tokens`` where the server reads that field, tool results sent as user turns where
  the endpoint's chat template drops tool messages (``capabilities.py`` found out which).
* Every call has a wall-clock limit and an output-token limit that the client enforces: a streamed answer is
  cut off at either (closing the stream stops the server's work); an answer that cannot be streamed with usage
  figures is sent with the output limit and abandoned at the time limit.
* Every prompt is fitted to the model's context (``LLMClient.fit``) and a context overflow the server still
  reports teaches the client the limit, the prompt is shrunk and sent once more.
* Spend is the server's usage figures; a call cut off before the server reported any is counted from what the
  client sent and received, and marked as estimated. Every call is kept as a ``CallRecord`` for the ledger.

``AgentError``: the endpoint cannot be used (unreachable, key rejected, model unknown); the run stops, keeping
everything, and ``--resume`` continues it. ``CallFailed``: one call or one answer failed (time or output limit,
a prompt that cannot fit, malformed answers after retries, no code, the budget); that proposal, verdict or
diagnosis fails, recorded with its reason, and the run goes on.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from ..configuration import RoleSettings
from .capabilities import EndpointCapabilities
from .roles import Spend

MESSAGE_OVERHEAD_CHARS = 16  # role markers and separators a chat template adds per message
SAFETY_TOKENS = 64  # room left between the estimated prompt plus the output limit and the context


class AgentError(Exception):
    """An agent cannot continue at all (endpoint unreachable, key rejected, model not served)."""


CallKind = Literal["timeout", "output_limit", "context", "malformed", "no_code", "budget", "server"]


class CallFailed(Exception):
    """One LLM call (or one role's answer) failed; the proposal, verdict or diagnosis fails, the run goes on."""

    def __init__(self, kind: CallKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ContextOverflow(CallFailed):
    """The server refused the prompt as longer than its context (the client learnt the limit from it)."""

    def __init__(self, message: str) -> None:
        super().__init__("context", message)


class CallRecord(BaseModel):
    """One LLM call as the ledger keeps it."""

    role: str
    model: str
    mode: str  # text, tools, structured:tool, structured:json_schema, structured:text
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: Literal["server", "estimated"] = "server"
    seconds: float = 0.0
    outcome: str = "ok"  # ok, or the CallFailed kind
    error: str = ""


@dataclass
class CallBudget:
    """What the run's budget leaves for new calls (None: no limit); set by the node before a role works."""

    tokens: int | None = None
    usd: float | None = None


def content_text(msg: AIMessage) -> str:
    """The text of a reply (content blocks joined)."""
    content = msg.content
    if isinstance(content, list):
        return "\n".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content or "")


def shape_messages(messages: list[dict[str, Any]], *, tool_results_as_user: bool) -> list[dict[str, Any]]:
    """Chat messages as every OpenAI-compatible server accepts them: an assistant turn with tool calls gets ``""``
    content, not null; with ``tool_results_as_user`` each tool result becomes a user turn naming its tool (for
    templates that drop tool messages), consecutive user turns merged (for templates that insist on turns
    alternating)."""
    names = {c.get("id"): c.get("function", {}).get("name", "tool")
             for m in messages for c in (m.get("tool_calls") or [])}
    out: list[dict[str, Any]] = []
    for m in messages:
        m = dict(m)
        if m.get("role") == "assistant" and m.get("content") is None:
            m["content"] = ""
        if tool_results_as_user and m.get("role") == "tool":
            m = {"role": "user", "content": f"Result of the {names.get(m.get('tool_call_id'), 'tool')} call:\n"
                                            f"{m.get('content') or ''}"}
        if out and m.get("role") == "user" and out[-1].get("role") == "user" and isinstance(m.get("content"), str) \
                and isinstance(out[-1].get("content"), str):
            out[-1] = {**out[-1], "content": out[-1]["content"] + "\n\n" + m["content"]}
            continue
        out.append(m)
    return out


@functools.cache
def _shaped_chat_class() -> type:
    """``ChatOpenAI`` with its request payload shaped (defined on first use: langchain-openai loads lazily)."""
    from langchain_openai import ChatOpenAI

    class ShapedChatOpenAI(ChatOpenAI):
        """ChatOpenAI whose requests every OpenAI-compatible server accepts (``shape_messages``), with the output
        limit sent as the field the endpoint reads."""

        token_field: str = "max_completion_tokens"
        tool_results_as_user: bool = False

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "messages" in payload:
                payload["messages"] = shape_messages(payload["messages"],
                                                     tool_results_as_user=self.tool_results_as_user)
            limit = payload.pop("max_completion_tokens", None) or payload.pop("max_tokens", None)
            if limit is not None:
                payload[self.token_field] = limit
            return payload

    return ShapedChatOpenAI


def make_chat_model(settings: RoleSettings, role: str, caps: EndpointCapabilities | None = None) -> BaseChatModel:
    """The chat model of one role, shaped for its endpoint; AgentError when its API-key variable is unset."""
    key = api_key(settings, role)
    caps = caps or EndpointCapabilities(base_url=settings.base_url or "", model=settings.model,
                                        token_field="max_completion_tokens", tool_results_kept=True, probed=False)
    # The HTTP timeout is a backstop behind the client's own per-call limit (LLMClient.invoke).
    return _shaped_chat_class()(model=settings.model, base_url=settings.base_url, api_key=key,
                                temperature=settings.temperature, timeout=settings.timeout_s + 15, max_retries=1,
                                token_field=caps.token_field, tool_results_as_user=not caps.tool_results_kept,
                                stream_usage=caps.stream_usage)


def api_key(settings: RoleSettings, role: str) -> str:
    """The role's API key; AgentError naming the variable when it is unset."""
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise AgentError(f"{role}: the API-key variable {settings.api_key_env} is not set (set it, choose another "
                         f"with --{role}-api-key-env, or use --{role} offline)")
    return key


def endpoint_error(role: str, settings: RoleSettings, exc: Exception) -> Exception:
    """An OpenAI client error as one line: AgentError when the endpoint is unusable, else CallFailed."""
    import openai

    where = settings.base_url or "the default OpenAI endpoint"
    if isinstance(exc, openai.AuthenticationError):
        return AgentError(f"{role}: {where} rejected the API key in {settings.api_key_env} (401)")
    if isinstance(exc, openai.PermissionDeniedError):
        return AgentError(f"{role}: {where} refused access for this key (403)")
    if isinstance(exc, openai.NotFoundError):
        return AgentError(f"{role}: model {settings.model!r} or the URL path was not found at {where} (404)")
    if isinstance(exc, openai.RateLimitError):
        return AgentError(f"{role}: {where} refused for its rate limit or quota (429): {str(exc)[:160]}")
    if isinstance(exc, openai.APITimeoutError):
        return CallFailed("timeout", f"{role}: {where} did not answer within {settings.timeout_s:g} s")
    if isinstance(exc, openai.APIConnectionError):
        return AgentError(f"{role}: cannot reach {where} ({type(exc).__name__})")
    if isinstance(exc, openai.APIStatusError):
        return CallFailed("server", f"{role}: {where} answered HTTP {exc.status_code}: "
                                    f"{' '.join(str(exc).split())[:200]}")
    return CallFailed("server", f"{role}: model call failed: {type(exc).__name__}: {str(exc)[:200]}")


def _chars(messages: list[BaseMessage], tools: list[Any] | None) -> int:
    n = sum(len(content_text(m)) if isinstance(m, AIMessage) else len(str(m.content)) for m in messages)
    n += sum(len(json.dumps(getattr(m, "tool_calls", None) or [], default=str)) for m in messages
             if isinstance(m, AIMessage))
    n += MESSAGE_OVERHEAD_CHARS * len(messages)
    if tools:
        n += len(json.dumps([_tool_schema(t) for t in tools], default=str))
    return n


def _tool_schema(tool: Any) -> Any:
    try:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return convert_to_openai_tool(tool)
    except Exception:  # noqa: BLE001 - only its size matters here
        return str(tool)


@dataclass
class Fitted:
    """A prompt chosen to fit: its messages and the shrink level it needed (0: nothing left out)."""

    messages: list[BaseMessage]
    level: int


@dataclass
class LLMClient:
    """One role's calls to one endpoint: bounded, fitted, accounted (see the module docstring)."""

    model: BaseChatModel
    settings: RoleSettings
    role: str
    caps: EndpointCapabilities
    budget: CallBudget = field(default_factory=CallBudget)
    records: list[CallRecord] = field(default_factory=list)
    _spend: Spend = field(default_factory=Spend)

    @property
    def model_name(self) -> str:
        return getattr(self.model, "model_name", None) or self.settings.model or type(self.model).__name__

    def spend(self) -> Spend:
        """Tokens, dollars and calls so far."""
        return self._spend.model_copy()

    def mark_failure(self, exc: CallFailed) -> None:
        """A role's answer failed after its calls went through (no code, malformed output, no fit): the last call
        of that answer carries the reason, so the ledger shows why the proposal, verdict or diagnosis failed."""
        if exc.kind in ("no_code", "malformed", "context") and self.records and self.records[-1].outcome == "ok":
            self.records[-1].outcome = exc.kind
            self.records[-1].error = str(exc)[:300]

    def take_records(self) -> list[CallRecord]:
        """The calls made since the last take (the node wrapper writes them to the ledger)."""
        out, self.records = self.records, []
        return out

    # ---- limits -------------------------------------------------------------------------------------

    def output_limit(self) -> int:
        """Output tokens of the next call: the role's limit, at most a third of a known context, at most what the
        token budget leaves."""
        cap = self.settings.max_output_tokens
        if self.caps.context_tokens:
            cap = min(cap, max(64, self.caps.context_tokens // 3))
        if self.budget.tokens is not None:
            cap = min(cap, max(16, self.budget.tokens))
        return cap

    def prompt_tokens(self, messages: list[BaseMessage], tools: list[Any] | None = None) -> int:
        """The estimated prompt size in tokens (characters over the endpoint's characters per token)."""
        return int(_chars(messages, tools) / self.caps.chars_per_token) + 1

    def room(self) -> int | None:
        """Tokens a prompt may take (None: the context is unknown)."""
        if not self.caps.context_tokens:
            return None
        return self.caps.context_tokens - self.output_limit() - SAFETY_TOKENS

    def fits(self, messages: list[BaseMessage], tools: list[Any] | None = None) -> bool:
        room = self.room()
        return room is None or self.prompt_tokens(messages, tools) <= room

    def fit(self, build: Callable[[int], list[BaseMessage]], levels: int, tools: list[Any] | None = None,
            start: int = 0) -> Fitted:
        """The first shrink level (from ``start``) whose prompt fits the context; CallFailed when even the last
        does not."""
        for level in range(start, levels):
            messages = build(level)
            if self.fits(messages, tools):
                return Fitted(messages, level)
        room = self.room()
        raise CallFailed("context", f"{self.role}: the prompt needs about {self.prompt_tokens(messages, tools):,} "
                                    f"tokens even shrunk to the minimum, and the model's context of "
                                    f"{self.caps.context_tokens:,} tokens leaves {room:,} for it "
                                    f"(raise --context-tokens if the server allows more)")

    def _check_budget(self) -> None:
        if self.budget.tokens is not None and self.budget.tokens <= 0:
            raise CallFailed("budget", f"{self.role}: the LLM token budget is used up; no new call")
        if self.budget.usd is not None and self.budget.usd <= 0:
            raise CallFailed("budget", f"{self.role}: the LLM dollar budget is used up; no new call")

    # ---- the call -----------------------------------------------------------------------------------

    def invoke_fitted(self, build: Callable[[int], list[BaseMessage]], levels: int, *, mode: str = "text",
                      tools: list[Any] | None = None, **bind: Any) -> tuple[AIMessage, int]:
        """Fit the prompt, call, and on a context overflow the server still reports, fit again to the limit it
        taught and call once more. Returns the reply and the shrink level used."""
        fitted = self.fit(build, levels, tools)
        try:
            return self.invoke(fitted.messages, mode=mode, tools=tools, **bind), fitted.level
        except ContextOverflow:
            fitted = self.fit(build, levels, tools, start=fitted.level)
            return self.invoke(fitted.messages, mode=mode, tools=tools, **bind), fitted.level

    def invoke(self, messages: list[BaseMessage], *, mode: str = "text", tools: list[Any] | None = None,
               tool_choice: Any = None, response_format: dict[str, Any] | None = None) -> AIMessage:
        """One bounded call (module docstring); raises AgentError, CallFailed or ContextOverflow."""
        import openai

        self._check_budget()
        limit = self.output_limit()
        runnable: Any = self.model
        if tools:
            try:
                runnable = runnable.bind_tools(tools, **({"tool_choice": tool_choice} if tool_choice else {}))
            except NotImplementedError:  # a chat model with no tool support: the role parses the text instead
                pass
        bind: dict[str, Any] = {"max_tokens": limit}
        if response_format is not None:
            bind["response_format"] = response_format
        runnable = runnable.bind(**bind)
        stream = self.caps.stream_usage
        chars = _chars(messages, tools)
        started = time.perf_counter()
        outcome: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                if not stream:
                    outcome.put(("ok", runnable.invoke(messages), None))
                    return
                acc, pieces = None, 0
                for chunk in runnable.stream(messages):
                    acc = chunk if acc is None else acc + chunk
                    if chunk.content or getattr(chunk, "tool_call_chunks", None):
                        pieces += 1
                    if stop.is_set():
                        return
                    if pieces > limit:
                        outcome.put(("output_limit", acc, pieces))
                        return
                outcome.put(("ok", acc, pieces))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome.put(("error", exc, None))

        worker = threading.Thread(target=work, name=f"llm-{self.role}", daemon=True)
        worker.start()
        try:
            status, value, pieces = outcome.get(timeout=self.settings.timeout_s)
        except queue.Empty:
            stop.set()  # a stream stops at its next chunk (closing it stops the server's work)
            self._record(mode, chars, None, limit if not stream else 0, started, "timeout",
                         f"cut off after {self.settings.timeout_s:g} s")
            raise CallFailed("timeout", f"{self.role}: no complete answer within {self.settings.timeout_s:g} s "
                                        "(--call-timeout); the call was cut off") from None
        if status == "error":
            exc = value
            if isinstance(exc, openai.BadRequestError) and self.caps.learn_overflow(str(exc), chars):
                self._record(mode, chars, 0, 0, started, "context", str(exc)[:200], usage="server")
                raise ContextOverflow(f"{self.role}: the prompt was longer than the model's context "
                                      f"({self.caps.context_tokens} tokens)") from None
            if isinstance(exc, openai.OpenAIError):
                err = endpoint_error(self.role, self.settings, exc)
                self._record(mode, chars, 0, 0, started, getattr(err, "kind", "endpoint"), str(err))
                raise err from None
            raise exc
        msg: AIMessage = value
        if status == "output_limit":
            self._record(mode, chars, None, pieces, started, "output_limit", f"cut off after {limit} output tokens")
            raise CallFailed("output_limit", f"{self.role}: the answer ran past {limit} output tokens "
                                             "(--max-output-tokens); the call was cut off")
        usage = getattr(msg, "usage_metadata", None) or {}
        tin, tout = usage.get("input_tokens"), usage.get("output_tokens")
        if tin is not None and tout is not None:
            self.caps.learn_ratio(chars, int(tin))
            self._record(mode, chars, int(tin), int(tout), started, "ok", "", usage="server")
        else:
            self._record(mode, chars, None, pieces if pieces is not None else len(content_text(msg)) // 4, started,
                         "ok", "")
        return msg

    def _record(self, mode: str, chars: int, tin: int | None, tout: int, started: float, outcome: str, error: str,
                usage: str | None = None) -> None:
        estimated = tin is None
        prompt = int(chars / self.caps.chars_per_token) if estimated else tin
        rec = CallRecord(role=self.role, model=self.model_name, mode=mode, prompt_tokens=prompt,
                         completion_tokens=max(0, tout), usage=usage or ("estimated" if estimated else "server"),
                         seconds=round(time.perf_counter() - started, 3), outcome=outcome, error=error[:300])
        self.records.append(rec)
        self._spend.calls += 1
        self._spend.llm_tokens += rec.prompt_tokens + rec.completion_tokens
        usd = (rec.prompt_tokens * self.settings.usd_per_mtok_in
               + rec.completion_tokens * self.settings.usd_per_mtok_out) / 1e6
        self._spend.usd += usd
        if self.budget.tokens is not None:
            self.budget.tokens -= rec.prompt_tokens + rec.completion_tokens
        if self.budget.usd is not None:
            self.budget.usd -= usd
