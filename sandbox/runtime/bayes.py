"""Posterior of Optimal Bayesian stopping under the parameter-free prior (more-baselines spec §1).

``bayes_posterior(a, b, n)`` is the posterior probability that the current leader of a vote (a votes, the
runner-up b, n reads in all) is the mode of the question's answer distribution, under the equal-weight
mixture of 10 geometric candidates q_j ∝ θ^(j-1), j = 1..12, θ = 0.1..1.0 [ours]. It depends on (a, b, n)
only, so it is computed once on the host (``scripts/make_bayes_table.py``, numpy) and shipped here as
``bayes_posterior.npy``: a flat float64 vector over every state with n <= 64, in the order n ascending,
then b = 0..n//2, then a = max(b, 1)..n-b. The ``.npy`` is read with the standard library (``npyfile``), so
this module runs under PyPy without numpy. Standard library only, Python 3.9.
"""

from __future__ import annotations

import os

from .npyfile import load_npy

BAYES_N_MAX = 64
_TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bayes_posterior.npy")
_cache: dict = {}  # "table" -> the flat vector, "offsets" -> per-n offsets; filled on first use (a constant)


def _offsets(n_max: int) -> tuple[list[list[int]], int]:
    """offsets[n][b]: index of state (max(b, 1), b, n) in the flat table."""
    offsets: list[list[int]] = []
    pos = 0
    for n in range(n_max + 1):
        row = []
        for b in range(n // 2 + 1):
            row.append(pos)
            if n >= 1:
                pos += n - b - max(b, 1) + 1
        offsets.append(row)
    return offsets, pos


def _load() -> tuple[list[float], list[list[int]]]:
    table = _cache.get("table")
    if table is None:
        table = load_npy(_TABLE_PATH)
        offsets, size = _offsets(BAYES_N_MAX)
        if len(table) != size:
            raise ValueError(f"{_TABLE_PATH}: {len(table)} values, expected {size}")
        _cache["offsets"] = offsets
        _cache["table"] = table
    return table, _cache["offsets"]


def bayes_posterior(a: int, b: int, n: int) -> float:
    """P(leader is the mode | top count a, second count b, total n) under the parameter-free prior.

    0.0 for states that cannot occur (b > a, a + b > n, a < 1) or that no candidate explains, and for
    n > 64 (beyond the 64-branch ceiling).
    """
    if n < 1 or n > BAYES_N_MAX or a < 1 or b < 0 or b > a or a + b > n:
        return 0.0
    table, offsets = _load()
    return table[offsets[n][b] + a - max(b, 1)]
