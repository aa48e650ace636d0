"""The three offline roles compose into a working discovery loop (no graph, no LLM, tiny environments)."""

from __future__ import annotations

from pathlib import Path

from autotts_graph.graph.agents.offline_critic import RuleCritic
from autotts_graph.graph.agents.offline_diagnostician import StatsDiagnostician
from autotts_graph.graph.agents.offline_proposer import HeuristicProposer
from autotts_graph.graph.agents.roles import (
    BaselinePoint,
    CriticInput,
    CurvePoint,
    DiagnoseInput,
    HistoryEntry,
    ProposerInput,
    QuestionOutcome,
    TraceSample,
)
from autotts_graph.graph.scoring import fitness
from autotts_graph.sandbox.judge import load_judge_pack, score_in_process
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.sandbox.runtime.validate import validate_source
from autotts_graph.store.packs import write_pack
from autotts_graph.tools.validate import static_issues

CONTROLLERS = Path(__file__).resolve().parents[2] / "sandbox" / "controllers"
BETAS = [0.0, 0.5, 1.0]
SEEDS = [0, 1, 2]


def _run_loop(packs, rounds: int, seed: int) -> list[HistoryEntry]:
    baselines = []
    asc = load_controller_class((CONTROLLERS / "asc.py").read_text())
    for name, pack in packs.items():
        for k in (1, 4, 16):
            res = score_in_process(asc, pack, {"max_samples": k, "threshold": 0.95}, SEEDS, frozenset())
            baselines.append(BaselinePoint(method="asc", label=f"ASC({k})", env=name, accuracy=res["accuracy"],
                                           avg_cost=res["avg_cost"]))
    proposer, critic, diagnostician = HeuristicProposer(seed=seed), RuleCritic(), StatsDiagnostician()
    history: list[HistoryEntry] = []
    diagnosis = None
    first = load_pack(next(iter(packs.values())))
    golds = {name: load_judge_pack(path).gold_text for name, path in packs.items()}
    for rnd in range(rounds):
        feedback: list[str] = []
        for attempt in range(3):
            prop = proposer.propose(ProposerInput(round=rnd, attempt=attempt, search_envs=list(packs), betas=BETAS,
                                                  history=history, baselines=baselines, diagnosis=diagnosis,
                                                  feedback=feedback, seed=seed))
            report = validate_source(prop.source, first, smoke_questions=2)
            verdict = critic.review(CriticInput(source=prop.source, check_errors=report["errors"] +
                                                static_issues(prop.source)[0], schedule=report["schedule"],
                                                history=history))
            if verdict.approve:
                break
            feedback = verdict.reasons
        assert verdict.approve, verdict.reasons
        cls = load_controller_class(prop.source)
        curve, outcomes, traces = [], [], []
        for name, pack in packs.items():
            for beta in BETAS:
                res = score_in_process(cls, pack, {"beta": beta}, SEEDS, frozenset({0}))
                curve.append(CurvePoint(env=name, beta=beta, accuracy=res["accuracy"], avg_cost=res["avg_cost"]))
                for qi, gold in enumerate(golds[name]):
                    outcomes.append(QuestionOutcome(
                        env=name, beta=beta, question_index=qi, gold=gold,
                        accuracy=sum(r[qi] for r in res["correct"]) / len(SEEDS),
                        mean_tokens=sum(r[qi] for r in res["tokens"]) / len(SEEDS), modal_answer=None))
                traces += [TraceSample(env=name, beta=beta, seed=t["shuffle_seed"], question_index=t["question_index"],
                                       is_correct=t["is_correct"], cost=t["cost"], answer=t["answer"],
                                       steps=t["trace"]) for t in res["traces"]]
        diagnosis = diagnostician.diagnose(DiagnoseInput(candidate_id=f"r{rnd}", source=prop.source, curve=curve,
                                                         baselines=baselines, outcomes=outcomes, traces=traces))
        history.append(HistoryEntry(candidate_id=f"r{rnd}", round=rnd, source=prop.source, curve=curve,
                                    diagnosis=diagnosis, genome=prop.genome, parent=prop.parent_id))
    return history


def test_offline_roles_compose_into_a_reproducible_loop(tmp_path, tiny_records):
    packs = {name: write_pack(name, tiny_records(n_questions=3, n_branches=24, seed=s), tmp_path)
             for name, s in (("tiny/a", 21), ("tiny/b", 22))}
    history = _run_loop(packs, rounds=4, seed=3)
    assert len({h.source for h in history}) == 4
    assert all(h.diagnosis is not None and h.diagnosis.summary for h in history)
    assert all(h.parent for h in history[1:])  # later rounds are children of evaluated candidates
    assert all(fitness(h.curve, []) > 0 for h in history)
    again = _run_loop(packs, rounds=2, seed=3)
    assert [h.source for h in again] == [h.source for h in history[:2]]
