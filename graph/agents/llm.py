"""LLM agents over any OpenAI-compatible endpoint (``langchain-openai`` ``ChatOpenAI``).

* ``LLMCritic`` and ``LLMDiagnostician`` answer with structured output (pydantic ``CriticVerdict`` and
  ``Diagnosis``), retried a bounded number of times when the model returns something malformed.
* ``LLMProposer`` works like a coding agent: a tool-calling loop over ``ProposerToolbox`` (the registry's
  tools, the same the MCP server serves, plus the run's history) that ends with ``submit_controller``. Its
  prompt carries the archive's parent and inspirations (their curves, fitness, diagnoses and code); a
  proposal is either a complete rewrite or SEARCH/REPLACE blocks against the parent, applied here and
  re-checked (a block that does not apply, or a result that breaks the static rules, goes back to the model).
* ``EnsembleProposer`` plays the proposer with several models: a UCB bandit picks the model of each proposal
  by the fitness gains (child over parent) that each model's earlier candidates produced.

Endpoint failures (unreachable URL, rejected key, unknown model) raise ``AgentError`` with one clear line;
the graph stops cleanly on it, keeping everything recorded so far.
"""

from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from typing import Any, TypeVar

from autotts_graph.tools.registry import ToolSpec
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from .. import evidence
from ..configuration import RoleSettings
from .roles import (
    CriticInput,
    CriticVerdict,
    DiagnoseInput,
    Diagnosis,
    HistoryEntry,
    Proposal,
    ProposerInput,
    Spend,
)
from .tools import SUBMIT_TOOL, ProposerToolbox, SubmitInput

T = TypeVar("T", bound=BaseModel)
STRUCTURED_TRIES = 3
NO_CODE_NUDGES = 2
DIFF_RETRIES = 2  # diffs that do not apply (or break the static rules) sent back before giving up
_CODE_BLOCK = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


class AgentError(Exception):
    """An agent cannot continue (endpoint unreachable, key rejected, unusable output after retries)."""


PROMPT_TRACES = 8  # sampled traces shown to the LLM diagnostician
PROMPT_TRACE_CHARS = 3_000  # each shortened the one way (tools/traces.py), so its finish step stays in


def load_prompt(name: str, tools: list[ToolSpec] | None = None) -> str:
    """A prompt from ``graph/prompts/NAME.md`` with the controller contract (the text the MCP server serves,
    ``tools/contract.py``) and, for an agent with tools, the list of its tools filled in."""
    from autotts_graph.tools.contract import contract_text
    from autotts_graph.tools.registry import tool_list_markdown

    text = resources.files("autotts_graph.graph.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    if "{tools}" in text:
        if not tools:
            raise ValueError(f"the {name} prompt lists tools: give them")
        text = text.replace("{tools}", tool_list_markdown(tools))
    return text.replace("{contract}", contract_text())


def _trace_text(trace: Any) -> str:
    """One sampled trace as compact JSON for a prompt: head and tail within PROMPT_TRACE_CHARS."""
    from autotts_graph.tools.traces import cap_steps

    steps, _, _ = cap_steps(trace.steps, max_chars=PROMPT_TRACE_CHARS)
    return json.dumps({**trace.model_dump(mode="json"), "steps": steps}, separators=(",", ":"), default=str)


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
            parts.append("## Sampled traces\n" + "\n".join(_trace_text(t) for t in inp.traces[:PROMPT_TRACES]))
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


_DIFF_BLOCK = re.compile(r"<{5,9} SEARCH[^\n]*\n(.*?)\n?={5,9}[ \t]*\n(.*?)\n?>{5,9} REPLACE", re.DOTALL)


class DiffError(ValueError):
    """SEARCH/REPLACE blocks that cannot be applied to the parent, or whose result breaks the static rules."""


def parse_diff(text: str) -> list[tuple[str, str]]:
    """The SEARCH/REPLACE blocks of a reply, in order (empty when there are none)::

        <<<<<<< SEARCH
        lines of the parent, verbatim
        =======
        their replacement
        >>>>>>> REPLACE
    """
    return [(m.group(1), m.group(2)) for m in _DIFF_BLOCK.finditer(text or "")]


def _find_lines(source: str, search: str) -> list[tuple[int, int]]:
    """Character spans of ``source`` whose lines equal ``search``'s lines up to trailing whitespace."""
    lines = source.splitlines(keepends=True)
    want = [line.rstrip() for line in search.splitlines()]
    if not want:
        return []
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out = []
    for i in range(len(lines) - len(want) + 1):
        if all(lines[i + k].rstrip() == want[k] for k in range(len(want))):
            out.append((starts[i], starts[i + len(want)]))
    return out


def apply_diff(source: str, blocks: list[tuple[str, str]]) -> str:
    """Apply SEARCH/REPLACE blocks one after another; each search must match exactly one place (verbatim,
    else line by line up to trailing whitespace). DiffError names the block that does not apply."""
    if not blocks:
        raise DiffError("no SEARCH/REPLACE blocks")
    for n, (search, replace) in enumerate(blocks, 1):
        if not search.strip():
            raise DiffError(f"block {n}: the SEARCH part is empty; quote the parent's lines to replace")
        count = source.count(search)
        if count == 1:
            source = source.replace(search, replace, 1)
            continue
        if count > 1:
            raise DiffError(f"block {n}: the SEARCH part matches {count} places; quote more lines so it is unique")
        spans = _find_lines(source, search)
        if len(spans) != 1:
            first = search.strip().splitlines()[0][:80]
            raise DiffError(f"block {n}: the SEARCH part ({first!r}...) "
                            + ("is not in the parent" if not spans else f"matches {len(spans)} places")
                            + "; copy the parent's lines exactly")
        a, b = spans[0]
        tail = "\n" if source[a:b].endswith("\n") and not replace.endswith("\n") else ""
        source = source[:a] + replace + tail + source[b:]
    return source


def resolve_source(text: str, parent: HistoryEntry | None) -> tuple[str, str]:
    """(complete source, how it was made) from a submission or reply: a full rewrite, or a diff applied to the
    parent and re-checked statically. DiffError when the diff does not apply or breaks the rules."""
    blocks = parse_diff(text)
    if not blocks:
        code = extract_code(text) if "```" in (text or "") else text
        if not code or "class " not in code:
            raise DiffError("no controller source and no SEARCH/REPLACE blocks")
        return code if code.endswith("\n") else code + "\n", "full rewrite"
    if parent is None or not parent.source:
        raise DiffError("there is no parent to apply SEARCH/REPLACE blocks to: submit the complete source")
    from autotts_graph.sandbox.static_checks import check_source

    source = apply_diff(parent.source, blocks)
    report = check_source(source)
    if report.errors:
        raise DiffError("the patched source breaks the controller rules: " + "; ".join(report.errors[:3]))
    return source, f"diff against {parent.candidate_id} ({len(blocks)} block{'s' if len(blocks) > 1 else ''})"


def _entry_summary(h: HistoryEntry, with_source: bool, max_chars: int = 12000) -> str:
    """A parent or an inspiration for the prompt: fitness, niche, mean curve, diagnosis, code."""
    from .. import scoring

    head = [f"### {h.candidate_id} ({h.name or 'unnamed'}, generation {h.round})"]
    facts = []
    if h.fitness is not None:
        facts.append(f"fitness {h.fitness:+.2f} (mean margin over the baseline frontier, points)")
    if h.niche:
        facts.append(f"niche {h.niche}")
    if h.stage is not None:
        facts.append("fully evaluated" if h.stage >= 2 else "screened only")
    if facts:
        head.append("; ".join(facts))
    mc = [r for r in scoring.mean_curve(h.curve) if r[0] is not None]
    if mc:
        head.append("mean curve: " + ", ".join(f"β={b:g} {a:.1f}% @ {c / 1000:.0f}k" for b, a, c in mc))
    if h.diagnosis is not None:
        head.append(f"diagnosis: {h.diagnosis.summary}" + (f" (actions: {', '.join(h.diagnosis.actions)})"
                                                            if h.diagnosis.actions else ""))
    if with_source and h.source:
        src = h.source if len(h.source) <= max_chars else h.source[:max_chars] + "\n# ... (truncated)"
        head.append(f"```python\n{src}\n```")
    return "\n".join(head)


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
        if inp.parent is not None:
            lines.append("## Parent (the archive chose it for you: improve on it)\n" + _entry_summary(inp.parent, True))
        if inp.inspirations:
            parts = [_entry_summary(h, i < 3) for i, h in enumerate(inp.inspirations)]
            lines.append("## Inspirations (the archive's best and most different programs)\n" + "\n\n".join(parts))
        if inp.feedback:
            lines.append("## Your last attempt was sent back\n" + "\n".join(f"- {f}" for f in inp.feedback))
            if inp.last_source:
                lines.append(f"```python\n{inp.last_source}\n```")
        if inp.parent is not None and inp.parent.source:
            lines.append("Finish by calling submit_controller with either the complete source (a full rewrite) or "
                         "SEARCH/REPLACE blocks against the parent (a diff), each block written as\n"
                         "<<<<<<< SEARCH\n(lines of the parent, verbatim)\n=======\n(their replacement)\n"
                         ">>>>>>> REPLACE")
        else:
            lines.append("Finish by calling submit_controller with the complete source.")
        return "\n\n".join(lines)

    def propose(self, inp: ProposerInput) -> Proposal:
        specs = self.toolbox.specs()
        tools = {t.name: t for t in self.toolbox.tools()}
        try:
            bound = self.model.bind_tools(list(tools.values()))
        except NotImplementedError:
            bound = self.model
        messages: list[BaseMessage] = [SystemMessage(load_prompt("proposer", specs)), HumanMessage(self._task(inp))]
        nudges = 0
        steps = 0
        bad_diffs = 0
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
                    if call["name"] == SUBMIT_TOOL:
                        # The submission is read from this call's own arguments (lanes share the toolbox).
                        try:
                            sub = SubmitInput.model_validate(call["args"])
                        except ValidationError:
                            continue  # the tool already answered with the invalid argument
                        try:
                            source, how = resolve_source(sub.source, inp.parent)
                        except DiffError as exc:
                            bad_diffs = self._diff_failed(messages, exc, bad_diffs)
                            continue
                        return self._proposal(source, how, sub.rationale, sub.parent_id, inp)
                if steps >= self.settings.max_tool_steps:
                    messages.append(HumanMessage("Your tool budget is used up. Reply now with the complete "
                                                 "controller source in one ```python block."))
                continue
            text = _content_text(ai)
            if parse_diff(text) or extract_code(text):
                try:
                    source, how = resolve_source(text, inp.parent)
                except DiffError as exc:
                    bad_diffs = self._diff_failed(messages, exc, bad_diffs)
                    continue
                return self._proposal(source, how, "(from the reply text)", None, inp)
            nudges += 1
            if nudges > NO_CODE_NUDGES:
                raise AgentError(f"proposer: the model returned no controller code after {nudges} replies")
            messages.append(HumanMessage("That reply contained no controller code. Submit the complete source "
                                         "with submit_controller (or in one ```python block)."))

    def _diff_failed(self, messages: list[BaseMessage], exc: DiffError, count: int) -> int:
        """Send an unusable diff back to the model; AgentError after ``DIFF_RETRIES`` of them."""
        count += 1
        if count > DIFF_RETRIES:
            raise AgentError(f"proposer: {count} submissions could not be used ({exc})")
        messages.append(HumanMessage(f"Your submission could not be used: {exc}. Submit again: the complete "
                                     "source, or SEARCH/REPLACE blocks that quote the parent's lines verbatim."))
        return count

    @staticmethod
    def _proposal(source: str, how: str, rationale: str, parent_id: str | None, inp: ProposerInput) -> Proposal:
        if parent_id is None and inp.parent is not None and how.startswith("diff"):
            parent_id = inp.parent.candidate_id
        return Proposal(source=source, rationale=f"[{how}] {rationale}".strip(), parent_id=parent_id)


# --------------------------------------------------------------------------- model ensemble


class ModelBandit:
    """UCB1 over models. A model's reward per candidate is the fitness gain over the candidate's parent
    (``max(0, child - parent)``; a parentless candidate is compared with the best fitness of the history at
    large, and a candidate that failed its checks or crashed earns 0). Untried models go first, in order;
    ties go to the earlier model: the pick is a pure function of the history."""

    def __init__(self, models: list[str], explore: float = 1.0) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)
        self.explore = explore

    def rewards(self, history: list[HistoryEntry]) -> dict[str, list[float]]:
        """Per model, the rewards of its candidates in the history (attributed by ``origin == 'llm:<model>'``)."""
        by_id = {h.candidate_id: h for h in history}
        scored = [h.fitness for h in history if h.fitness is not None]
        floor = max(scored) if scored else 0.0
        out: dict[str, list[float]] = {m: [] for m in self.models}
        for h in history:
            model = h.origin[4:] if h.origin.startswith("llm:") else None
            if model not in out:
                continue
            if h.fitness is None:
                out[model].append(0.0)
                continue
            parent = by_id.get(h.parent) if h.parent else None
            base = parent.fitness if parent is not None and parent.fitness is not None else floor
            out[model].append(max(0.0, h.fitness - base))
        return out

    def pick(self, history: list[HistoryEntry]) -> str:
        rewards = self.rewards(history)
        for m in self.models:
            if not rewards[m]:
                return m
        total = sum(len(r) for r in rewards.values())
        return max(self.models, key=lambda m: (sum(rewards[m]) / len(rewards[m])
                                               + self.explore * math.sqrt(2 * math.log(total) / len(rewards[m])),
                                               -self.models.index(m)))


class EnsembleProposer:
    """Several LLM proposers (one per model); a bandit picks the model of each proposal.

    ``name`` is the picked model's ``llm:<model>`` while (and after) it proposes, so the graph records each
    candidate's origin per model: the bandit reads its rewards back from the history, which survives a
    resume. ``spend()`` is the sum, ``spend_by_model()`` the line of each model for the spend ledger.
    """

    role = "proposer"

    def __init__(self, members: dict[str, LLMProposer], explore: float = 1.0) -> None:
        self.members = dict(members)
        self.bandit = ModelBandit(list(self.members), explore)
        self.name = f"llm:{next(iter(self.members))}"
        self.picks: list[str] = []

    def spend(self) -> Spend:
        total = Spend()
        for m in self.members.values():
            s = m.spend()
            total.llm_tokens += s.llm_tokens
            total.usd += s.usd
            total.calls += s.calls
        return total

    def spend_by_model(self) -> dict[str, Spend]:
        return {model: m.spend() for model, m in self.members.items()}

    def propose(self, inp: ProposerInput) -> Proposal:
        model = self.bandit.pick(inp.history)
        self.picks.append(model)
        self.name = f"llm:{model}"
        proposal = self.members[model].propose(inp)
        proposal.rationale = f"[model {model}] {proposal.rationale}".strip()
        return proposal


def make_ensemble(settings: RoleSettings, toolbox: ProposerToolbox, chat_models: dict[str, BaseChatModel] | None = None,
                  explore: float = 1.0) -> EnsembleProposer:
    """An ensemble over ``settings.model`` plus ``settings.models`` (each with the role's other settings);
    ``chat_models`` replaces ChatOpenAI per model name (tests, custom models)."""
    names = [settings.model, *[m for m in getattr(settings, "models", []) or [] if m != settings.model]]
    members = {}
    for name in names:
        own = settings.model_copy(update={"model": name})
        model = (chat_models or {}).get(name) or make_chat_model(own, "proposer")
        member = LLMProposer(model, toolbox, own)
        member.name = f"llm:{name}"
        members[name] = member
    return EnsembleProposer(members, explore)
