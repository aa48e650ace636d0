"""The report says which β points no hand-crafted baseline dominates (mean over environments)."""

from autotts_graph.cli.run_report import _domination_lines


def pt(env, beta, acc, cost, config=None):
    return {"env": env, "beta": beta, "accuracy": acc, "avg_cost": cost, "config": config or {"beta": beta}}


def test_domination_is_judged_on_the_mean_over_environments():
    curve = [pt("a", 0.0, 50, 100), pt("b", 0.0, 70, 300),   # mean 60 @ 200
             pt("a", 1.0, 52, 400), pt("b", 1.0, 72, 600)]   # mean 62 @ 500
    baselines = {"asc": [pt("a", None, 55, 150, {"max_samples": 8, "threshold": 0.95}),
                         pt("b", None, 75, 250, {"max_samples": 8, "threshold": 0.95})],  # mean 65 @ 200
                 "cmc": [pt("a", 0.5, 99, 1, {"beta": 0.5}), pt("b", 0.5, 99, 1, {"beta": 0.5})]}  # not hand-crafted
    lines = _domination_lines(curve, baselines, "Search")
    text = "\n".join(lines)
    assert "0 of 2 β points" in text
    assert "| 0 | 60.00 / 0.2k | ASC(8) |" in text and "| 1 | 62.00 / 0.5k | ASC(8) |" in text
    cheaper = {"asc": [pt("a", None, 55, 900, {"max_samples": 8, "threshold": 0.95}),
                       pt("b", None, 75, 900, {"max_samples": 8, "threshold": 0.95})]}
    assert "2 of 2 β points" in "\n".join(_domination_lines(curve, cheaper, "Search"))
