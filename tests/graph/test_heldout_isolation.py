"""No prompt, tool answer or trace given to an agent contains held-out data.

The held-out environment carries unmistakable question texts, gold answers, branch answers and name; a
full run with LLM agents (fake models that record every message, and a proposer that actively asks its
tools about the held-out environment) must never show any of them to a model, while the held-out
evaluation itself does happen after selection.
"""

from __future__ import annotations

import json
import re

from autotts_graph.store.trajectories import import_records
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from scripted_roles import (
    controller,
    diagnosis_call,
    fake,
    function_model,
    search_envs_of,
    tool_call,
    verdict_call,
)

HELD_ENV = ("vaultmodel", "secretset")
HELD_NAME = "vaultmodel/secretset"


def _secret_records(n_questions: int = 6, n_branches: int = 16) -> list[dict]:
    import random

    rng = random.Random(7)
    records = []
    for q in range(n_questions):
        gold = f"HELDGOLD{q}X"
        branches = []
        for b in range(n_branches):
            final = gold if rng.random() < 0.5 else f"HELDWRONG{q}Y{b % 3}"
            n = rng.randint(2, 6)
            probes = [rng.choice([final, "ERR", f"HELDPROBE{q}Z"]) for _ in range(n - 1)] + [final]
            branches.append([probes, n * 500 - rng.randint(0, 400), final])
        records.append({"question": f"SECRET HELD-OUT QUESTION {q}: what is x?", "gold_answer": gold,
                        "probe_freq": 500, "each_branch": branches, "final_answers_trace": [b[2] for b in branches]})
    return records


NOWHERE = "nosuch/env"


def _prying_proposer():
    """Asks the registry's tools for the held-out environment's traces (and, to compare, a made-up one's)."""
    state = {"n": 0}

    def fn(messages: list[BaseMessage]) -> AIMessage:
        tools = [m for m in messages if isinstance(m, ToolMessage)]
        if not tools:
            return tool_call("read_history", {}, "h")
        ids = re.findall(r"(ev-[0-9a-f]{10})", json.dumps([m.content for m in tools]))
        if len(tools) == 1:
            if ids:
                return AIMessage(content="", tool_calls=[
                    {"name": "get_traces", "args": {"evaluation_id": ids[0], "env": env}, "id": call_id,
                     "type": "tool_call"} for env, call_id in ((HELD_NAME, "pry"), (NOWHERE, "nowhere"))])
            return tool_call("validate_controller", {"source": controller(90)}, "v")
        if not any(m.tool_call_id == "t" for m in tools) and ids:
            return tool_call("get_traces", {"evaluation_id": ids[0], "failures_only": False}, "t")
        if not any(m.tool_call_id == "q" for m in tools):
            return tool_call("evaluate_controller", {"source": controller(91), "envs": search_envs_of(messages)},
                             "q")
        state["n"] += 1
        return tool_call("submit_controller", {"source": controller(70 + state["n"]), "rationale": "r"}, "s")

    return fn


def test_no_heldout_data_reaches_any_agent(run_graph, graph_store):
    _leak_scan(run_graph, graph_store)


def test_no_heldout_data_reaches_any_agent_with_populations_and_the_cascade(run_graph, graph_store):
    """Parallel lanes, parents and inspirations from the archive, screens and full evaluations: still no leak."""
    state = _leak_scan(run_graph, graph_store, population=2, betas=[0.2, 0.5, 0.8], screen_betas=[0.5],
                       screen_seeds=1)
    assert len(state.generations) == 2 and state.screened >= 4 and state.archive_members >= 2


def _leak_scan(run_graph, graph_store, **over):
    records = _secret_records()
    import_records(graph_store, *HELD_ENV, records, split="heldout")
    from tiny_runs import tiny_config

    cfg = tiny_config(rounds=2, heldout_envs=[HELD_NAME, "m1/heldout"], baselines=["sc"], trace_seeds=2, **over)
    proposer = function_model(_prying_proposer())
    critic = fake([verdict_call(True)] * 4)
    diag = fake([diagnosis_call("a"), diagnosis_call("b")])
    state, _, _ = run_graph(config=cfg, chat_models={"proposer": proposer, "critic": critic, "diagnostician": diag})
    assert state.status == "done", state.error
    # The held-out evaluation did happen, after selection, on the secret environment.
    assert state.heldout is not None and state.heldout.ok
    assert {p.env for p in state.heldout.curve} == {HELD_NAME, "m1/heldout"}

    messages = [m for model in (proposer, critic, diag) for msgs in model.seen for m in msgs]
    assert len(messages) > 20
    assert any(isinstance(m, ToolMessage) and '"steps"' in m.content for m in messages)  # traces were shown
    # Prompts and tool answers (the models' own replies are excluded: the prying proposer names the
    # held-out environment itself when it asks for its traces).
    given = [m for m in messages if not isinstance(m, AIMessage)]
    pry = [m.content for m in given if getattr(m, "tool_call_id", None) == "pry"]
    nowhere = [m.content for m in given if getattr(m, "tool_call_id", None) == "nowhere"]
    # The held-out environment is answered exactly like one that does not exist (the caller's own argument
    # echoed back), and its name is all the answer holds of it.
    assert pry and len(pry) == len(nowhere)
    for held, made_up in zip(pry, nowhere, strict=True):
        assert "unknown environment" in held
        assert held.replace(HELD_NAME, "X") == made_up.replace(NOWHERE, "X")
    echo = {id(m) for m in given if getattr(m, "tool_call_id", None) == "pry"}
    text = "\n".join(json.dumps(m.model_dump(), default=str).replace(HELD_NAME, "X") if id(m) in echo
                     else json.dumps(m.model_dump(), default=str) for m in given)
    forbidden = {HELD_NAME, "vaultmodel", "secretset", "m1/heldout", "SECRET HELD-OUT", "HELDGOLD", "HELDWRONG",
                 "HELDPROBE"}
    forbidden |= {r["question"] for r in records}
    leaks = sorted(s for s in forbidden if s in text)
    assert not leaks, f"held-out data reached an agent: {leaks}"
    return state
