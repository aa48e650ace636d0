"""Build the discovery graph: generations of parallel candidate lanes around a program archive.

Run level::

    prepare → plan ─Send×N→ lane ─→ record (fan-in) → plan → … → select → heldout → END
                 └───────────────────────────────────────────────→ select (stop)

``plan`` opens a generation: one ``Send("lane", LaneState)`` per slot (``population``), each with the
archive's parent and inspirations for that slot, or routes to ``select`` when the generations, the budget
or ``max_evaluations`` are used up. Each lane runs the lane subgraph in its own thread::

    propose → check → critique → [review] → screen → [evaluate] → diagnose → END

A check failure, a critic (or reviewer) rejection and a crash at either evaluation stage (after the
diagnostician) go back to ``propose`` while the slot's ``attempt`` is below ``max_attempts``; then the lane
ends. ``screen`` is stage 1 of the cascade; only a screen near its niche's best goes on to ``evaluate``
(stage 2). Every lane node routes itself, returning ``Command(goto=..., update=...)`` typed
``Command[Literal[...]]`` with its possible successors (the drawn graph's edges), under the live configuration;
the wrapper keeps the goto in the lane's state, where one router follows it (see ``nodes.common.wrap``: an edited
paused lane must keep its next node). ``record`` runs
when every lane of the generation has finished: it adds the generation to the archive, migrates between
islands and updates the best. Concurrency is bounded by ``sandbox_slots`` and ``llm_slots``
(``deps.py``) and by LangGraph's ``max_concurrency`` (the runner sets it to the population). A lane is one
run-level task (its subgraph runs inside it), so all lanes of a generation belong to one superstep and the
fan-in runs once, after the last lane.

Checkpoints: the run level is checkpointed after every step; each lane is a subgraph with its own
checkpoints (namespace ``lane:<task id>``), so a run killed mid-generation resumes every unfinished lane at
the node it was in, and a finished lane's result is kept. An agent or store error raises out of the graph
(the runner records the run as failed); a resume runs that node again. ``prepare`` stops cleanly on a bad
configuration (status ``failed``).

Every node, run-level and lane, is built by ``nodes.common.wrap``: one code path measures and records its
spend in the run ledger. The run-level ``lane`` node only runs a lane's subgraph; its nodes are wrapped.

``make_graph`` is the checkpointer-less factory named in ``langgraph.json`` (LangGraph Studio /
``langgraph dev``); ``build_graph`` takes a checkpointer and a ``DepsProvider`` (the CLI, tests). Studio can
interrupt before any run-level node, and before lane nodes with ``configurable.lane_interrupt_before``.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from .deps import DepsProvider
from .nodes.check import check
from .nodes.common import destinations, wrap
from .nodes.critique import critique
from .nodes.diagnose import diagnose
from .nodes.evaluate import evaluate, screen
from .nodes.heldout import heldout
from .nodes.plan import plan
from .nodes.prepare import open_run, prepare
from .nodes.propose import propose
from .nodes.record import record
from .nodes.review import review
from .nodes.select import select
from .state import DiscoveryState, LaneResult, LaneState

NODES = ("prepare", "plan", "lane", "record", "select", "heldout")
LANE_NODES = ("propose", "check", "critique", "review", "screen", "evaluate", "diagnose")


def _failed(state: DiscoveryState) -> bool:
    return state.status == "failed"


def route_after_prepare(state: DiscoveryState) -> Literal["plan", "__end__"]:
    return END if _failed(state) else "plan"


def route_after_plan(state: DiscoveryState) -> list[Send] | Literal["select", "__end__"]:
    """Fan out: one lane per pending slot, or on to selection."""
    if _failed(state):
        return END
    if state.pending:
        return [Send("lane", lane) for lane in state.pending]
    return "select"


def route_after_select(state: DiscoveryState) -> Literal["heldout", "__end__"]:
    return "heldout" if state.selected and not _failed(state) else END


def follow_route(state: LaneState) -> str:
    """The one lane router: where the last lane node's ``Command`` sent the lane (``LaneState.route``)."""
    return state.route


def build_lane_graph(provider: DepsProvider, interrupt_before: list[str] | None = None):
    """The lane subgraph (one candidate slot); compiled without a checkpointer: it uses the run's."""
    g = StateGraph(LaneState)
    g.add_edge(START, "propose")
    for name, fn in (("propose", propose), ("check", check), ("critique", critique), ("review", review),
                     ("screen", screen), ("evaluate", evaluate), ("diagnose", diagnose)):
        g.add_node(name, wrap(name, fn, provider))
        # Every lane node routes itself (Command[Literal[...]]); its annotation lists the edges drawn.
        g.add_conditional_edges(name, follow_route, list(destinations(fn)))
    return g.compile(interrupt_before=interrupt_before or None)


def lane_result(lane: LaneState) -> LaneResult:
    """What the fan-in needs from a finished lane."""
    c, scr, ev = lane.candidate, lane.screen, lane.evaluation
    stage = 2 if ev is not None and ev.ok else 1 if scr is not None and scr.ok else 0
    return LaneResult(generation=lane.generation, slot=lane.slot, island=lane.island,
                      candidate_id=c.candidate_id if c else None, name=c.name if c else "", outcome=lane.outcome,
                      stage=stage, screen_fitness=scr.score if scr is not None and scr.ok else None,
                      fitness=ev.score if stage == 2 else None,
                      search_accuracy=(ev if stage == 2 else scr).search_accuracy if stage else None,
                      evaluation_id=ev.evaluation_id if stage == 2 else None,
                      screen_evaluation_id=scr.evaluation_id if scr is not None and scr.ok else None,
                      screens=lane.screens, seconds=sum(s.seconds for s in lane.spend.values()),
                      stop_reason=lane.stop_reason)


def make_lane_node(provider: DepsProvider):
    """The run-level ``lane`` node: runs one slot's subgraph to its end and hands back its result."""
    subgraph = build_lane_graph(provider)  # found by LangGraph here: get_state(subgraphs=True), Studio
    compiled: dict[tuple[str, ...], Any] = {(): subgraph}

    def lane(state: LaneState, config: RunnableConfig) -> dict[str, Any]:
        """One candidate slot: propose → check → critique → [review] → screen → [evaluate] → diagnose."""
        stops = tuple((config.get("configurable") or {}).get("lane_interrupt_before") or ())
        graph = subgraph if not stops else compiled.get(stops)
        if graph is None:
            graph = compiled[stops] = build_lane_graph(provider, list(stops))
        out = LaneState.model_validate(graph.invoke(state))
        return {"lanes": {f"{out.generation}:{out.slot}": lane_result(out)}, "spend": out.spend}

    return lane


def build_graph(provider: DepsProvider | None = None, checkpointer: Any = None,
                interrupt_before: list[str] | None = None):
    """The compiled discovery graph; nodes get their dependencies from ``provider``."""
    provider = provider or DepsProvider()
    g = StateGraph(DiscoveryState)
    g.add_node("prepare", wrap("prepare", prepare, provider, opener=open_run))
    g.add_node("plan", wrap("plan", plan, provider))
    g.add_node("lane", make_lane_node(provider))
    g.add_node("record", wrap("record", record, provider))
    g.add_node("select", wrap("select", select, provider))
    g.add_node("heldout", wrap("heldout", heldout, provider))
    g.add_edge(START, "prepare")
    g.add_conditional_edges("prepare", route_after_prepare)
    g.add_conditional_edges("plan", route_after_plan, ["lane", "select", END])
    g.add_edge("lane", "record")
    g.add_edge("record", "plan")
    g.add_conditional_edges("select", route_after_select)
    g.add_edge("heldout", END)
    return g.compile(checkpointer=checkpointer, interrupt_before=interrupt_before)


def make_graph(config: dict[str, Any] | None = None):
    """The graph for ``langgraph.json``: no checkpointer (the server brings its own), offline-capable.

    The store comes from ``$AUTOTTS_STORE``; roles follow the run configuration in the input state
    (offline by default), so a Studio thread started with ``{}`` runs on the store's default split.
    """
    return build_graph(DepsProvider())
