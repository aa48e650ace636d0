"""Replay semantics of spec §2: costs, cursor, quirks, and the worked example of §2.10."""

import pytest
from autotts_graph.sandbox.runtime.replay import Question, QuestionData, shuffle_order


def question_with(branches, seed=0, freq=500):
    """A Question whose shuffled position 0 holds ``branches[0]`` (the rest fill other positions)."""
    n = len(branches)
    order = shuffle_order(seed, n)
    placed = [None] * n
    for pos, file_index in enumerate(order):
        placed[file_index] = branches[pos]
    data = QuestionData(probe_freq=freq, probes=tuple(tuple(b[0]) for b in placed),
                        tokens=tuple(b[1] for b in placed), finals=tuple(b[2] for b in placed))
    return Question(data, seed)


WORKED = [["360", "ERR", "ERR", "ERR", "ERR", "204", "204"], 3403, "204"]


def test_worked_example_probe_costs():
    q = question_with([WORKED, [["1"], 900, "1"]])
    assert q.probe_new() == ("360", 0, False)
    seen = [q.probe_more(0) for _ in range(6)]
    assert [a for a, _ in seen] == ["ERR", "ERR", "ERR", "ERR", "204", "204"]
    assert not any(f for _, f in seen)
    assert q.total_cost == 3500
    assert q.probe_more(0) == ("204", True)
    assert q.total_cost == 3500  # max(0, 3403 - 3500)
    assert q.ledger_consistent()


def test_full_read_costs_branch_tokens():
    q = question_with([WORKED, [["1"], 900, "1"]])
    assert q.get_new_branch_final_answer() == "204"
    assert q.total_cost == 3403
    assert q.get_seq_and_total_tokens() == (0, 3403)
    assert q.get_cost_per_branch_active() == [3403]


def test_finished_branch_recharges_its_remainder():
    q = question_with([[["7"], 1800, "7"], [["1"], 900, "1"]])
    q.probe_new()
    assert q.probe_more(0) == ("7", True)
    assert q.total_cost == 1800
    assert q.probe_more(0) == ("7", True)
    assert q.total_cost == 3100  # the quirk of §2.3: 1300 charged again


def test_empty_probe_list_finishes_on_first_advance():
    q = question_with([[[], 1234, "5"], [["1"], 900, "1"]])
    assert q.probe_new() == ("5", 0, True)
    assert q.total_cost == 1234


def test_probe_more_accepts_next_unopened_branch_but_breaks_the_ledger():
    q = question_with([[["1", "2"], 900, "2"], [["3", "4"], 900, "4"]])
    q.probe_new()
    q.probe_more(1)  # allowed: i <= cursor
    assert not q.ledger_consistent()
    with pytest.raises(ValueError):
        q.probe_more(2)


def test_cursor_exhaustion_errors():
    q = question_with([[["1"], 100, "1"], [["2"], 100, "2"]])
    q.probe_new()
    q.get_new_branch_final_answer()
    with pytest.raises(ValueError):
        q.probe_new()
    with pytest.raises(IndexError):
        q.get_new_branch_final_answer()
    with pytest.raises(IndexError):
        q.probe_more(2)
