"""Conformance vectors of the replay spec §8.5 for the shared helpers and the shuffle."""

from fractions import Fraction
from math import comb

import pytest
from autotts_graph.sandbox.runtime import primitives as P
from autotts_graph.sandbox.runtime.replay import shuffle_order


@pytest.mark.parametrize(("seed", "first"), [
    (0, [48, 43, 108, 72, 29, 14, 54, 23, 124, 94]),
    (1, [14, 46, 71, 36, 95, 113, 84, 17, 4, 51]),
    (42, [9, 92, 102, 76, 49, 16, 62, 103, 104, 82]),
])
def test_shuffle_matches_cpython_reference(seed, first):
    assert shuffle_order(seed, 128)[:10] == first


@pytest.mark.parametrize(("t1", "t2", "conf"), [
    (4, 0, 0.96875), (3, 0, 0.9375), (6, 1, 0.96484375), (5, 1, 0.9375), (3, 3, 0.5),
    (7, 7, 0.5000000000000001), (0, 0, 0.0),
])
def test_beta_confidence_vectors(t1, t2, conf):
    assert P.beta_confidence(t1, t2) == conf


def test_beta_confidence_table_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for t1 in range(1, 129, 7):
        for t2 in range(0, t1 + 1, 5):
            assert P.beta_confidence(t1, t2) == 1 - scipy_stats.beta.cdf(0.5, t1 + 1, t2 + 1)


def test_beta_confidence_beyond_table_uses_exact_closed_form():
    t1, t2 = 140, 3
    n = t1 + t2 + 1
    exact = float(Fraction(sum(comb(n, j) for j in range(t1 + 1)), 2**n))
    assert P.beta_confidence(t1, t2) == exact
    assert 0.5 < P.beta_confidence(130, 120) < 1.0


def test_majority_breaks_ties_by_first_occurrence():
    assert P.majority(["b", "a", "a", "b"]) == "b"
    assert P.majority([]) is None


def test_vote_stats_vector():
    assert P.vote_stats(["x", "y", "y", "x", "z"]) == ("x", 2, 2, 5)
    assert P.vote_stats(["a", "a"]) == ("a", 2, 0, 2)
    assert P.vote_stats([]) == (None, 0, 0, 0)


def test_weighted_vote_ties_go_to_greatest_string():
    assert P.weighted_vote([("a", 1), ("b", 1)]) == "b"
    assert P.weighted_vote([("a", 2), ("b", 1)]) == "a"
    assert P.weighted_vote([]) is None
