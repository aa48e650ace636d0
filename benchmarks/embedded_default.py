"""The newcomer's first command, timed: `autotts-graph run` on an empty store (issue 23).

    python benchmarks/embedded_default.py [--repeats 1] [-- extra run flags]

Runs the installed `autotts-graph run --no-live` (offline agents: no API key is passed on) as a new process in
a fresh temporary directory, so the store is empty and receives the synthetic default environments, exactly as
the README's first set-up command does. Prints per run the wall-clock time of the whole command, the seconds
of each graph node as the run recorded them (lanes run side by side, so node seconds add up to more than the
wall time), and the load average before and after (the machine may be shared: compare runs at similar load).
Target: under 2 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "autotts-graph"
    return [str(script)] if script.exists() else [sys.executable, "-m", "autotts_graph.cli.main"]


def one_run(extra: list[str]) -> None:
    from autotts_graph.store import history
    from autotts_graph.store.db import Store

    with tempfile.TemporaryDirectory(prefix="autotts-embedded-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AUTOTTS_STORE")}
        before = _load()
        started = time.perf_counter()
        out = subprocess.run([*_cli(), "run", "--no-live", *extra], cwd=tmp, env=env, capture_output=True,
                             text=True)
        wall = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"the run failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        store = Store(Path(tmp) / "autotts.duckdb")
        run = history.list_runs(store)[0]
        spend = history.run_spend(store, run.run_id)
        print(f"## `autotts-graph run` on an empty store: {wall:.1f} s wall ({wall / 60:.2f} min; target < 2 min: "
              f"{'met' if wall < 120 else 'MISSED'}); load {before} before, {_load()} after")
        print("\n| node | executions | seconds |\n|---|---|---|")
        for node in sorted(spend):
            print(f"| {node} | {spend[node].calls} | {spend[node].seconds:.1f} |")
        print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="flags passed on to `autotts-graph run` (after --)")
    args = ap.parse_args()
    for _ in range(args.repeats):
        one_run(args.extra)


if __name__ == "__main__":
    main()
