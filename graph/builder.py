"""Build the discovery graph.

    prepare → propose → check → critique → [review] → evaluate → diagnose → record → (propose | select)
    select → heldout → END

Failures have their own routes: a check failure, a critic (or reviewer) rejection and an evaluation crash
or timeout (after the diagnostician) go back to ``propose`` within the round while ``attempt`` is below
``config.max_attempts``, then the round ends at ``record``. ``propose`` is the graph-level guard: when the
LLM spend, tokens or wall-time budget is used up it routes to ``select``. An agent or store error stops
the run cleanly (status ``failed``), keeping everything recorded.

``make_graph`` is the checkpointer-less factory named in ``langgraph.json`` (LangGraph Studio /
``langgraph dev``); ``build_graph`` takes a checkpointer and a ``DepsProvider`` (the CLI, tests).
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from .deps import DepsProvider
from .nodes.check import check
from .nodes.common import wrap
from .nodes.critique import critique
from .nodes.diagnose import diagnose
from .nodes.evaluate import evaluate
from .nodes.heldout import heldout
from .nodes.prepare import make_prepare
from .nodes.propose import propose
from .nodes.record import record
from .nodes.review import review
from .nodes.select import select
from .state import DiscoveryState

NODES = ("prepare", "propose", "check", "critique", "review", "evaluate", "diagnose", "record", "select",
         "heldout")


def _failed(state: DiscoveryState) -> bool:
    return state.status == "failed"


def retry_or_end_round(state: DiscoveryState) -> Literal["propose", "record"]:
    """Back to the proposer while the round's retries last, else close the round."""
    return "propose" if state.attempt < state.config.max_attempts else "record"


def route_after_prepare(state: DiscoveryState) -> Literal["propose", "__end__"]:
    return END if _failed(state) else "propose"


def route_after_propose(state: DiscoveryState) -> Literal["check", "select", "__end__"]:
    if _failed(state):
        return END
    return "select" if state.stop_reason else "check"


def route_after_check(state: DiscoveryState) -> Literal["critique", "propose", "record", "__end__"]:
    if _failed(state):
        return END
    return "critique" if state.check is not None and state.check.ok else retry_or_end_round(state)


def route_after_critique(state: DiscoveryState) -> Literal["review", "evaluate", "propose", "record", "__end__"]:
    if _failed(state):
        return END
    if state.verdict is not None and state.verdict.approve:
        return "review" if state.config.review else "evaluate"
    return retry_or_end_round(state)


def route_after_review(state: DiscoveryState) -> Literal["evaluate", "check", "propose", "record", "__end__"]:
    if _failed(state):
        return END
    action = state.review.action if state.review is not None else "reject"
    if action == "approve":
        return "evaluate"
    if action == "edit":
        return "check"
    return retry_or_end_round(state)


def route_after_evaluate(state: DiscoveryState) -> Literal["diagnose", "__end__"]:
    return END if _failed(state) else "diagnose"


def route_after_diagnose(state: DiscoveryState) -> Literal["record", "propose", "__end__"]:
    if _failed(state):
        return END
    if state.outcome == "crashed":
        return retry_or_end_round(state)
    return "record"


def route_after_record(state: DiscoveryState) -> Literal["propose", "select", "__end__"]:
    if _failed(state):
        return END
    return "propose" if state.round < state.config.rounds else "select"


def route_after_select(state: DiscoveryState) -> Literal["heldout", "__end__"]:
    return "heldout" if state.selected and not _failed(state) else END


def build_graph(provider: DepsProvider | None = None, checkpointer: Any = None,
                interrupt_before: list[str] | None = None):
    """The compiled discovery graph; nodes get their dependencies from ``provider``."""
    provider = provider or DepsProvider()
    g = StateGraph(DiscoveryState)
    g.add_node("prepare", make_prepare(provider))
    for name, fn in (("propose", propose), ("check", check), ("critique", critique), ("review", review),
                     ("evaluate", evaluate), ("diagnose", diagnose), ("record", record), ("select", select),
                     ("heldout", heldout)):
        g.add_node(name, wrap(name, fn, provider))
    g.add_edge(START, "prepare")
    g.add_conditional_edges("prepare", route_after_prepare)
    g.add_conditional_edges("propose", route_after_propose)
    g.add_conditional_edges("check", route_after_check)
    g.add_conditional_edges("critique", route_after_critique)
    g.add_conditional_edges("review", route_after_review)
    g.add_conditional_edges("evaluate", route_after_evaluate)
    g.add_conditional_edges("diagnose", route_after_diagnose)
    g.add_conditional_edges("record", route_after_record)
    g.add_conditional_edges("select", route_after_select)
    g.add_edge("heldout", END)
    return g.compile(checkpointer=checkpointer, interrupt_before=interrupt_before)


def make_graph(config: dict[str, Any] | None = None):
    """The graph for ``langgraph.json``: no checkpointer (the server brings its own), offline-capable.

    The store comes from ``$AUTOTTS_STORE``; roles follow the run configuration in the input state
    (offline by default), so a Studio thread started with ``{}`` runs on the store's default split.
    """
    return build_graph(DepsProvider())
