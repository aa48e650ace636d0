"""Regenerate sandbox/runtime/beta_conf.npy: 1 - scipy.stats.beta.cdf(0.5, t1+1, t2+1) in float64.

The replay spec (§4.3) makes scipy's float64 values normative for bit-exact reproduction; shipping them as
a table keeps scipy out of the sandbox runtime. Run: python scripts/make_beta_table.py
"""

from pathlib import Path

import numpy as np
from scipy.stats import beta

SIZE = 129  # counts 0..128: every vote over at most 128 branches


def main() -> None:
    t1, t2 = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    table = np.where(t1 <= 0, 0.0, 1.0 - beta.cdf(0.5, t1 + 1, t2 + 1))
    out = Path(__file__).resolve().parents[1] / "sandbox" / "runtime" / "beta_conf.npy"
    np.save(out, table.astype(np.float64))
    print(f"wrote {out} ({SIZE}x{SIZE})")


if __name__ == "__main__":
    main()
