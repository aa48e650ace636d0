"""Scripted agent roles and a recording fake chat model for graph tests (importable by subprocesses too)."""

from __future__ import annotations

import json
import os
from typing import Any

from autotts_graph.graph.agents.roles import (
    CriticInput,
    CriticVerdict,
    DiagnoseInput,
    Diagnosis,
    FailureMode,
    Proposal,
    ProposerInput,
    Spend,
)
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage

TEMPLATE = '''"""Scripted test controller {name}."""

from autotts_runtime import Controller, majority, safe_probe_more, safe_probe_new


class {cls}(Controller):
    NAME = "{name}"

    def schedule(self, beta):
        return {{"width": max(1, min(64, round({w0} + {w1} * beta))), "depth": max(1, round(1 + {d1} * beta))}}

    def solve(self, question):
        rec = self.trace
        rec.record("start", goal="probe a few branches", input=dict(self.params))
{extra}        latest = []
        for i in range(self.params["width"]):
            opened = safe_probe_new(question)
            if opened is None:
                break
            answer, _, finished = opened
            for _ in range(self.params["depth"] - 1):
                if finished:
                    break
                more = safe_probe_more(question, i)
                if more is None:
                    break
                answer, finished = more
            latest.append(answer)
            rec.record("forward", output={{"branch": i, "answer": answer}})
        winner = majority([a for a in latest if a != "ERR"]) or majority(latest)
        rec.record("finish", output={{"answer": winner}})
        return winner
'''

CRASH = "        if self.beta == 0.2:\n            raise RuntimeError('scripted crash at beta 0.2')\n"
HANG = "        if self.beta == 0.2:\n            while True:\n                pass\n"
NONMONO = None  # marker: schedule whose width falls with beta
# Passes every static check but remembers earlier solves: the counterfactual audit must flag it.
CHEAT = ("        MEMORY.append(1)\n        if len(MEMORY) > 3:\n"
         "            self.params = dict(self.params, width=1)\n")


def controller(n: int, extra: str = "", nonmonotone: bool = False) -> str:
    """A valid controller source that differs per n; ``extra`` is inserted at the top of solve()."""
    src = TEMPLATE.format(name=f"scripted{n}", cls=f"Scripted{n}", w0=1 + n % 3, w1=3 + n, d1=1 + n % 2, extra=extra)
    if nonmonotone:
        src = src.replace(f"round({1 + n % 3} + {3 + n} * beta)", "round(4 + 8 * beta - 8 * beta * beta)")
    return src


# Knows the answers in advance (every action depends only on what it observed and on its constants): only the
# relabelling audit can tell.
MEMORISED = """\"\"\"Scripted controller {n} with an answer key.\"\"\"

from autotts_runtime import Controller, majority, safe_probe_more, safe_probe_new

KEY = {key!r}


class Memorised{n}(Controller):
    NAME = "memorised{n}"

    def schedule(self, beta):
        return {{"branches": 1 + round(7 * beta)}}

    def solve(self, question):
        self.trace.record("start", goal="read until a known answer shows")
        seen = []
        for _ in range(self.params["branches"]):
            opened = safe_probe_new(question)
            if opened is None:
                break
            answer, index, finished = opened
            while answer not in KEY and not finished:
                seen.append(answer)
                answer, finished = safe_probe_more(question, index)
            seen.append(answer)
            if answer in KEY:
                break
        winner = answer if seen and answer in KEY else majority(seen)
        self.trace.record("finish", output={{"answer": winner}})
        return winner
"""

WEAK = """\"\"\"Scripted weak controller {n}: one branch, one probe.\"\"\"

from autotts_runtime import Controller, safe_probe_new


class Weak{n}(Controller):
    NAME = "weak{n}"

    def schedule(self, beta):
        return {{"width": 1, "tag": {n}}}

    def solve(self, question):
        self.trace.record("start", goal="one probe of one branch")
        opened = safe_probe_new(question)
        answer = None if opened is None else opened[0]
        self.trace.record("finish", output={{"answer": answer}})
        return answer
"""


class ScriptedProposer:
    """Returns sources from a script; by default a new valid controller per call.

    ``script`` items: "ok", "syntax", "nonmonotone", "crash", "hang", "cheat", "import", "repeat" (the first source
    again), "weak" (one branch, one probe: far below any majority vote), "memorised" (an answer key: ``key``).
    Items are consumed in order; ``scripts`` gives one script per slot instead (lanes of a generation call the
    proposer concurrently). After the script
    the proposer keeps returning new valid controllers. ``calls`` records every input.
    ``SCRIPTED_PROPOSER_DELAY`` (+ ``SCRIPTED_SLOT_DELAY`` x slot) seconds are slept per call.
    """

    name = "scripted-proposer"

    def __init__(self, script: list[str] | None = None, seed: int = 0, delay_s: float | None = None,
                 scripts: dict[int, list[str]] | None = None, key: frozenset[str] = frozenset()) -> None:
        self.script = list(script or [])
        self.key = key
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.base = seed * 100
        self.n = self.base
        self.calls: list[ProposerInput] = []
        self.delay_s = delay_s if delay_s is not None else float(os.environ.get("SCRIPTED_PROPOSER_DELAY", "0"))
        self.slot_delay_s = float(os.environ.get("SCRIPTED_SLOT_DELAY", "0"))

    def propose(self, inp: ProposerInput) -> Proposal:
        import time

        self.calls.append(inp)
        if self.delay_s or self.slot_delay_s:
            time.sleep(self.delay_s + self.slot_delay_s * inp.slot)
        script = self.scripts.get(inp.slot, self.script)
        kind = script.pop(0) if script else "ok"
        # Derived from the history (and the slot) so that a resumed process proposes new code, not a copy of
        # round 0's, and the slots of a generation propose different code.
        self.n = self.base + len(inp.history) + 1 + 50 * inp.slot
        if kind == "syntax":
            src = "class Broken(:\n    pass\n"
        elif kind == "import":
            src = "import os\n" + controller(self.n)
        elif kind == "nonmonotone":
            src = controller(self.n, nonmonotone=True)
        elif kind == "crash":
            src = controller(self.n, extra=CRASH)
        elif kind == "hang":
            src = controller(self.n, extra=HANG)
        elif kind == "cheat":
            src = "MEMORY = []\n" + controller(self.n, extra=CHEAT)
        elif kind == "repeat":
            src = controller(self.base + 1)  # the same source as the run's first proposal
        elif kind == "weak":
            src = WEAK.format(n=self.n)
        elif kind == "memorised":
            src = MEMORISED.format(n=self.n, key=self.key)
        else:
            src = controller(self.n)
        return Proposal(source=src, rationale=f"scripted {kind}")

    def spend(self) -> Spend:
        return Spend()


class ScriptedCritic:
    """Approves unless the script says "reject" for this call."""

    name = "scripted-critic"

    def __init__(self, script: list[str] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[CriticInput] = []

    def review(self, inp: CriticInput) -> CriticVerdict:
        self.calls.append(inp)
        kind = self.script.pop(0) if self.script else "approve"
        if kind == "reject":
            return CriticVerdict(approve=False, reasons=["too similar to self-consistency"], max_similarity=0.9)
        return CriticVerdict(approve=True)

    def spend(self) -> Spend:
        return Spend()


class ScriptedDiagnostician:
    """A fixed diagnosis naming the weakest question."""

    name = "scripted-diagnostician"

    def __init__(self) -> None:
        self.calls: list[DiagnoseInput] = []

    def diagnose(self, inp: DiagnoseInput) -> Diagnosis:
        self.calls.append(inp)
        if inp.error_kind:
            return Diagnosis(summary=f"{inp.error_kind}", crashed=True, actions=["fix_crash"],
                             failure_modes=[FailureMode(kind=inp.error_kind, suggestion="remove the failing path")])
        worst = min(inp.outcomes, key=lambda o: o.accuracy, default=None)
        ex = [f"{worst.env} q{worst.question_index}"] if worst else []
        return Diagnosis(summary="scripted", actions=["more_width"],
                         failure_modes=[FailureMode(kind="premature_stop", examples=ex, suggestion="widen")])

    def spend(self) -> Spend:
        return Spend()


class RecordingChatModel(FakeMessagesListChatModel):
    """A fake chat model that supports bind_tools, reports usage, and records every message it was sent."""

    seen: list[list[BaseMessage]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        self.seen.append(list(messages))
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        for gen in result.generations:
            gen.message.usage_metadata = {"input_tokens": 100, "output_tokens": 50, "total_tokens": 150}
        return result


def tool_call(name: str, args: dict, call_id: str = "c1") -> AIMessage:
    """An AI message calling one tool."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])


def fake(responses: list[AIMessage]) -> RecordingChatModel:
    """A fresh recording fake with its own message log."""
    model = RecordingChatModel(responses=responses)
    model.seen = []
    return model


def all_text(model: RecordingChatModel) -> str:
    """Everything the model was sent, as one string."""
    return "\n".join(json.dumps(m.model_dump(), default=str) for msgs in model.seen for m in msgs)


class FunctionChatModel(RecordingChatModel):
    """A fake chat model whose reply is computed from the conversation by ``fn`` (for tool-using agents)."""

    fn: Any = None

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any):
        from langchain_core.outputs import ChatGeneration, ChatResult

        self.seen.append(list(messages))
        msg = self.fn(messages)
        msg.usage_metadata = {"input_tokens": 100, "output_tokens": 50, "total_tokens": 150}
        return ChatResult(generations=[ChatGeneration(message=msg)])


def function_model(fn) -> FunctionChatModel:
    """A fresh FunctionChatModel with its own message log."""
    model = FunctionChatModel(responses=[AIMessage(content="")], fn=fn)
    model.seen = []
    return model


def search_envs_of(messages: list[BaseMessage]) -> list[str]:
    """The search environments named in the proposer's task message."""
    import re

    for m in messages:
        found = re.search(r"Search environments: ([^\n]+?)\. ", str(m.content))
        if found:
            return found.group(1).split(", ")
    raise AssertionError("no search environments in the task")


def tool_using_proposer_fn(counter: list[int]):
    """A proposer conversation through the registry's tools: read_history, get_traces of an evaluated candidate
    (when there is one), validate_controller, evaluate_controller (run defaults), submit_controller."""
    from langchain_core.messages import ToolMessage

    def fn(messages: list[BaseMessage]) -> AIMessage:
        tool_msgs = [m for m in messages if isinstance(m, ToolMessage)]
        n = len(tool_msgs)
        if n == 0:
            return tool_call("read_history", {}, "h1")
        src = controller(40 + counter[0] + len([m for m in messages if isinstance(m, AIMessage)]))
        if n == 1:
            history = json.loads(tool_msgs[-1].content)
            ids = [c["evaluation_id"] for c in history["candidates"] if c["status"] == "evaluated"]
            if ids:
                return tool_call("get_traces", {"evaluation_id": ids[0], "limit": 2}, "t1")
            return tool_call("validate_controller", {"source": src}, "v1")
        if n == 2 and tool_msgs[-1].tool_call_id == "t1":
            return tool_call("validate_controller", {"source": src}, "v1")
        if not any(m.tool_call_id == "q1" for m in tool_msgs):
            return tool_call("evaluate_controller", {"source": src, "envs": search_envs_of(messages)}, "q1")
        counter[0] += 1
        return tool_call("submit_controller", {"source": controller(60 + counter[0]), "rationale": "fake"}, "s1")

    return fn


def verdict_call(approve: bool, reasons: list[str] | None = None) -> AIMessage:
    """A structured-output reply carrying a CriticVerdict."""
    return tool_call("CriticVerdict", {"approve": approve, "reasons": reasons or [], "max_similarity": 0.1}, "v")


def diagnosis_call(summary: str = "fake diagnosis") -> AIMessage:
    """A structured-output reply carrying a Diagnosis."""
    return tool_call("Diagnosis", {"summary": summary, "failure_modes": [
        {"kind": "premature_stop", "count": 2, "share": 0.5, "evidence": ["stops after 2 probes"],
         "examples": ["m1/search q1 β=0.2 seed 0"], "suggestion": "wait for agreement"}],
        "actions": ["looser_stop"]}, "d")
