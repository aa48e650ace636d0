"""Helpers shared by the nodes: the spend wrapper, candidate naming, feedback formatting."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.db import StoreError

from ..agents.llm import AgentError
from ..deps import Deps, DepsProvider
from ..state import DiscoveryState, NodeSpend

NodeFn = Callable[[DiscoveryState, Deps], dict[str, Any]]


def controller_name(source: str) -> str:
    """The controller class's NAME attribute (else its class name); '' when there is no class.

    The controller is the class deriving from ``Controller`` (helper classes such as ``_Branch`` are not).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if not classes:
        return ""

    def derives(cls: ast.ClassDef) -> bool:
        return any((isinstance(b, ast.Name) and b.id == "Controller")
                   or (isinstance(b, ast.Attribute) and b.attr == "Controller") for b in cls.bases)

    cls = next((c for c in classes if derives(c)), classes[-1])
    for item in cls.body:
        if (isinstance(item, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NAME" for t in item.targets)
                and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str)):
            return item.value.value
    return cls.name


def spend_of(deps: Deps) -> tuple[int, float]:
    """(tokens, dollars) consumed by the roles so far."""
    tokens, usd = 0, 0.0
    for role in deps.roles().values():
        s = role.spend()
        tokens += s.llm_tokens
        usd += s.usd
    return tokens, usd


def wrap(name: str, fn: NodeFn, provider: DepsProvider) -> Callable[[DiscoveryState], dict[str, Any]]:
    """A graph node: builds deps, runs ``fn``, adds the node's spend, and turns agent/store errors into a stop."""

    def node(state: DiscoveryState) -> dict[str, Any]:
        started = time.perf_counter()
        deps = provider.get(state.config)
        tokens0, usd0 = spend_of(deps)
        try:
            update = fn(state, deps)
        except (AgentError, StoreError) as exc:
            message = str(exc)
            update = {"status": "failed", "error": message}
            history.update_run(deps.store, state.config.run_id, status="failed", error=message, finished=True)
        tokens1, usd1 = spend_of(deps)
        seconds = time.perf_counter() - started
        spend = dict(state.spend)
        prev = spend.get(name, NodeSpend())
        spend[name] = NodeSpend(llm_tokens=prev.llm_tokens + tokens1 - tokens0, usd=prev.usd + usd1 - usd0,
                                seconds=prev.seconds + seconds, calls=prev.calls + 1)
        history.record_spend(deps.store, run_id=state.config.run_id, round=update.get("round", state.round),
                             node=name, llm_tokens=tokens1 - tokens0, usd=usd1 - usd0, seconds=seconds)
        return {**update, "spend": spend, "node": name}

    node.__name__ = name
    node.__doc__ = fn.__doc__
    return node


def failed_attempt(state: DiscoveryState, feedback: list[str], outcome: str) -> dict[str, Any]:
    """The update for a proposal that goes back to the proposer (counts against the round's retries)."""
    return {"attempt": state.attempt + 1, "feedback": feedback, "outcome": outcome}
