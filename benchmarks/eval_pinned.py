"""A one-off `eval` pinned to one core against the reference evaluator's rate (issue 23).

    python benchmarks/eval_pinned.py [--repeats 3] [--core 0] [--seeds 100] [--store PATH]

Runs `taskset -c CORE autotts-graph eval <fresh copy of CMC> --env M/aime25 (the 4 models) --betas 1 --seeds N
--sandbox docker --json` as a new process, with no sandbox daemon (``AUTOTTS_SANDBOX_DAEMON=0``): the command
connects to the engine, starts its containers (pinned to the same core: they inherit the command's cores) and
PyPy, replays, judges, audits and records. A fresh source each time, so nothing comes from the cache.

Prints per run the wall time of the whole command, the boxes' replay time, solves per second over the wall time
and that rate against the reference evaluator's ~125 solves/s on one core of this machine class (the figure
benchmarks/replay_throughput.py uses: CMC β = 1, one environment, 3,000 solves). Target: >= 25x. The load
average comes with every figure: on a shared machine take the best of several runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from replay_data import MODELS, ensure_envs

REFERENCE_SOLVES_PER_S = 125.0


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    from autotts_graph.store.db import Store
    from autotts_graph.tools.baselines import baseline_source

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--store", type=Path, default=None)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="autotts-eval-pinned-")
    store = Store(args.store or Path(tmp.name) / "store.duckdb")
    ensure_envs(store, ("aime25",))
    envs = [f"{m}/aime25" for m in MODELS]
    questions = 30 * len(envs)
    solves = questions * args.seeds
    script = Path(sys.executable).parent / "autotts-graph"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "autotts_graph.cli.main"]
    environ = {**{k: v for k, v in os.environ.items() if k != "AUTOTTS_SANDBOX_SOCKET"}, "AUTOTTS_SANDBOX_DAEMON": "0"}
    print(f"eval baseline:cmc (a fresh copy), β = 1, {len(envs)} AIME25 environments x {args.seeds} seeds = {solves:,} "
          f"solves, pinned to core {args.core}; reference: {REFERENCE_SOLVES_PER_S:.0f} solves/s = "
          f"{solves / REFERENCE_SOLVES_PER_S:.0f} s")
    print("\n| run | wall s | replay s | solves/s (wall) | x reference | load before |\n|---|---|---|---|---|---|")
    best = 0.0
    for i in range(args.repeats):
        source = Path(tmp.name) / f"cmc_{time.time_ns()}.py"
        source.write_text(baseline_source("cmc") + f"\nFRESH = \"{time.time_ns()}\"  # never in the cache\n")
        before = _load()
        started = time.perf_counter()
        cmd = ["taskset", "-c", str(args.core), *cli, "eval", str(source), "--store", str(store.path),
               *[a for e in envs for a in ("--env", e)], "--betas", "1", "--seeds", str(args.seeds),
               "--sandbox", "docker", "--json"]
        out = subprocess.run(cmd, env=environ, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if out.returncode != 0:
            raise SystemExit(f"eval failed: {out.stderr.strip().splitlines()[-1:]}")
        summary = json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1])
        rate = solves / wall
        best = max(best, rate / REFERENCE_SOLVES_PER_S)
        times = rate / REFERENCE_SOLVES_PER_S
        print(f"| {i + 1} | {wall:.2f} | {summary['replay_s']:.2f} | {rate:,.0f} | {times:.1f}x | {before} |")
    print(f"\nbest: {best:.1f}x the reference evaluator (target >= 25x: {'met' if best >= 25 else 'MISSED'})")


if __name__ == "__main__":
    main()
