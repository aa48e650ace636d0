"""Shared voting helpers and safe environment wrappers (replay spec §2.8 and §4).

Order matters for tie-breaking: every helper walks its input in the order given.
"""

from __future__ import annotations

import os
from fractions import Fraction
from math import comb

from .npyfile import load_npy

# Float64 values of 1 - scipy.stats.beta.cdf(0.5, t1+1, t2+1) for t1, t2 in 0..128 (spec §4.3 makes the
# scipy values normative); larger counts fall back to the exact closed form. Read as raw bytes, so the
# values are bit-identical under CPython and PyPy.
_TABLE: list[list[float]] = load_npy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "beta_conf.npy"))
_TABLE_SIZE = len(_TABLE)


def beta_confidence(t1: int, t2: int) -> float:
    """Posterior probability that the leader (t1 votes) beats the runner-up (t2 votes), Beta(1,1) prior."""
    if t1 <= 0:
        return 0.0
    if t1 < _TABLE_SIZE and t2 < _TABLE_SIZE:
        return _TABLE[t1][t2]
    n = t1 + t2 + 1
    return float(Fraction(sum(comb(n, j) for j in range(t1 + 1)), 2**n))


def majority(answers: list) -> str | None:
    """Most frequent answer; ties go to the answer seen first. None for an empty list."""
    if not answers:
        return None
    counts: dict = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    # max() keeps the first maximal key in insertion (= first-occurrence) order, like Counter.most_common(1).
    return max(counts, key=counts.__getitem__)


def vote_stats(answers: list) -> tuple[str | None, int, int, int]:
    """(winner, top1, top2, total): winner as majority(), top2 the best count among the other answers."""
    if not answers:
        return None, 0, 0, 0
    counts: dict = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    winner = max(counts, key=counts.__getitem__)
    top1 = counts[winner]
    top2 = 0
    for a, c in counts.items():
        if c > top2 and a != winner:
            top2 = c
    return winner, top1, top2, len(answers)


def weighted_vote(pairs: list[tuple[str, float]]) -> str | None:
    """Answer with the largest summed weight; ties go to the lexicographically greatest answer."""
    if not pairs:
        return None
    totals: dict = {}
    for answer, weight in pairs:
        totals[answer] = totals.get(answer, 0) + weight
    return max(totals.items(), key=lambda kv: (kv[1], kv[0]))[0]


def safe_probe_new(question):
    """probe_new() or None when no branch is left."""
    try:
        return question.probe_new()
    except (ValueError, IndexError):
        return None


def safe_probe_more(question, index: int):
    """probe_more(index) or None when the index is not allowed."""
    try:
        return question.probe_more(index)
    except (ValueError, IndexError):
        return None


def safe_full_read(question):
    """get_new_branch_final_answer() or None when no branch is left."""
    try:
        return question.get_new_branch_final_answer()
    except (ValueError, IndexError):
        return None
