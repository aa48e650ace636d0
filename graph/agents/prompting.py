"""The prompts of the LLM roles, built to fit a context window.

Each role's prompt is built at a *shrink level*: level 0 carries everything; each next level leaves out more,
in an order that keeps what matters most — first the inspirations' code, then inspirations, then traces and
per-question detail, then older history, and last the optional parts of the controller contract (the workflow
notes, the scoring explanation, the helpers, finally the complete example; an agent with tools then reads the
contract through its ``controller_contract`` tool). The parent, the feedback on the last attempt and, for an
agent without tools, the contract's rules are never left out. ``LLMClient.fit`` picks the first level that fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from autotts_graph.tools.registry import ToolSpec
from pydantic import BaseModel

from .. import evidence
from .roles import CriticInput, DiagnoseInput, HistoryEntry, ProposerInput

PROMPT_TRACES = 8  # sampled traces shown to the LLM diagnostician
PROMPT_TRACE_CHARS = 3_000  # each shortened the one way (tools/traces.py), so its finish step stays in
# Contract sections left out at contract levels 1, 2 and 3 (cumulative): never its rules.
_CONTRACT_DROPS = (("Workflow with the tools", "What you are building"), ("How you are scored", "Helpers"),
                   ("A complete example",))


@dataclass(frozen=True)
class Shrink:
    """How much of each part a prompt carries (see the module docstring)."""

    inspirations: int = 16
    inspiration_code: int = 3
    history: int = 12
    critic_history: int = 6
    traces: int = PROMPT_TRACES
    trace_chars: int = PROMPT_TRACE_CHARS
    outcomes: int = 40
    source_chars: int = 12_000
    contract: int = 0


SHRINK_LEVELS: tuple[Shrink, ...] = (
    Shrink(),
    Shrink(inspiration_code=1, critic_history=4),
    Shrink(inspirations=2, inspiration_code=0, critic_history=3, traces=4, trace_chars=1_500),
    Shrink(inspirations=0, inspiration_code=0, critic_history=2, traces=2, trace_chars=800, outcomes=20, history=6),
    Shrink(inspirations=0, inspiration_code=0, critic_history=1, traces=1, trace_chars=600, outcomes=12, history=3,
           contract=1, source_chars=6_000),
    Shrink(inspirations=0, inspiration_code=0, critic_history=0, traces=1, trace_chars=400, outcomes=8, history=1,
           contract=2, source_chars=4_000),
    Shrink(inspirations=0, inspiration_code=0, critic_history=0, traces=0, outcomes=4, history=0, contract=3,
           source_chars=3_000),
    Shrink(inspirations=0, inspiration_code=0, critic_history=0, traces=0, outcomes=4, history=0, contract=4,
           source_chars=3_000),
)


CONTRACT_POINTER = ("## The controller contract\nCall `controller_contract` for the rules a controller follows, the "
                    "replay API of the question object and a complete example; follow them exactly.")


def contract_at(level: int, tools: bool = False) -> str:
    """The controller contract (the text the MCP server serves, ``tools/contract.py``) without the optional
    sections of ``level`` (0: all of it). At level 4 an agent with tools gets a pointer to its
    ``controller_contract`` tool instead; without tools the rules always stay (level 4 is level 3)."""
    from autotts_graph.tools.contract import contract_text

    if level >= 4 and tools:
        return CONTRACT_POINTER
    text = contract_text()
    if level <= 0:
        return text
    drop = {title for titles in _CONTRACT_DROPS[:level] for title in titles}
    head, *sections = text.split("\n## ")
    kept = [s for s in sections if s.split("\n", 1)[0].strip() not in drop]
    return "\n## ".join([head, *kept])


def load_prompt(name: str, tools: list[ToolSpec] | None = None, contract: int = 0) -> str:
    """A prompt from ``graph/prompts/NAME.md`` with the controller contract (at ``contract`` level) and, for an
    agent with tools, the list of its tools filled in."""
    from autotts_graph.tools.registry import tool_list_markdown

    text = resources.files("autotts_graph.graph.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    if "{tools}" in text:
        if not tools:
            raise ValueError(f"the {name} prompt lists tools: give them")
        text = text.replace("{tools}", tool_list_markdown(tools))
    return text.replace("{contract}", contract_at(contract, tools=bool(tools)))


def structured_instruction(schema: type[BaseModel]) -> str:
    """What a model without structured output is told: one JSON object of the schema, nothing else."""
    return (f"\n\nAnswer with one JSON object of this JSON schema ({schema.__name__}) and nothing else:\n"
            + json.dumps(schema.model_json_schema(), separators=(",", ":")))


def trace_text(trace: Any, max_chars: int = PROMPT_TRACE_CHARS) -> str:
    """One sampled trace as compact JSON for a prompt: head and tail within ``max_chars``."""
    from autotts_graph.tools.traces import cap_steps

    steps, _, _ = cap_steps(trace.steps, max_chars=max_chars)
    return json.dumps({**trace.model_dump(mode="json"), "steps": steps}, separators=(",", ":"), default=str)


def _cut(source: str, max_chars: int) -> str:
    return source if len(source) <= max_chars else source[:max_chars] + "\n# ... (truncated)"


def entry_summary(h: HistoryEntry, with_source: bool, max_chars: int = 12_000) -> str:
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
        head.append(f"```python\n{_cut(h.source, max_chars)}\n```")
    return "\n".join(head)


DIFF_FORMAT = ("<<<<<<< SEARCH\n(lines of the parent, verbatim)\n=======\n(their replacement)\n>>>>>>> REPLACE")


def proposer_task(inp: ProposerInput, shrink: Shrink, tools: bool) -> str:
    """The proposer's task: round, environments, history, baselines, diagnosis, the archive's parent and
    inspirations, the feedback on the last attempt, and how to answer (a tool call, or a fenced block)."""
    lines = [f"Round {inp.round} (attempt {inp.attempt + 1}). Search environments: {', '.join(inp.search_envs)}."
             f" The evaluation sweeps β over {inp.betas}."]
    if inp.history:
        if shrink.history:
            lines.append("## Earlier candidates" + (" (use read_history for details)" if tools else ""))
            for h in inp.history[-shrink.history:]:
                acc = f"{h.search_accuracy:.2f}%" if h.search_accuracy is not None else "-"
                note = f" ({h.notes[0][:160]})" if h.notes and h.status != "evaluated" else ""
                lines.append(f"- {h.candidate_id} round {h.round} {h.name}: {h.status}, best search accuracy "
                             f"{acc}{note}")
        best = max((h for h in inp.history if h.search_accuracy is not None),
                   key=lambda h: h.search_accuracy or 0.0, default=None)
        if best is not None and (inp.parent is None or best.candidate_id != inp.parent.candidate_id):
            lines.append(f"## Best so far: {best.candidate_id}\n{evidence.format_curve(best.curve)}"
                         + (f"\n```python\n{_cut(best.source, shrink.source_chars)}\n```" if shrink.history else ""))
    else:
        lines.append("No candidates yet: this is the first proposal of the run.")
    if inp.baselines and shrink.history:
        lines.append("## Baselines on the search environments\n" + evidence.format_baselines(inp.baselines))
    if inp.diagnosis is not None:
        lines.append("## Latest diagnosis\n" + json.dumps(inp.diagnosis.model_dump(mode="json"),
                                                         indent=1 if shrink.history else None))
    if inp.parent is not None:
        lines.append("## Parent (the archive chose it for you: improve on it)\n"
                     + entry_summary(inp.parent, True, max(shrink.source_chars, len(inp.parent.source))))
    shown = inp.inspirations[:shrink.inspirations]
    if shown:
        parts = [entry_summary(h, i < shrink.inspiration_code, shrink.source_chars) for i, h in enumerate(shown)]
        lines.append("## Inspirations (the archive's best and most different programs)\n" + "\n\n".join(parts))
    if inp.feedback:
        lines.append("## Your last attempt was sent back\n" + "\n".join(f"- {f}" for f in inp.feedback))
        if inp.last_source:
            lines.append(f"```python\n{_cut(inp.last_source, shrink.source_chars)}\n```")
    has_parent = inp.parent is not None and bool(inp.parent.source)
    if tools:
        lines.append("Finish by calling submit_controller with either the complete source (a full rewrite) or "
                     "SEARCH/REPLACE blocks against the parent (a diff), each block written as\n" + DIFF_FORMAT
                     if has_parent else "Finish by calling submit_controller with the complete source.")
    else:
        lines.append("Answer with the complete controller source in one ```python block"
                     + (", or with SEARCH/REPLACE blocks against the parent in one fenced block, each written as\n"
                        + DIFF_FORMAT if has_parent else "."))
    return "\n\n".join(lines)


def critic_body(inp: CriticInput, shrink: Shrink) -> str:
    """The critic's view of a proposal: its source, the validation and earlier candidates."""
    shown = inp.history[-shrink.critic_history:] if shrink.critic_history else []
    earlier = "\n\n".join(f"### {h.candidate_id} ({h.name}, {h.status})\n```python\n"
                          f"{_cut(h.source, shrink.source_chars)}\n```" for h in shown) or "(none)"
    schedule = json.dumps(inp.schedule, indent=None)[:4000 if shrink.history >= 6 else 800]
    return (f"## Proposal\n```python\n{inp.source}\n```\n\n## Validation\nerrors: {inp.check_errors or 'none'}\n"
            f"warnings: {inp.check_warnings or 'none'}\nschedule over β: {schedule}\n\n"
            f"## Earlier candidates of this run\n{earlier}")


def _verdict(o) -> str:
    """Whether a question's modal answer was correct, never the gold answer itself: what reaches an LLM may reach
    the proposer, and a proposer that learns the answers could write them into a controller."""
    if o.modal_answer is None:
        return "none"
    return f"{o.modal_answer!r} ({'correct' if o.modal_answer == o.gold else 'wrong'})"


def diagnostician_body(inp: DiagnoseInput, shrink: Shrink) -> str:
    """The diagnostician's evidence: the source, then the crash, or the curve, baselines, weakest questions and
    sampled traces."""
    parts = [f"## Controller {inp.candidate_id}\n```python\n{inp.source}\n```"]
    if inp.error_kind:
        parts.append(f"## The evaluation failed: {inp.error_kind}\n{inp.error or ''}")
    else:
        parts.append(f"## Scaling curve (search environments)\n{evidence.format_curve(inp.curve)}")
        parts.append(f"## Baselines\n{evidence.format_baselines(inp.baselines) or '(none)'}")
        weak = sorted(inp.outcomes, key=lambda o: o.accuracy)[:shrink.outcomes]
        parts.append("## Weakest questions (accuracy over seeds)\n" + "\n".join(
            f"  {o.env} q{o.question_index} β={o.beta}: {o.accuracy:.2f}, {o.mean_tokens:,.0f} tokens, "
            f"modal answer {_verdict(o)}" for o in weak))
        if shrink.traces:
            parts.append("## Sampled traces\n" + "\n".join(trace_text(t, shrink.trace_chars)
                                                           for t in inp.traces[:shrink.traces]))
    return "\n\n".join(parts)
