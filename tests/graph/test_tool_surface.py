"""One tool surface: the MCP server and the graph's proposer take their tools from the same registry, the
proposer's prompt names exactly those tools, and every prompt carries the one generated controller contract."""

from __future__ import annotations

import asyncio
import re
from importlib import resources

import pytest
from autotts_graph.graph.agents.llm import LLMProposer
from autotts_graph.graph.agents.prompting import load_prompt
from autotts_graph.graph.agents.roles import ProposerInput
from autotts_graph.graph.agents.tools import RUN_TOOL_NAMES, RUN_TOOL_SPECS, SUBMIT_TOOL, ProposerToolbox
from autotts_graph.graph.configuration import RoleSettings
from autotts_graph.sandbox.runtime import __all__ as runtime_exports
from autotts_graph.sandbox.runtime.contract import MAX_BRANCHES
from autotts_graph.sandbox.runtime.replay import Question
from autotts_graph.sandbox.static_checks import ALLOWED_IMPORTS
from autotts_graph.tools.contract import contract_text
from autotts_graph.tools.registry import TOOL_NAMES, TOOL_SPECS
from langchain_core.messages import SystemMessage
from scripted_roles import controller, fake, tool_call


def _tool_vocabulary(specs) -> set[str]:
    """Tool names and the field names of their inputs and outputs."""
    return {s.name for s in specs} | {f for s in specs for m in (s.input_model, s.output_model) for f in m.model_fields}


@pytest.fixture
def toolbox(graph_store):
    from autotts_graph.tools.context import ToolContext

    ctx = ToolContext(store=graph_store, sandbox="process", hidden_envs=frozenset({"m1/heldout"}))
    box = ProposerToolbox(ctx=ctx, run_id="run-1", search_envs=["m1/search", "m2/search"], quick_betas=[0.0, 1.0],
                          quick_seeds=2)
    yield box
    ctx.close()


def test_mcp_and_the_agents_list_the_same_tools(toolbox):
    from autotts_graph.tools.server import make_server

    mcp = make_server(toolbox.ctx, allow_process_sandbox=True)
    served = {t.name: t for t in asyncio.run(mcp.list_tools())}
    agent = {t.name: t for t in toolbox.tools()}
    assert set(served) == set(TOOL_NAMES)
    assert set(agent) == set(TOOL_NAMES) | set(RUN_TOOL_NAMES)
    assert not set(RUN_TOOL_NAMES) & set(TOOL_NAMES)
    for spec in TOOL_SPECS:  # same descriptions and the registry's own input models
        assert served[spec.name].description == agent[spec.name].description == spec.description
        assert agent[spec.name].args_schema is spec.input_model
    # The run scope is in the agents' context: their evaluations default to the run's quick protocol.
    assert toolbox.ctx.run.run_id == "run-1" and toolbox.ctx.run.seeds == 2


def test_the_proposer_prompt_names_the_registry_tools(toolbox):
    model = fake([tool_call(SUBMIT_TOOL, {"source": controller(1), "rationale": "r"}, "s")])
    LLMProposer(model, toolbox, RoleSettings(kind="llm")).propose(
        ProposerInput(round=0, search_envs=toolbox.search_envs, betas=[0.0, 1.0]))
    system = next(m.content for m in model.seen[0] if isinstance(m, SystemMessage))
    for name in (*TOOL_NAMES, *RUN_TOOL_NAMES):
        assert f"`{name}`" in system, name
    # Every tool-like name the hand-written part of the prompt mentions is a tool or one of its fields (a
    # renamed or retired tool, e.g. the old quick_evaluate, fails here).
    template = resources.files("autotts_graph.graph.prompts").joinpath("proposer.md").read_text()
    named = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", template))
    vocabulary = _tool_vocabulary([*TOOL_SPECS, *RUN_TOOL_SPECS])
    assert named and named <= vocabulary, named - vocabulary


@pytest.mark.parametrize("role", ["proposer", "critic", "diagnostician"])
def test_every_prompt_carries_the_generated_contract(role):
    text = load_prompt(role, [*TOOL_SPECS, *RUN_TOOL_SPECS])
    assert contract_text() in text and "{contract}" not in text and "{tools}" not in text
    for module in ALLOWED_IMPORTS - {"__future__"}:  # `operator` among them: the old copy had dropped it
        assert f"`{module}`" in text, module
    assert not resources.files("autotts_graph.graph.prompts").joinpath("contract.md").is_file()


def test_the_contract_is_written_from_the_runtime_constants():
    text = contract_text()
    imports = re.search(r"Imports: only (.*?)\. Everything", text, re.S).group(1)
    assert set(re.findall(r"`(\w+)`", imports)) == ALLOWED_IMPORTS - {"__future__"}
    offered = re.search(r"from autotts_runtime import ([^`]*)`", text).group(1)
    assert {n.strip() for n in offered.split(",")} == set(runtime_exports)
    assert f"`MAX_BRANCHES` = {MAX_BRANCHES} branches" in text
    for method in re.findall(r"question\.(\w+)\(", text):  # every primitive it teaches exists on the question
        assert callable(getattr(Question, method, None)), method
    workflow = text.split("## Workflow with the tools", 1)[1].split("## A complete example", 1)[0]
    named = set(re.findall(r"`([a-z_]+)[`(]", workflow))
    assert named & set(TOOL_NAMES) and named <= _tool_vocabulary(TOOL_SPECS), named - _tool_vocabulary(TOOL_SPECS)


def test_a_prompt_with_tools_needs_them():
    with pytest.raises(ValueError, match="the proposer prompt lists tools"):
        load_prompt("proposer")
