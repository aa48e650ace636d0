"""Helpers shared by the nodes: the spend wrappers (run-level and lane nodes), candidate naming, retries."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from typing import Any

from autotts_graph.store import history
from autotts_graph.store.db import StoreError

from ..agents.llm import AgentError
from ..deps import Deps, DepsProvider
from ..state import DiscoveryState, LaneState, NodeSpend, total_of

NodeFn = Callable[[DiscoveryState, Deps], dict[str, Any]]
LaneFn = Callable[[LaneState, Deps, dict[str, Any]], dict[str, Any]]


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


def spend_of(roles: dict[str, Any]) -> tuple[int, float]:
    """(tokens, dollars) consumed by the given role objects so far."""
    tokens, usd = 0, 0.0
    for role in roles.values():
        s = role.spend()
        tokens += s.llm_tokens
        usd += s.usd
    return tokens, usd


def _run_node(name: str, state: Any, deps: Deps, roles: dict[str, Any], call: Callable[[], dict[str, Any]],
              generation: int, slot: int | None = None) -> tuple[dict[str, Any], NodeSpend]:
    """Run a node body, measure its spend (LLM tokens and $ of ``roles``, wall seconds) and record it.

    An agent or store error is recorded on the run (status ``failed``) and raised: the graph stops with the
    task unfinished, and a resume runs that node again, with every finished node and lane kept.
    """
    started = time.perf_counter()
    tokens0, usd0 = spend_of(roles)

    def candidate(update: dict[str, Any]) -> str | None:
        c = update.get("candidate") or getattr(state, "candidate", None)
        return c.candidate_id if slot is not None and c is not None else None

    try:
        update = call()
    except (AgentError, StoreError) as exc:
        tokens1, usd1 = spend_of(roles)
        history.record_spend(deps.store, run_id=deps.config.run_id, round=generation, node=name,
                             llm_tokens=tokens1 - tokens0, usd=usd1 - usd0, seconds=time.perf_counter() - started,
                             slot=slot, candidate_id=candidate({}))
        history.update_run(deps.store, deps.config.run_id, status="failed", error=str(exc), finished=True)
        raise
    tokens1, usd1 = spend_of(roles)
    seconds = time.perf_counter() - started
    history.record_spend(deps.store, run_id=deps.config.run_id, round=generation, node=name,
                         llm_tokens=tokens1 - tokens0, usd=usd1 - usd0, seconds=seconds, slot=slot,
                         candidate_id=candidate(update))
    return update, NodeSpend(llm_tokens=tokens1 - tokens0, usd=usd1 - usd0, seconds=seconds, calls=1)


def wrap(name: str, fn: NodeFn, provider: DepsProvider) -> Callable[[DiscoveryState], dict[str, Any]]:
    """A run-level graph node: builds deps, runs ``fn``, adds the node's spend and wall time."""

    def node(state: DiscoveryState) -> dict[str, Any]:
        deps = provider.get(state.config)
        update, spent = _run_node(name, state, deps, deps.roles(), lambda: fn(state, deps), state.round)
        wall = update.get("wall_s", state.wall_s) + spent.seconds
        return {**update, "spend": {name: spent}, "node": name, "wall_s": wall}

    node.__name__ = name
    node.__doc__ = fn.__doc__
    return node


def wrap_lane(name: str, fn: LaneFn, provider: DepsProvider) -> Callable[[LaneState], dict[str, Any]]:
    """A lane node: like ``wrap``, with the slot's own role objects (exact spend per candidate)."""

    def node(state: LaneState) -> dict[str, Any]:
        deps = provider.get(state.config)
        roles = deps.roles_for(state.slot)
        update, spent = _run_node(name, state, deps, roles, lambda: fn(state, deps, roles), state.generation,
                                  state.slot)
        return {**update, "spend": {name: spent}, "node": name}

    node.__name__ = name
    node.__doc__ = fn.__doc__
    return node


def lane_spend(state: LaneState) -> NodeSpend:
    """What the lane has consumed so far (all its nodes)."""
    return total_of(state.spend)


def failed_attempt(state: LaneState, deps: Deps, feedback: list[str], outcome: str) -> dict[str, Any]:
    """The update for a proposal that goes back to the proposer while the slot's retries last."""
    attempt = state.attempt + 1
    retry = attempt < deps.config.max_attempts
    return {"attempt": attempt, "feedback": feedback, "outcome": outcome, "retry": retry,
            "goto": "propose" if retry else "__end__"}
