"""graph/nodes/select.py's choice among the finalists: the best lower bound of fitness on fresh seeds."""

from autotts_graph.cli.report_archive import selection_lines
from autotts_graph.graph import scoring
from autotts_graph.graph.nodes.select import choose
from autotts_graph.graph.scoring import Outcomes
from autotts_graph.graph.state import Finalist


def _curve(hits: list[int], cost: float = 1_000, n: int = 30) -> list[Outcomes]:
    """One point per environment with ``hits`` questions of ``n`` always right (the rest never)."""
    return [Outcomes(env=f"m{i}", beta=0.5, accuracy=100 * h / n, avg_cost=cost, acc_q=[1.0] * h + [0.0] * (n - h),
                     cost_q=[cost] * n) for i, h in enumerate(hits)]


BASE = [Outcomes(env=f"m{i}", beta=None, accuracy=50.0, avg_cost=1_000, acc_q=[0.5] * 30, cost_q=[1_000] * 30,
                 method="sc", label="SC@1") for i in range(2)]


def _finalist(cid: str, rank: int, search: list[int], fresh: list[int] | None) -> Finalist:
    point = scoring.fitness(_curve(search), BASE)
    if fresh is None:
        return Finalist(candidate_id=cid, rank=rank, fitness=point, audit="flagged")
    value, low = scoring.fitness_lower_bound(_curve(fresh), BASE)
    return Finalist(candidate_id=cid, rank=rank, fitness=point, fresh_fitness=value, lower_bound=low)


def test_the_pick_changes_when_a_finalists_fresh_seeds_drop_it_and_the_report_says_so():
    # "lucky" leads on the search seeds (20 and 19 of 30) but falls to 15 of 30 on fresh seeds.
    lucky = _finalist("lucky", 0, [20, 19], [15, 15])
    steady = _finalist("steady", 1, [18, 18], [18, 18])
    assert lucky.fitness > steady.fitness and lucky.lower_bound < steady.lower_bound
    record = choose([lucky, steady], first_seed=40)
    assert record.point_pick == "lucky" and record.selected == "steady" and record.changed
    assert "steady has the best lower bound" in record.why

    class View:
        selection = record

    text = "\n".join(selection_lines(View()))
    assert "The pick was **changed**" in text and "fresh seeds (from 40 on)" in text
    assert "| 1 | steady (steady) |" in text and text.count("| yes |") == 1


def test_the_pick_stands_when_the_fresh_seeds_confirm_it_and_a_flagged_finalist_never_wins():
    top = _finalist("top", 0, [20, 20], [20, 19])
    other = _finalist("other", 1, [18, 18], [18, 18])
    record = choose([top, other])
    assert record.selected == "top" and not record.changed and "also has the best lower bound" in record.why
    flagged = choose([_finalist("cheat", 0, [29, 29], None), other])
    assert flagged.selected == "other" and flagged.changed and "flagged by the strict audit" in flagged.why
    assert choose([_finalist("cheat", 0, [29, 29], None)]).selected is None


def test_fresh_seeds_follow_the_run_seed():
    from autotts_graph.graph.configuration import RunConfig

    assert RunConfig(seeds=20, seed=0).fresh_first_seed() == RunConfig(seeds=20, seed=0).fresh_first_seed() == 20
    assert RunConfig(seeds=20, seed=3).fresh_first_seed() == 80  # past the search seeds 0..19, per run seed
