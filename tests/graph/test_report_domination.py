"""The report: which β points no baseline (CMC included) dominates, and the per-β verdict against CMC."""

from autotts_graph.cli.run_report import domination_lines, versus_cmc_lines
from autotts_graph.graph.run_view import baseline_curve, candidate_curve, split_figures
from autotts_graph.graph.scoring import dominance_table
from autotts_graph.store.rows import CandidateRow, EvaluationRow, PointRow


def pt(env, beta, acc, cost, config=None, correct=None):
    p = {"env": env, "beta": beta, "accuracy": acc, "avg_cost": cost, "config": config or {"beta": beta}}
    if correct is not None:
        p["correct"] = correct
        p["tokens"] = [[cost] * len(correct[0]) for _ in correct]
    return p


def evaluation(points: list[dict]) -> EvaluationRow:
    """A stored evaluation of these points, as the history reads it back."""
    return EvaluationRow(evaluation_id="ev", status="ok", points=[
        PointRow(point_index=i, env=p["env"], beta=p["beta"], accuracy=p["accuracy"], avg_cost=p["avg_cost"],
                 config=p["config"]) for i, p in enumerate(points)])


def figures(curve: list[dict], baselines: dict[str, list[dict]]):
    winner = candidate_curve(CandidateRow(candidate_id="c", run_id="r", round=0, source=""), evaluation(curve))
    return split_figures("search", winner, [baseline_curve(m, "search", evaluation(pts))
                                            for m, pts in baselines.items()])


def test_domination_is_judged_on_the_mean_over_environments_with_cmc_on_the_frontier():
    curve = [pt("a", 0.0, 50, 100), pt("b", 0.0, 70, 300),   # mean 60 @ 200
             pt("a", 1.0, 52, 400), pt("b", 1.0, 72, 600)]   # mean 62 @ 500
    baselines = {"asc": [pt("a", None, 55, 150, {"max_samples": 8, "threshold": 0.95}),
                         pt("b", None, 75, 250, {"max_samples": 8, "threshold": 0.95})],  # mean 65 @ 200
                 "cmc": [pt("a", 0.5, 99, 1, {"beta": 0.5}), pt("b", 0.5, 99, 1, {"beta": 0.5})]}
    text = "\n".join(domination_lines(figures(curve, baselines), "Search"))
    assert "0 of 2 β points" in text and "ASC or CMC" in text
    # Every dominating configuration is listed, the most accurate first: CMC is one of them.
    assert "| 0 | 60.00 / 0.2k | CMC β=0.5, ASC(8) |" in text and "| 1 | 62.00 / 0.5k | CMC β=0.5, ASC(8) |" in text
    cheaper = {"asc": [pt("a", None, 55, 900, {"max_samples": 8, "threshold": 0.95}),
                       pt("b", None, 75, 900, {"max_samples": 8, "threshold": 0.95})]}
    assert "2 of 2 β points" in "\n".join(domination_lines(figures(curve, cheaper), "Search"))


def _rows(n_seeds, per_question):
    """seeds x questions 0/1 rows with the given per-question number of correct seeds."""
    return [[1 if s < k else 0 for k in per_question] for s in range(n_seeds)]


def test_versus_cmc_table_per_beta_and_env_with_ci():
    q = 30
    strong = _rows(10, [10] * 20 + [0] * 10)  # 66.7 %
    weak = _rows(10, [10] * 10 + [0] * 20)    # 33.3 %
    same = _rows(10, [5] * q)                 # 50 %
    mine = [pt("a", 0.0, 66.67, 1000, correct=strong), pt("b", 0.0, 50.0, 800, correct=same),
            pt("a", 1.0, 50.0, 2000, correct=same), pt("b", 1.0, 33.33, 3000, correct=weak)]
    cmc = [pt("a", 0.0, 33.33, 1000, correct=weak), pt("b", 0.0, 50.0, 1000, correct=same),
           pt("a", 1.0, 50.0, 2000, correct=same), pt("b", 1.0, 66.67, 3000, correct=strong)]
    verdicts = dominance_table(mine, cmc)
    by = {(v.env, v.beta): v for v in verdicts}
    assert by[("a", 0.0)].status == "dominates" and by[("a", 0.0)].ci[0] > 0       # a real accuracy gain
    assert by[("b", 0.0)].status == "dominates" and "cheaper" in by[("b", 0.0)].why  # 20 % cheaper, equal
    assert by[("a", 1.0)].status == "neither" and by[("a", 1.0)].ci == (0.0, 0.0)  # identical
    assert by[("b", 1.0)].status == "dominated"
    assert {v.env for v in verdicts} == {"a", "b", "mean"}
    text = "\n".join(versus_cmc_lines(verdicts, "Against CMC, held-out"))
    assert "| β | a | b | mean |" in text
    assert "a: dominates at 1, dominated at 0 of 2 β" in text and "b: dominates at 1, dominated at 1 of 2 β" in text
    line0 = next(line for line in text.splitlines() if line.startswith("| 0 |"))
    assert line0.count("**dominates**") == 3 and "[+" in line0 and "×0.80 tokens" in line0
    assert versus_cmc_lines([], "x") == []
