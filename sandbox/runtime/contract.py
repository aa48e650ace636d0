"""The controller contract: one class, one knob beta in [0, 1], a monotone schedule, traced decisions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

TRACE_KEYS = ("event", "goal", "input", "output", "state", "decision")
MAX_BRANCHES = 64


class TraceRecorder:
    """Per-call list of small JSON-able steps; a no-op unless the evaluator switched it on."""

    __slots__ = ("enabled", "steps")

    def __init__(self) -> None:
        self.enabled = False
        self.steps: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.steps = []

    def record(self, event: str, goal: str = "", input: Any = None, output: Any = None,
               state: Any = None, decision: Any = None) -> None:
        """Append one step with the six trace keys (ignored when tracing is off)."""
        if self.enabled:
            self.steps.append({"event": event, "goal": goal, "input": input, "output": output,
                               "state": state, "decision": decision})


class Controller(ABC):
    """Base class of every controller (baselines and generated ones alike).

    Subclasses set ``NAME``, implement ``schedule(beta)`` (every behaviour-critical hyper-parameter as a
    deterministic, monotone function of beta) and ``solve(question)`` (returns the answer string or None).
    ``config`` carries ``beta`` and, at most, a few structural constants that override schedule values.
    """

    NAME = "controller"
    DEFAULT_BETA = 0.5

    def __init__(self, config: dict | None = None) -> None:
        self.config = dict(config or {})
        beta = float(self.config.get("beta", self.DEFAULT_BETA))
        self.beta = min(1.0, max(0.0, beta))
        params = dict(self.schedule(self.beta))
        for key, value in self.config.items():
            if key != "beta":
                params[key] = value
        self.params = params
        self.trace = TraceRecorder()

    def schedule(self, beta: float) -> dict[str, Any]:
        """Map beta to the controller's hyper-parameters (more beta, more budget)."""
        return {}

    @abstractmethod
    def solve(self, question) -> str | None:
        """Drive the question's primitives and return the answer string (or None)."""

    def __call__(self, question) -> str | None:
        self.trace.reset()
        return self.solve(question)

    def describe(self) -> str:
        """The reference's description string: name, plus the config when there is one."""
        return f"{self.NAME} | config={self.config!r}" if self.config else self.NAME
