"""The LLM roles over any OpenAI-compatible endpoint (calls through ``client.py``, paths chosen by the
endpoint's probed ``capabilities``).

* ``LLMCritic`` and ``LLMDiagnostician`` answer with structured output (``CriticVerdict``, ``Diagnosis``):
  a forced tool call where the endpoint supports it, else a JSON-schema response format, else plain text
  with the schema in the prompt; malformed answers are sent back a bounded number of times.
* ``LLMProposer`` works in one of two modes. With tools, like a coding agent: a tool-calling loop over
  ``ProposerToolbox`` (the registry's tools, the same the MCP server serves, plus the run's history) that
  ends with ``submit_controller``. Without tools (``--proposer-tools off``, or ``auto`` on an endpoint whose
  tool calls are missing or unbounded): the facts the tools would give (parent, inspirations, diagnosis,
  history, the contract) are in the prompt and the answer is a fenced block, a complete controller or
  SEARCH/REPLACE blocks against the parent (``diff_edit.py``). Either way a diff that does not apply, or a
  reply without code, goes back to the model a bounded number of times.

A problem with one answer raises ``CallFailed`` (that proposal, verdict or diagnosis fails, recorded with its
reason); an unusable endpoint raises ``AgentError`` (the run stops cleanly, resumable).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from ..configuration import RoleSettings
from .capabilities import EndpointCapabilities
from .client import CallBudget, CallFailed, CallRecord, LLMClient, content_text
from .diff_edit import DiffError, extract_code, parse_diff, resolve_source
from .prompting import (
    SHRINK_LEVELS,
    Shrink,
    critic_body,
    diagnostician_body,
    load_prompt,
    proposer_task,
    structured_instruction,
)
from .roles import (
    CriticInput,
    CriticVerdict,
    DiagnoseInput,
    Diagnosis,
    Proposal,
    ProposerInput,
    Spend,
)
from .tools import HISTORY_TOOL, SUBMIT_TOOL, ProposerToolbox, SubmitInput

T = TypeVar("T", bound=BaseModel)
STRUCTURED_TRIES = 3
NO_CODE_NUDGES = 2
DIFF_RETRIES = 2  # diffs that do not apply (or break the static rules) sent back before giving up
# The tools a proposer keeps when the whole toolbox's schemas would take too much of a small context.
CORE_TOOLS = (SUBMIT_TOOL, "validate_controller", HISTORY_TOOL, "evaluate_controller", "controller_contract")
TOOLS_SHARE = 0.4  # the share of the prompt room the tool schemas may take
LEVELS = len(SHRINK_LEVELS)


@dataclass
class _Tries:
    """What one proposal has sent back so far: replies without code, diffs that did not apply."""

    nudges: int = 0
    bad_diffs: int = 0


class _LLMRole:
    """Shared plumbing: the role's client (bounded, fitted, accounted calls) and structured answers."""

    role = "agent"

    def __init__(self, model: BaseChatModel, settings: RoleSettings | None = None,
                 caps: EndpointCapabilities | None = None) -> None:
        self.settings = settings or RoleSettings(kind="llm")
        self.client = LLMClient(model, self.settings, self.role,
                                caps or EndpointCapabilities.assumed(self.settings.model))
        self.name = f"llm:{self.client.model_name}"

    @property
    def model(self) -> BaseChatModel:
        return self.client.model

    def spend(self) -> Spend:
        """Tokens, dollars and calls so far."""
        return self.client.spend()

    def take_calls(self) -> list[CallRecord]:
        """The calls made since the last take."""
        return self.client.take_records()

    def set_budget(self, budget: CallBudget) -> None:
        """What the run's budget leaves for this role's next calls."""
        self.client.budget = budget

    def _answer(self, work: Callable[[], T]) -> T:
        """``work()``, with the reason of a failed answer kept on its last call's record."""
        try:
            return work()
        except CallFailed as exc:
            self.client.mark_failure(exc)
            raise

    def _structured(self, schema: type[T], build: Callable[[Shrink], tuple[str, str]]) -> T:
        """A structured answer by the endpoint's best method, with bounded retries on malformed answers."""
        method = self.client.caps.structured_method()
        bind: dict[str, Any] = {}
        tools: list[Any] | None = None
        if method == "tool":
            tools, bind = [schema], {"tool_choice": schema.__name__}
        elif method == "json_schema":
            bind = {"response_format": {"type": "json_schema", "json_schema": {
                "name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}}}
        problem = ""
        for _ in range(STRUCTURED_TRIES):
            extra = [HumanMessage(f"Your previous answer was unusable: {problem}. Answer again with a valid "
                                  f"{schema.__name__}.")] if problem else []

            def messages(level: int, extra: list[BaseMessage] = extra) -> list[BaseMessage]:
                system, body = build(SHRINK_LEVELS[level])
                if method == "text":
                    system += structured_instruction(schema)
                return [SystemMessage(system), HumanMessage(body), *extra]

            ai, _ = self.client.invoke_fitted(messages, LEVELS, mode=f"structured:{method}", tools=tools, **bind)
            parsed, problem = parse_structured(ai, schema)
            if parsed is not None:
                return parsed
            # The call went through but its answer is unusable: its record says so (the ledger shows the retry).
            self.client.mark_failure(CallFailed("malformed", f"{self.role}: {problem}"))
        raise CallFailed("malformed", f"{self.role}: the model returned malformed structured output "
                                      f"{STRUCTURED_TRIES} times ({problem})")


def parse_structured(ai: AIMessage, schema: type[T]) -> tuple[T | None, str]:
    """The schema's object from a reply's tool call or its text (the first JSON object in it), or the problem."""
    problem = f"no {schema.__name__} structure in the reply"
    candidates: list[Any] = [c.get("args") for c in (getattr(ai, "tool_calls", None) or [])
                             if c.get("name") in (schema.__name__, None) or len(ai.tool_calls) == 1]
    text = content_text(ai)
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            obj, _ = decoder.raw_decode(text[start:])
        except ValueError:
            continue
        candidates.append(obj)
        break
    for obj in candidates:
        try:
            return schema.model_validate(obj), ""
        except ValidationError as exc:
            first = exc.errors()[0]
            problem = f"{'.'.join(str(x) for x in first['loc']) or schema.__name__}: {first['msg']}"
    return None, problem[:300]


class LLMCritic(_LLMRole):
    """Reviews a proposal against the contract and the history; structured ``CriticVerdict``."""

    role = "critic"

    def review(self, inp: CriticInput) -> CriticVerdict:
        return self._answer(lambda: self._structured(
            CriticVerdict, lambda s: (load_prompt("critic", contract=s.contract), critic_body(inp, s))))


class LLMDiagnostician(_LLMRole):
    """Explains an evaluated (or crashed) controller; structured ``Diagnosis``."""

    role = "diagnostician"

    def diagnose(self, inp: DiagnoseInput) -> Diagnosis:
        diag = self._answer(lambda: self._structured(
            Diagnosis, lambda s: (load_prompt("diagnostician", contract=s.contract), diagnostician_body(inp, s))))
        if inp.error_kind and not diag.crashed:
            diag.crashed = True
        return diag


class LLMProposer(_LLMRole):
    """Writes a controller: with tools (a coding agent's loop) or without (one fenced answer); see the module."""

    role = "proposer"

    def __init__(self, model: BaseChatModel, toolbox: ProposerToolbox, settings: RoleSettings | None = None,
                 caps: EndpointCapabilities | None = None) -> None:
        super().__init__(model, settings, caps)
        self.toolbox = toolbox
        self.modes: list[str] = []  # the mode of each proposal (tools / no tools), for tests and logs

    def uses_tools(self) -> bool:
        """Whether the next proposal runs the tool loop (``--proposer-tools`` and the endpoint's probe)."""
        return self.client.caps.proposer_uses_tools(self.settings.tools)

    def propose(self, inp: ProposerInput) -> Proposal:
        if self.uses_tools():
            self.modes.append("tools")
            return self._answer(lambda: self._propose_with_tools(inp))
        self.modes.append("no tools")
        return self._answer(lambda: self._propose_without_tools(inp))

    # ---- without tools ------------------------------------------------------------------------------

    def _propose_without_tools(self, inp: ProposerInput) -> Proposal:
        dialogue: list[BaseMessage] = []
        tries = _Tries()

        def messages(level: int) -> list[BaseMessage]:
            s = SHRINK_LEVELS[level]
            # Only the latest reply and what was said about it: older turns are superseded (and cost context).
            return [SystemMessage(load_prompt("proposer_no_tools", contract=s.contract)),
                    HumanMessage(proposer_task(inp, s, tools=False)), *dialogue[-2:]]

        while True:
            ai, _ = self.client.invoke_fitted(messages, LEVELS, mode="text")
            dialogue.append(AIMessage(content=content_text(ai)))
            proposal = self._from_text(content_text(ai), inp, dialogue, tries, "That reply contained no controller "
                                       "code. Answer with the complete controller source in one ```python block.")
            if proposal is not None:
                return proposal

    # ---- with tools ---------------------------------------------------------------------------------

    def _bound_tools(self) -> dict[str, Any]:
        """The tools to bind: all of them, or the core few when all would take too much of a small context."""
        tools = {t.name: t for t in self.toolbox.tools()}
        room = self.client.room()
        if room is None:
            return tools
        schemas = self.client.prompt_tokens([], list(tools.values()))
        if schemas > TOOLS_SHARE * room:
            tools = {n: t for n, t in tools.items() if n in CORE_TOOLS}
        return tools

    def _fit_dialogue(self, messages: list[BaseMessage], tools: list[Any] | None) -> None:
        """Make a growing tool dialogue fit: older tool results are left out first (the latest stays)."""
        for m in messages[2:-2]:
            if self.client.fits(messages, tools):
                return
            if isinstance(m, ToolMessage) and not str(m.content).startswith("(left out"):
                m.content = "(left out to fit the model's context)"
        if not self.client.fits(messages, tools):
            raise CallFailed("context", "proposer: the tool dialogue no longer fits the model's context "
                                        f"({self.client.caps.context_tokens} tokens)")

    def _propose_with_tools(self, inp: ProposerInput) -> Proposal:
        specs = self.toolbox.specs()
        tools = self._bound_tools()
        bound_specs = [s for s in specs if s.name in tools]

        def opening(level: int) -> list[BaseMessage]:
            s = SHRINK_LEVELS[level]
            return [SystemMessage(load_prompt("proposer", bound_specs, contract=s.contract)),
                    HumanMessage(proposer_task(inp, s, tools=True))]

        tool_list = list(tools.values())
        messages = self.client.fit(opening, LEVELS, tool_list).messages
        steps = 0
        tries = _Tries()
        while True:
            with_tools = steps < self.settings.max_tool_steps
            self._fit_dialogue(messages, tool_list if with_tools else None)
            ai = self.client.invoke(messages, mode="tools" if with_tools else "text",
                                    tools=tool_list if with_tools else None,
                                    tool_choice="auto" if with_tools else None)
            messages.append(ai)
            calls = getattr(ai, "tool_calls", None) or []
            if calls:
                steps += 1
                if steps > self.settings.max_tool_steps + NO_CODE_NUDGES:
                    raise CallFailed("no_code", f"proposer: the model kept calling tools without submitting code "
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
                    if call["name"] == SUBMIT_TOOL:
                        # The submission is read from this call's own arguments (lanes share the toolbox).
                        try:
                            sub = SubmitInput.model_validate(call["args"])
                        except ValidationError:
                            continue  # the tool already answered with the invalid argument
                        try:
                            source, how = resolve_source(sub.source, inp.parent)
                        except DiffError as exc:
                            tries.bad_diffs = self._diff_failed(messages, exc, tries.bad_diffs)
                            continue
                        return self._proposal(source, how, sub.rationale, sub.parent_id, inp)
                if steps >= self.settings.max_tool_steps:
                    messages.append(HumanMessage("Your tool budget is used up. Reply now with the complete "
                                                 "controller source in one ```python block."))
                continue
            proposal = self._from_text(content_text(ai), inp, messages, tries, "That reply contained no controller "
                                       "code. Submit the complete source with submit_controller (or in one "
                                       "```python block).")
            if proposal is not None:
                return proposal

    def _from_text(self, text: str, inp: ProposerInput, messages: list[BaseMessage], tries: _Tries,
                   nudge: str) -> Proposal | None:
        """The proposal in a reply's text (code or a diff); None after sending the reply back (a diff that does
        not apply, or no code: ``nudge``); CallFailed once the retries of either are used up."""
        if parse_diff(text) or extract_code(text):
            try:
                source, how = resolve_source(text, inp.parent)
            except DiffError as exc:
                tries.bad_diffs = self._diff_failed(messages, exc, tries.bad_diffs)
                return None
            return self._proposal(source, how, "(from the reply text)", None, inp)
        tries.nudges += 1
        if tries.nudges > NO_CODE_NUDGES:
            raise CallFailed("no_code", f"proposer: the model returned no controller code after {tries.nudges} "
                                        "replies")
        messages.append(HumanMessage(nudge))
        return None

    def _diff_failed(self, messages: list[BaseMessage], exc: DiffError, count: int) -> int:
        """Send an unusable diff back to the model; CallFailed after ``DIFF_RETRIES`` of them."""
        count += 1
        if count > DIFF_RETRIES:
            raise CallFailed("no_code", f"proposer: {count} submissions could not be used ({exc})")
        messages.append(HumanMessage(f"Your submission could not be used: {exc}. Submit again: the complete "
                                     "source, or SEARCH/REPLACE blocks that quote the parent's lines verbatim."))
        return count

    @staticmethod
    def _proposal(source: str, how: str, rationale: str, parent_id: str | None, inp: ProposerInput) -> Proposal:
        if parent_id is None and inp.parent is not None and how.startswith("diff"):
            parent_id = inp.parent.candidate_id
        return Proposal(source=source, rationale=f"[{how}] {rationale}".strip(), parent_id=parent_id)
