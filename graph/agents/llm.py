"""LLM agents over any OpenAI-compatible endpoint (``langchain-openai`` ``ChatOpenAI``).

* ``LLMCritic`` and ``LLMDiagnostician`` answer with structured output (pydantic ``CriticVerdict`` and
  ``Diagnosis``), retried a bounded number of times when the model returns something malformed.
* ``LLMProposer`` works like a coding agent: a tool-calling loop over ``ProposerToolbox`` (read the run's
  history, get traces, validate, quick evaluation) that ends with ``submit_controller``.

Endpoint failures (unreachable URL, rejected key, unknown model) raise ``AgentError`` with one clear line;
the graph stops cleanly on it, keeping everything recorded so far.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from typing import Any, TypeVar

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel

from .. import evidence
from ..state import RoleSettings
from .roles import CriticInput, CriticVerdict, DiagnoseInput, Diagnosis, Proposal, ProposerInput, Spend
from .tools import SUBMIT_TOOL, ProposerToolbox

T = TypeVar("T", bound=BaseModel)
STRUCTURED_TRIES = 3
NO_CODE_NUDGES = 2
_CODE_BLOCK = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


class AgentError(Exception):
    """An agent cannot continue (endpoint unreachable, key rejected, unusable output after retries)."""


def load_prompt(name: str) -> str:
    """A prompt from ``graph/prompts/NAME.md`` with the shared contract filled in."""
    pkg = resources.files("autotts_graph.graph.prompts")
    contract = (pkg / "contract.md").read_text(encoding="utf-8")
    return (pkg / f"{name}.md").read_text(encoding="utf-8").replace("{contract}", contract)


def make_chat_model(settings: RoleSettings, role: str) -> BaseChatModel:
    """A ``ChatOpenAI`` for one role; AgentError when its API-key variable is unset."""
    from langchain_openai import ChatOpenAI

    key = os.environ.get(settings.api_key_env)
    if not key:
        raise AgentError(f"{role}: the API-key variable {settings.api_key_env} is not set (set it, choose another "
                         f"with --{role}-api-key-env, or use --{role} offline)")
    return ChatOpenAI(model=settings.model, base_url=settings.base_url, api_key=key,
                      temperature=settings.temperature, max_tokens=settings.max_output_tokens,
                      timeout=settings.timeout_s, max_retries=2)


def _endpoint_error(role: str, settings: RoleSettings, exc: Exception) -> AgentError:
    """Turn an OpenAI client error into one line a user can act on."""
    import openai

    where = settings.base_url or "the default OpenAI endpoint"
    if isinstance(exc, openai.AuthenticationError):
        msg = f"{role}: {where} rejected the API key in {settings.api_key_env} (401)"
    elif isinstance(exc, openai.PermissionDeniedError):
        msg = f"{role}: {where} refused access for this key (403)"
    elif isinstance(exc, openai.NotFoundError):
        msg = f"{role}: model {settings.model!r} or the URL path was not found at {where} (404)"
    elif isinstance(exc, openai.APITimeoutError):
        msg = f"{role}: {where} did not answer within {settings.timeout_s:g} s"
    elif isinstance(exc, openai.APIConnectionError):
        msg = f"{role}: cannot reach {where} ({type(exc).__name__})"
    elif isinstance(exc, openai.APIStatusError):
        msg = f"{role}: {where} answered HTTP {exc.status_code}: {str(exc)[:200]}"
    else:
        msg = f"{role}: model call failed: {type(exc).__name__}: {str(exc)[:200]}"
    return AgentError(msg)


class _LLMRole:
    """Shared plumbing: model calls with error mapping and usage accounting."""

    role = "agent"

    def __init__(self, model: BaseChatModel, settings: RoleSettings | None = None) -> None:
        self.model = model
        self.settings = settings or RoleSettings(kind="llm")
        self.name = f"llm:{getattr(model, 'model_name', None) or type(model).__name__}"
        self._spend = Spend()

    def spend(self) -> Spend:
        """Tokens, dollars and calls so far."""
        return self._spend.model_copy()

    def _account(self, msg: Any) -> None:
        self._spend.calls += 1
        usage = getattr(msg, "usage_metadata", None) or {}
        tin, tout = int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)
        self._spend.llm_tokens += tin + tout
        self._spend.usd += (tin * self.settings.usd_per_mtok_in + tout * self.settings.usd_per_mtok_out) / 1e6

    def _invoke(self, runnable: Any, messages: list[BaseMessage]) -> Any:
        import openai

        try:
            return runnable.invoke(messages)
        except openai.OpenAIError as exc:
            raise _endpoint_error(self.role, self.settings, exc) from None

    def _structured(self, schema: type[T], messages: list[BaseMessage]) -> T:
        """Structured output with bounded retries on malformed answers."""
        try:
            runnable = self.model.with_structured_output(schema, method="function_calling", include_raw=True)
        except NotImplementedError:
            raise AgentError(f"{self.role}: the model {self.name} cannot produce structured output "
                             "(no tool calling)") from None
        problem = ""
        for _ in range(STRUCTURED_TRIES):
            extra = [HumanMessage(f"Your previous answer was unusable: {problem}. Answer again through the "
                                  f"{schema.__name__} structure with valid fields.")] if problem else []
            out = self._invoke(runnable, messages + extra)
            raw = out.get("raw") if isinstance(out, dict) else None
            self._account(raw)
            parsed = out.get("parsed") if isinstance(out, dict) else None
            if isinstance(parsed, schema):
                return parsed
            err = out.get("parsing_error") if isinstance(out, dict) else None
            problem = (str(err).splitlines()[0][:300] if err else
                       f"no {schema.__name__} structure in the reply")
        raise AgentError(f"{self.role}: the model returned malformed structured output {STRUCTURED_TRIES} times "
                         f"({problem})")


class LLMCritic(_LLMRole):
    """Reviews a proposal against the contract and the history; structured ``CriticVerdict``."""

    role = "critic"

    def review(self, inp: CriticInput) -> CriticVerdict:
        earlier = "\n\n".join(f"### {h.candidate_id} ({h.name}, {h.status})\n```python\n{h.source}\n```"
                              for h in inp.history[-6:]) or "(none)"
        schedule = json.dumps(inp.schedule, indent=None)[:4000]
        body = (f"## Proposal\n```python\n{inp.source}\n```\n\n## Validation\nerrors: {inp.check_errors or 'none'}\n"
                f"warnings: {inp.check_warnings or 'none'}\nschedule over β: {schedule}\n\n"
                f"## Earlier candidates of this run\n{earlier}")
        return self._structured(CriticVerdict, [SystemMessage(load_prompt("critic")), HumanMessage(body)])


class LLMDiagnostician(_LLMRole):
    """Explains an evaluated (or crashed) controller; structured ``Diagnosis``."""

    role = "diagnostician"

    def diagnose(self, inp: DiagnoseInput) -> Diagnosis:
        parts = [f"## Controller {inp.candidate_id}\n```python\n{inp.source}\n```"]
        if inp.error_kind:
            parts.append(f"## The evaluation failed: {inp.error_kind}\n{inp.error or ''}")
        else:
            parts.append(f"## Scaling curve (search environments)\n{evidence.format_curve(inp.curve)}")
            parts.append(f"## Baselines\n{evidence.format_baselines(inp.baselines) or '(none)'}")
            weak = sorted(inp.outcomes, key=lambda o: o.accuracy)[:40]
            parts.append("## Weakest questions (accuracy over seeds)\n" + "\n".join(
                f"  {o.env} q{o.question_index} β={o.beta}: {o.accuracy:.2f}, {o.mean_tokens:,.0f} tokens, "
                f"modal answer {o.modal_answer!r}, gold {o.gold!r}" for o in weak))
            parts.append("## Sampled traces\n" + "\n".join(json.dumps(t.model_dump(mode="json"))[:3000]
                                                            for t in inp.traces[:8]))
        diag = self._structured(Diagnosis, [SystemMessage(load_prompt("diagnostician")),
                                            HumanMessage("\n\n".join(parts))])
        if inp.error_kind and not diag.crashed:
            diag.crashed = True
        return diag


def extract_code(text: str) -> str | None:
    """The largest fenced Python block of a reply that defines a class (or the whole reply if it does)."""
    blocks = [b for lang, b in _CODE_BLOCK.findall(text or "")
              if lang.lower() in ("", "python", "py", "python3") and "class " in b]
    if blocks:
        return max(blocks, key=len).strip() + "\n"
    if text and "class " in text and "def solve" in text and "```" not in text:
        return text.strip() + "\n"
    return None


def _content_text(msg: AIMessage) -> str:
    content = msg.content
    if isinstance(content, list):
        return "\n".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content or "")


class LLMProposer(_LLMRole):
    """A coding agent: reads the history through tools, validates, and submits a complete controller."""

    role = "proposer"

    def __init__(self, model: BaseChatModel, toolbox: ProposerToolbox, settings: RoleSettings | None = None) -> None:
        super().__init__(model, settings)
        self.toolbox = toolbox

    def _task(self, inp: ProposerInput) -> str:
        lines = [f"Round {inp.round} (attempt {inp.attempt + 1}). Search environments: {', '.join(inp.search_envs)}."
                 f" The evaluation sweeps β over {inp.betas}."]
        if inp.history:
            lines.append("## Earlier candidates (use read_history for details)")
            for h in inp.history[-12:]:
                acc = f"{h.search_accuracy:.2f}%" if h.search_accuracy is not None else "-"
                lines.append(f"- {h.candidate_id} round {h.round} {h.name}: {h.status}, best search accuracy {acc}")
            best = max((h for h in inp.history if h.search_accuracy is not None),
                       key=lambda h: h.search_accuracy or 0.0, default=None)
            if best is not None:
                lines.append(f"## Best so far: {best.candidate_id}\n{evidence.format_curve(best.curve)}\n"
                             f"```python\n{best.source}\n```")
        else:
            lines.append("No candidates yet: this is the first proposal of the run.")
        if inp.baselines:
            lines.append("## Baselines on the search environments\n" + evidence.format_baselines(inp.baselines))
        if inp.diagnosis is not None:
            lines.append("## Latest diagnosis\n" + json.dumps(inp.diagnosis.model_dump(mode="json"), indent=1))
        if inp.feedback:
            lines.append("## Your last attempt was sent back\n" + "\n".join(f"- {f}" for f in inp.feedback))
            if inp.last_source:
                lines.append(f"```python\n{inp.last_source}\n```")
        lines.append("Finish by calling submit_controller with the complete source.")
        return "\n\n".join(lines)

    def propose(self, inp: ProposerInput) -> Proposal:
        tools = {t.name: t for t in self.toolbox.tools()}
        self.toolbox.submitted = None
        try:
            bound = self.model.bind_tools(list(tools.values()))
        except NotImplementedError:
            bound = self.model
        messages: list[BaseMessage] = [SystemMessage(load_prompt("proposer")), HumanMessage(self._task(inp))]
        nudges = 0
        steps = 0
        while True:
            runnable = bound if steps < self.settings.max_tool_steps else self.model
            ai = self._invoke(runnable, messages)
            self._account(ai)
            messages.append(ai)
            calls = getattr(ai, "tool_calls", None) or []
            if calls:
                steps += 1
                if steps > self.settings.max_tool_steps + NO_CODE_NUDGES:
                    raise AgentError(f"proposer: the model kept calling tools without submitting code "
                                     f"({steps} tool turns)")
                for call in calls:
                    tool = tools.get(call["name"])
                    if tool is None:
                        result = f"unknown tool {call['name']!r}; available: {', '.join(tools)}"
                    else:
                        try:
                            result = str(tool.invoke(call["args"]))
                        except Exception as exc:  # a tool error is an answer the model can act on
                            result = f"tool error: {type(exc).__name__}: {str(exc)[:500]}"
                    self.toolbox.calls.append(call["name"])
                    messages.append(ToolMessage(result, tool_call_id=call.get("id") or call["name"]))
                    if call["name"] == SUBMIT_TOOL and self.toolbox.submitted is not None:
                        sub = self.toolbox.submitted
                        if sub.source.strip():
                            return Proposal(source=sub.source, rationale=sub.rationale, parent_id=sub.parent_id)
                if steps >= self.settings.max_tool_steps:
                    messages.append(HumanMessage("Your tool budget is used up. Reply now with the complete "
                                                 "controller source in one ```python block."))
                continue
            code = extract_code(_content_text(ai))
            if code:
                return Proposal(source=code, rationale="(from the reply text)",
                                parent_id=None)
            nudges += 1
            if nudges > NO_CODE_NUDGES:
                raise AgentError(f"proposer: the model returned no controller code after {nudges} replies")
            messages.append(HumanMessage("That reply contained no controller code. Submit the complete source "
                                         "with submit_controller (or in one ```python block)."))
