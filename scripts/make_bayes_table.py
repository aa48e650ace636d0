"""Regenerate sandbox/runtime/bayes_posterior.npy: the Bayesian-stopping posterior under the parameter-free prior.

More-baselines spec §1: P(leader is the mode | a, b, n) for every state with n <= 64, under the equal-weight
mixture of 10 geometric candidates (q_j ∝ θ^(j-1), j = 1..12, θ = 0.1..1.0). Computed with numpy here
(``autotts_graph.tools.bayes_prior``) and read in the box with the standard library
(``sandbox/runtime/bayes.py``), so replay stays fast and numpy-free. Run: python scripts/make_bayes_table.py
"""

from pathlib import Path

import numpy as np
from autotts_graph.tools.bayes_prior import N_MAX, flatten, geometric_prior, posterior, posterior_parts


def main() -> None:
    num, den = posterior_parts(geometric_prior(), N_MAX)
    flat = flatten(posterior(num, den), N_MAX)
    out = Path(__file__).resolve().parents[1] / "sandbox" / "runtime" / "bayes_posterior.npy"
    np.save(out, flat.astype("<f8"))
    print(f"wrote {out} ({flat.size} states, n <= {N_MAX})")


if __name__ == "__main__":
    main()
