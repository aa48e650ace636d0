"""LLM proposers and the population: inspirations in the prompt, diffs against the parent (applied and
re-checked), and a model ensemble whose bandit picks by fitness gains — all with scripted chat models."""

from __future__ import annotations

import pytest
from autotts_graph.graph.agents.client import CallFailed
from autotts_graph.graph.agents.diff_edit import DiffError, apply_diff, parse_diff, resolve_source
from autotts_graph.graph.agents.ensemble import EnsembleProposer, ModelBandit
from autotts_graph.graph.agents.llm import LLMProposer
from autotts_graph.graph.agents.roles import CurvePoint, Diagnosis, HistoryEntry, ProposerInput
from autotts_graph.graph.agents.tools import SUBMIT_TOOL, ProposerToolbox
from autotts_graph.graph.configuration import RoleSettings
from langchain_core.messages import AIMessage
from scripted_roles import all_text, controller, fake, tool_call


def diff(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def entry(cid: str, source: str = "", fitness: float | None = None, origin: str = "llm:a",
          parent: str | None = None, niche: str | None = None) -> HistoryEntry:
    curve = [CurvePoint(env="e", beta=b, accuracy=60 + 5 * b, avg_cost=10_000 * (1 + b)) for b in (0.0, 1.0)]
    return HistoryEntry(candidate_id=cid, round=0, name=cid, origin=origin, source=source, parent=parent,
                        curve=curve, fitness=fitness, niche=niche, stage=2 if fitness is not None else None,
                        diagnosis=Diagnosis(summary=f"{cid} stops too early", actions=["stricter_stop"]))


def toolbox() -> ProposerToolbox:
    return ProposerToolbox(ctx=None, run_id="run", search_envs=["e"], quick_betas=[0.0], quick_seeds=1)


def inp(parent: HistoryEntry | None, inspirations: list[HistoryEntry], history: list[HistoryEntry] | None = None):
    return ProposerInput(round=1, search_envs=["e"], betas=[0.0, 1.0], parent=parent, inspirations=inspirations,
                         history=history or [], generation=1, slot=0)


PARENT = controller(1)


# --------------------------------------------------------------------------- diffs

def test_parse_and_apply_diff():
    blocks = parse_diff("text\n" + diff('    NAME = "scripted1"', '    NAME = "patched"') + "more")
    assert blocks == [('    NAME = "scripted1"', '    NAME = "patched"')]
    assert 'NAME = "patched"' in apply_diff(PARENT, blocks)
    # Trailing whitespace in the quote is tolerated (line-wise match).
    loose = apply_diff(PARENT, [('    NAME = "scripted1"   \n', '    NAME = "loose"\n')])
    assert 'NAME = "loose"' in loose and loose.count("NAME =") == 1
    with pytest.raises(DiffError, match="not in the parent"):
        apply_diff(PARENT, [("    NAME = 'nope'", "x")])
    with pytest.raises(DiffError, match="matches 3 places"):
        apply_diff(PARENT, [("break", "continue")])
    with pytest.raises(DiffError, match="empty"):
        apply_diff(PARENT, [("  ", "x")])


def test_resolve_source_rechecks_the_patched_source():
    parent = entry("p1", PARENT)
    src, how = resolve_source(diff('    NAME = "scripted1"', '    NAME = "patched"'), parent)
    assert how.startswith("diff against p1") and 'NAME = "patched"' in src
    with pytest.raises(DiffError, match="breaks the controller rules"):
        resolve_source(diff("from autotts_runtime import", "import os\nfrom autotts_runtime import"), parent)
    with pytest.raises(DiffError, match="no parent"):
        resolve_source(diff("a", "b"), None)
    full, how = resolve_source(controller(2), parent)
    assert how == "full rewrite" and full == controller(2)


def test_llm_proposer_sees_inspirations_and_its_bad_diff_is_sent_back():
    parent = entry("p1", PARENT, fitness=0.8, niche="c17|rolling/confidence")
    insp = [entry("i1", controller(3), fitness=1.5, niche="c18|widening/momentum"), entry("i2", controller(4))]
    model = fake([
        tool_call(SUBMIT_TOOL, {"source": diff('    NAME = "nowhere"', '    NAME = "x"'), "rationale": "r"}, "s1"),
        tool_call(SUBMIT_TOOL, {"source": diff('    NAME = "scripted1"', '    NAME = "patched"'),
                                "rationale": "tighten the stop"}, "s2"),
    ])
    prop = LLMProposer(model, toolbox(), RoleSettings(kind="llm")).propose(inp(parent, insp))
    assert 'NAME = "patched"' in prop.source and prop.source.replace('"patched"', '"scripted1"') == PARENT
    assert prop.parent_id == "p1" and prop.rationale.startswith("[diff against p1 (1 block)] tighten the stop")
    text = all_text(model)
    # The prompt carries the parent and every inspiration, with fitness, niche, curve, diagnosis and code.
    for needle in ("## Parent", "## Inspirations", "fitness +0.80", "fitness +1.50", "c18|widening/momentum",
                   "i2 stops too early", "Scripted3(Controller)", "SEARCH/REPLACE", "65.0% @ 20k"):
        assert needle in text, needle
    # The diff that did not apply went back to the model with the reason.
    assert "could not be used" in text and "is not in the parent" in text


def test_llm_proposer_full_rewrite_in_reply_text_and_too_many_bad_diffs():
    parent = entry("p1", PARENT)
    model = fake([AIMessage(content="Rewrite:\n```python\n" + controller(7) + "```")])
    prop = LLMProposer(model, toolbox(), RoleSettings(kind="llm")).propose(inp(parent, []))
    assert prop.source == controller(7) and prop.rationale.startswith("[full rewrite]") and prop.parent_id is None
    bad = AIMessage(content=diff("no such line", "x"))
    with pytest.raises(CallFailed, match="could not be used"):
        LLMProposer(fake([bad, bad, bad]), toolbox(), RoleSettings(kind="llm")).propose(inp(parent, []))


# --------------------------------------------------------------------------- ensemble and bandit

def test_bandit_tries_every_model_then_follows_fitness_gains():
    bandit = ModelBandit(["a", "b", "c"], explore=0.1)
    assert bandit.pick([]) == "a"
    hist = [entry("p", fitness=0.0, origin="offline"),
            entry("x1", fitness=0.1, origin="llm:a", parent="p")]
    assert bandit.pick(hist) == "b"
    hist += [entry("x2", fitness=2.0, origin="llm:b", parent="p"),
             entry("x3", fitness=None, origin="llm:c", parent="p")]
    rewards = bandit.rewards(hist)
    assert rewards == {"a": [pytest.approx(0.1)], "b": [pytest.approx(2.0)], "c": [0.0]}
    assert bandit.pick(hist) == "b"  # the model whose candidates gained most
    more = hist + [entry("x4", fitness=2.0, origin="llm:b", parent="p")]
    assert ModelBandit(["a", "b", "c"], explore=10.0).pick(more) in ("a", "c")  # exploration wins when large


def test_ensemble_picks_per_proposal_names_the_model_and_splits_spend():
    members = {}
    for name, n in (("m1", 11), ("m2", 12)):
        p = LLMProposer(fake([AIMessage(content="```python\n" + controller(n) + "```")] * 3), toolbox(),
                        RoleSettings(kind="llm", model=name))
        p.name = f"llm:{name}"
        members[name] = p
    ens = EnsembleProposer(members, explore=0.5)
    first = ens.propose(inp(None, []))
    assert ens.name == "llm:m1" and first.rationale.startswith("[model m1]") and 'scripted11' in first.source
    # m1's candidate did not improve on its parent; the untried m2 goes next, then m2 (it gained) again.
    hist = [entry("p", fitness=1.0, origin="offline"), entry("c1", fitness=0.5, origin="llm:m1", parent="p")]
    assert ens.propose(inp(None, [], hist)) and ens.name == "llm:m2"
    hist.append(entry("c2", fitness=3.0, origin="llm:m2", parent="p"))
    ens.propose(inp(None, [], hist))
    assert ens.picks == ["m1", "m2", "m2"]
    by_model = ens.spend_by_model()
    assert by_model["m1"].calls == 1 and by_model["m2"].calls == 2
    assert ens.spend().llm_tokens == sum(s.llm_tokens for s in by_model.values()) > 0
