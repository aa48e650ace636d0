"""Replay speed: CMC solves per second on one core, and the full search sweep (11 betas x 4 AIME24 envs).

    python benchmarks/replay_throughput.py [--workers 2] [--sandbox none|process|docker|bwrap|auto]

Reference implementation on this machine class: CMC beta=1 on one env (3,000 solves) ~24 s (~125 solves/s);
the full sweep ~10 min single-core. Targets: >= 10x solves/s per core, the sweep in < 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from autotts_graph.sandbox.runtime.evaluate import evaluate_point, load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.sandbox.runtime.runner import run_task
from autotts_graph.store.packs import write_pack

REPO = Path(__file__).resolve().parents[1]
MODELS = ["Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B"]
BETAS = [round(0.1 * i, 1) for i in range(11)]
REFERENCE_SOLVES_PER_S = 125.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sandbox", default="none", help="also time the sweep through this sandbox backend")
    args = parser.parse_args()
    data = Path(os.environ.get("AUTOTTS_DATA", REPO.parent / "shared" / "data")) / "autotts-replay"
    tmp = Path(tempfile.mkdtemp(prefix="autotts-bench-"))
    packs = {f"{m}/aime24": str(write_pack(f"{m}/aime24", json.loads((data / m / "aime24.json").read_text()), tmp))
             for m in MODELS}
    source = (REPO / "sandbox" / "controllers" / "cmc.py").read_text()
    cls = load_controller_class(source)
    pack = load_pack(packs["Qwen3-4B/aime24"])
    for beta in (0.5, 1.0):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            r = evaluate_point(cls, pack, {"beta": beta}, list(range(100)), frozenset())
            best = min(best, time.perf_counter() - started)
        rate = 3000 / best
        print(f"CMC beta={beta} Qwen3-4B/aime24: 3000 solves in {best:.2f} s = {rate:,.0f} solves/s/core "
              f"({rate / REFERENCE_SOLVES_PER_S:.1f}x reference); acc {r['accuracy']} cost {int(r['avg_cost'])}")
    started = time.perf_counter()
    res = run_task({"op": "evaluate", "source": source, "packs": packs, "points": [{"beta": b} for b in BETAS],
                    "seeds": list(range(100)), "trace_seeds": [0], "workers": args.workers})
    assert res["ok"], res
    print(f"full sweep in-process ({len(BETAS)} betas x {len(packs)} envs x 100 seeds, traces for seed 0): "
          f"{time.perf_counter() - started:.1f} s on {args.workers} workers")
    if args.sandbox != "none":
        from autotts_graph.store.db import Store
        from autotts_graph.store.trajectories import import_path
        from autotts_graph.tools.context import ToolContext
        from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

        store = Store(tmp / "bench.duckdb")
        for m in MODELS:
            import_path(store, data / m / "aime24.json")
        ctx = ToolContext(store=store, sandbox=args.sandbox, workers=args.workers)
        started = time.perf_counter()
        summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=list(packs), betas=BETAS, seeds=100))
        ctx.close()
        assert summary.ok, summary.error
        print(f"full sweep through the {summary.backend} sandbox, recorded in the store: "
              f"{time.perf_counter() - started:.1f} s on {args.workers} workers")


if __name__ == "__main__":
    main()
