"""Helpers shared by the nodes: the one node wrapper (dependencies, spend, failures), candidate naming, retries."""

from __future__ import annotations

import ast
import time
import typing
from collections.abc import Callable
from typing import Any, Literal

from autotts_graph.sandbox.static_checks import parse as parse_source
from autotts_graph.store.db import StoreError
from autotts_graph.store.ledger import CandidateStatus, LLMCallRow, SpendRow
from langgraph.types import Command

from ..agents.client import AgentError, CallBudget
from ..deps import Deps, DepsProvider
from ..state import DiscoveryState, LaneState, NodeSpend, total_of

# A node's body: (its state, the run's dependencies, the roles it may call) -> the state update, or (a lane node)
# a ``Command`` with the update and the next node.
NodeFn = Callable[[Any, Deps, dict[str, Any]], dict[str, Any] | Command]
# Dependencies for the node that opens a run, or the update that stops it before any work.
Opener = Callable[[DiscoveryState, DepsProvider], Deps | dict[str, Any]]


def controller_name(source: str) -> str:
    """The controller class's NAME attribute (else its class name); '' when there is no class.

    The controller is the class deriving from ``Controller`` (helper classes such as ``_Branch`` are not).
    """
    try:
        tree = parse_source(source)
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


def call_budget(state: Any, deps: Deps) -> CallBudget:
    """What the run's LLM budget leaves for the calls of this node (a lane: the spend before its generation plus
    its own; None where there is no limit)."""
    cfg = deps.config
    spent = total_of({"before": state.spent_before, **state.spend}) if isinstance(state, LaneState) else \
        total_of(state.spend)
    return CallBudget(tokens=None if cfg.max_llm_tokens is None else cfg.max_llm_tokens - spent.llm_tokens,
                      usd=None if cfg.max_usd is None else cfg.max_usd - spent.usd)


def _record_calls(deps: Deps, roles: dict[str, Any], generation: int, node: str, slot: int | None,
                  candidate_id: str | None) -> None:
    """The LLM calls the node's roles made, into the ledger (roles without calls have no ``take_calls``)."""
    rows = [LLMCallRow(round=generation, node=node, slot=slot, candidate_id=candidate_id, **rec.model_dump())
            for role in roles.values() if hasattr(role, "take_calls") for rec in role.take_calls()]
    deps.ledger.record_llm_calls(rows)


def wrap(name: str, fn: NodeFn, provider: DepsProvider, *,
         opener: Opener | None = None) -> Callable[[Any], dict[str, Any]]:
    """A graph node, run-level or lane: every node of the graph goes through here, so its spend is measured
    and recorded one way.

    The node gets its dependencies (``opener`` gets them for the node that opens the run, and may stop it
    instead: then its update is returned as it is), runs ``fn(state, deps, roles)`` with the run's roles (a
    lane: its slot's own role objects, so a role's spend counter measures that lane only) and records the
    LLM tokens, dollars and wall seconds of the execution in the run ledger (a lane node: with its slot and
    candidate). A run-level node also advances the run's wall time; a lane's time enters it at the fan-in, as
    the generation's slowest lane (lanes run side by side, so their seconds do not add up).

    An agent or store error is recorded on the run (status ``failed``) and raised: the graph stops with the
    task unfinished, and a resume runs that node again, with every finished node and lane kept.

    A lane node routes itself: it returns ``Command(goto=..., update=...)`` typed ``Command[Literal[...]]``. The
    wrapper hands LangGraph the Command's update with the spend, the node's name and ``route`` (the goto): the
    one lane router (``builder.follow_route``) follows it, over the edges ``destinations(fn)`` reads from the
    annotation. The route lives in the state, not only in the returned Command, because LangGraph drops a
    Command's goto when a paused lane's state is edited (``update_state``, as LangGraph Studio does: the lane
    would end there, langgraph#3003); a conditional edge is evaluated again on the edited state.
    """

    def node(state: Any) -> dict[str, Any]:
        started = time.perf_counter()
        deps = provider.get(state.config) if opener is None else opener(state, provider)
        if isinstance(deps, dict):
            return {**deps, "node": name}
        lane = isinstance(state, LaneState)
        slot, generation = (state.slot, state.generation) if lane else (None, state.round)
        roles = deps.roles_for(slot)
        budget = call_budget(state, deps)
        for role in roles.values():
            if hasattr(role, "set_budget"):
                role.set_budget(budget)
        tokens0, usd0 = spend_of(roles)
        update: dict[str, Any] = {}

        def spent() -> NodeSpend:
            tokens1, usd1 = spend_of(roles)
            seconds = time.perf_counter() - started
            c = update.get("candidate") or getattr(state, "candidate", None)
            cid = c.candidate_id if lane and c is not None else None
            deps.ledger.record_spend(SpendRow(round=generation, node=name, llm_tokens=tokens1 - tokens0,
                                              usd=usd1 - usd0, seconds=seconds, slot=slot, candidate_id=cid))
            _record_calls(deps, roles, generation, name, slot, cid)
            return NodeSpend(llm_tokens=tokens1 - tokens0, usd=usd1 - usd0, seconds=seconds, calls=1)

        try:
            result = fn(state, deps, roles)
        except (AgentError, StoreError) as exc:
            spent()
            deps.ledger.fail(str(exc))
            raise
        if isinstance(result, Command):
            update = {**(result.update or {}), "route": result.goto}
        else:
            update = result
        spend = spent()
        out = {**update, "spend": {name: spend}, "node": name}
        if not lane:
            out["wall_s"] = update.get("wall_s", state.wall_s) + spend.seconds
            deps.ledger.set_wall(out["wall_s"])
        return out

    node.__name__ = name
    node.__doc__ = fn.__doc__
    return node


def destinations(fn: NodeFn) -> tuple[str, ...]:
    """The nodes a lane node may route to: the ``Literal`` of its ``Command[Literal[...]]`` return annotation."""
    returns = typing.get_type_hints(fn).get("return")
    if typing.get_origin(returns) is not Command:
        raise TypeError(f"{fn.__name__} must be annotated -> Command[Literal[...]]")
    (targets,) = typing.get_args(returns)
    return typing.get_args(targets)


def lane_spend(state: LaneState) -> NodeSpend:
    """What the lane has consumed so far (all its nodes)."""
    return total_of(state.spend)


DIAGNOSIS_FEEDBACK = "diagnosis: "  # the prefix of a crash's feedback lines taken from its diagnosis
PROPOSAL_FAILED = "proposal_failed"  # a lane outcome with no candidate: the proposer's call failed (CallFailed)


def failed_attempt(state: LaneState, deps: Deps, feedback: list[str], outcome: CandidateStatus | str,
                   **update: Any) -> Command[Literal["propose", "__end__"]]:
    """Back to the proposer while the slot's retries last, else the slot ends (``outcome``: what became of the
    candidate, as the ledger recorded it, or ``PROPOSAL_FAILED``; ``update``: the node's own fields)."""
    attempt = state.attempt + 1
    value = outcome if outcome == PROPOSAL_FAILED else CandidateStatus(outcome).value
    return Command(goto="propose" if attempt < deps.config.max_attempts else "__end__",
                   update={**update, "attempt": attempt, "feedback": feedback, "outcome": value})


def answer_or_offline(roles: dict[str, Any], role: str, method: str, inp: Any, deps: Deps) -> tuple[Any, str | None]:
    """The role's answer to ``inp`` (``roles[role].<method>``, within the LLM slots); when its LLM call fails
    (CallFailed: cut off, malformed, no room, no budget), the offline role's answer and why it took over."""
    from ..agents.client import CallFailed
    from ..agents.factory import offline_role

    try:
        with deps.llm_slots:
            return getattr(roles[role], method)(inp), None
    except CallFailed as exc:
        return getattr(offline_role(role), method)(inp), str(exc)
