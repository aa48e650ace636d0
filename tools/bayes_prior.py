"""Optimal Bayesian stopping (more-baselines spec §1): posterior tables, computed on the host with numpy.

The posterior that the current leader of a vote is the mode of the question's answer distribution depends
only on (a, b, n) = (top count, second count, total) and on the prior over sorted answer distributions q.
This module computes it for every (a, b, n) with n <= 64 at once:

* the parameter-free prior (10 geometric candidates) is computed once by ``scripts/make_bayes_table.py`` and
  shipped with the runtime as ``sandbox/runtime/bayes_posterior.npy`` (read there with the standard library);
* the fitted prior (one candidate per search question) is computed here from the store, per model, and
  reaches the controller as a compact stop table in its config (``tools/baselines.py``).

Per candidate the numerator and denominator of P are kept separately, so leaving one question out is a sum
over the other candidates (no subtraction, hence no cancellation).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

N_MAX = 64  # the 64-branch ceiling of every controller here
K = 12  # candidate length: the top 12 answers (spec §1, "keep the top 12")
GEOMETRIC_THETAS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def geometric_prior() -> list[list[float]]:
    """The parameter-free prior [ours]: q_j ∝ θ^(j-1), j = 1..12, for θ = 0.1, ..., 1.0 (equal weights)."""
    out = []
    for theta in GEOMETRIC_THETAS:
        raw = [theta**j for j in range(K)]
        total = sum(raw)
        out.append([x / total for x in raw])
    return out


def candidate_from_answers(finals: list[str]) -> list[float]:
    """One question's candidate: frequencies of its final answers ('ERR' included), sorted, top 12, renormalised."""
    counts = sorted(Counter(finals).values(), reverse=True)[:K]
    total = sum(counts)
    return [c / total for c in counts]


def _pad(q: list[float]) -> np.ndarray:
    arr = np.zeros(K)
    arr[: len(q)] = sorted(q, reverse=True)[:K]
    return arr


def posterior_parts(candidates: list[list[float]], n_max: int = N_MAX, chunk: int = 256) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Per-candidate numerator and denominator of P, each of shape (C, n_max+1, n_max//2+1, n_max+1).

    Index [c, a, b, n]. With s = n-a-b, c' = 2 if a == b else 1 and m = #{k : r_k = b} (spec §1):
    ``T_ij = Σ_r Π_{k∉{i,j}} q_k^{r_k}/r_k! / C(c'+m, c')`` over r with Σr = s and 0 <= r_k <= b,
    ``L_i = Σ_{j≠i} q_i^a q_j^b T_ij``; numerator L_0, denominator Σ_i L_i. For b = 0 (one distinct answer)
    the numerator is q_0^a and the denominator Σ_i q_i^a. States that cannot occur stay 0.
    """
    qs = np.stack([_pad(q) for q in candidates])  # (C, K)
    n_c = len(candidates)
    n_b = n_max // 2 + 1
    num = np.zeros((n_c, n_max + 1, n_b, n_max + 1))
    den = np.zeros_like(num)
    # b = 0: every read agreed, so n = a.
    for a in range(1, n_max + 1):
        powers = qs**a
        num[:, a, 0, a] = powers[:, 0]
        den[:, a, 0, a] = powers.sum(axis=1)
    # b >= 1: one lane per (candidate, i, j) with q_i, q_j > 0; the tail is q without i and j. Lanes come
    # candidate by candidate, so a candidate's sum is one ``reduceat`` over its run of lanes. No BLAS call
    # anywhere: a multithreaded BLAS on a busy machine (the sandbox tasks run beside it) turned a few
    # seconds of work into minutes (benchmarks/discovery_vs_cmc.py, the baselines before the first generation).
    lanes = [(c, i, j) for c in range(n_c) for i in range(K) for j in range(K)
             if i != j and qs[c, i] > 0 and qs[c, j] > 0]
    if not lanes:
        return num, den
    lane_c = np.array([t[0] for t in lanes])
    lane_i = np.array([t[1] for t in lanes])
    lane_j = np.array([t[2] for t in lanes])
    keep = np.ones((len(lanes), K), dtype=bool)
    keep[np.arange(len(lanes)), lane_i] = False
    keep[np.arange(len(lanes)), lane_j] = False
    tails = qs[lane_c][keep].reshape(len(lanes), K - 2)
    qi, qj = qs[lane_c, lane_i], qs[lane_c, lane_j]
    owners, starts = np.unique(lane_c, return_index=True)  # the candidates with lanes, where theirs start
    lead = lane_i == 0  # the numerator's lanes: the leader is the mode
    lead_owners, lead_starts = np.unique(lane_c[lead], return_index=True)
    for b in range(1, n_b):
        s_max = n_max - 2 * b
        if s_max < 0:
            break
        t1, t2 = _tail_sums(tails, b, s_max, chunk)  # (lanes, s_max+1) for c' = 1 and c' = 2
        qjb = qj**b
        for a in range(b, n_max - b + 1):
            s_top = n_max - a - b
            t = t2 if a == b else t1
            val = (qi**a * qjb)[:, None] * t[:, : s_top + 1]  # (lanes, s)
            den[owners, a, b, a + b : n_max + 1] += np.add.reduceat(val, starts, axis=0)
            if len(lead_owners):
                num[lead_owners, a, b, a + b : n_max + 1] += np.add.reduceat(val[lead], lead_starts, axis=0)
    return num, den


def _tail_sums(tails: np.ndarray, b: int, s_max: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Σ_m E[s, m] / C(1+m, 1) and / C(2+m, 2), where E[s, m] sums Π q_k^{r_k}/r_k! over tails with Σr = s,
    r_k <= b and m entries equal to b (a DP over the tail elements)."""
    n_lanes, n_tail = tails.shape
    m_max = min(n_tail, s_max // b)
    inv_fact = np.array([1.0 / math.factorial(r) for r in range(b + 1)])
    out1 = np.zeros((n_lanes, s_max + 1))
    out2 = np.zeros((n_lanes, s_max + 1))
    w1 = np.array([1.0 / math.comb(1 + m, 1) for m in range(m_max + 1)])
    w2 = np.array([1.0 / math.comb(2 + m, 2) for m in range(m_max + 1)])
    for lo in range(0, n_lanes, chunk):
        part = tails[lo : lo + chunk]
        e = np.zeros((len(part), s_max + 1, m_max + 1))
        e[:, 0, 0] = 1.0
        for k in range(n_tail):
            w = part[:, k, None] ** np.arange(b + 1)[None, :] * inv_fact[None, :]  # (L, b+1)
            new = e * w[:, 0, None, None]
            for r in range(1, b + 1):
                if r > s_max:
                    break
                if r < b:
                    new[:, r:, :] += e[:, : s_max + 1 - r, :] * w[:, r, None, None]
                elif m_max >= 1:
                    new[:, r:, 1:] += e[:, : s_max + 1 - r, :-1] * w[:, r, None, None]
            e = new
        out1[lo : lo + chunk] = np.einsum("lsm,m->ls", e, w1)  # numpy's own loop, no BLAS (see above)
        out2[lo : lo + chunk] = np.einsum("lsm,m->ls", e, w2)
    return out1, out2


def posterior(num: np.ndarray, den: np.ndarray, exclude: int | None = None) -> np.ndarray:
    """P[a, b, n] from the parts, optionally leaving candidate ``exclude`` out; 0 where every L is 0."""
    if exclude is None:
        n_sum, d_sum = num.sum(axis=0), den.sum(axis=0)
    else:
        others = [c for c in range(num.shape[0]) if c != exclude]
        n_sum, d_sum = num[others].sum(axis=0), den[others].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(d_sum > 0, n_sum / np.where(d_sum > 0, d_sum, 1.0), 0.0)
    return p


def flat_states(n_max: int = N_MAX) -> list[tuple[int, int, int]]:
    """The (a, b, n) states of the shipped table, in its order: n ascending, then b, then a (a >= max(b, 1))."""
    return [(a, b, n) for n in range(1, n_max + 1) for b in range(0, n // 2 + 1) for a in range(max(b, 1), n - b + 1)]


def flatten(p: np.ndarray, n_max: int = N_MAX) -> np.ndarray:
    """The table P[a, b, n] as the flat float64 vector the runtime reads (order of ``flat_states``)."""
    return np.array([p[a, b, n] for a, b, n in flat_states(n_max)], dtype=np.float64)


def stop_table(p: np.ndarray, threshold: float, n_max: int) -> list[list[int]]:
    """For n = 0..n_max and b = 0..n//2: the least a >= max(b, 1) with P(a, b, n) >= threshold (0: none).

    The stop set must be closed upwards in a (checked: ValueError otherwise), so this list is exact.
    """
    out: list[list[int]] = []
    for n in range(n_max + 1):
        row = []
        for b in range(n // 2 + 1):
            hits = [a >= 0 and float(p[a, b, n]) >= threshold for a in range(max(b, 1), n - b + 1)]
            first = next((k for k, h in enumerate(hits) if h), None)
            if first is not None and not all(hits[first:]):
                raise ValueError(f"stop set not monotone in a at b={b}, n={n}")
            row.append(0 if first is None else max(b, 1) + first)
        out.append(row)
    return out
