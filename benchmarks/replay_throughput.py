"""Replay speed with the judge in place: CMC solves per second on one core under CPython and PyPy, the
judge's cost per point, and the full search sweep (11 betas x 4 AIME24 envs x 100 seeds) through a sandbox.

    python benchmarks/replay_throughput.py [--workers 2] [--sandbox none|process|docker|bwrap|auto]

The reference evaluator does ~125 solves/s on this machine class (CMC beta=1, one env, 3,000 solves).
Targets (issue 11): >= 50x that per core; the docker sweep in < 15 s on 2 cores. The data comes from
$AUTOTTS_DATA (default ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from autotts_graph.sandbox.backends.base import INTERPRETER_ENV, RUNTIME_DIR
from autotts_graph.sandbox.judge import judge_point, load_judge_pack
from autotts_graph.sandbox.runtime.evaluate import evaluate_point, load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.store.packs import write_pack
from replay_data import REPO, ensure_envs, replay_dir

BETAS = [round(0.1 * i, 1) for i in range(11)]
REFERENCE_SOLVES_PER_S = 125.0
SEEDS = list(range(100))

# Runs inside the interpreter under test: one process, three passes (the first includes PyPy's warm-up).
PASSES = """
import json, sys, time
from autotts_runtime.evaluate import evaluate_point, load_controller_class
from autotts_runtime.replay import load_pack
pack, source, beta = load_pack(sys.argv[1]), open(sys.argv[2]).read(), float(sys.argv[3])
cls = load_controller_class(source)
times = []
for _ in range(3):
    t = time.perf_counter()
    raw = evaluate_point(cls, pack, {"beta": beta}, list(range(100)), frozenset())
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "raw": raw}))
"""


def interpreter_passes(exe: str, pack: str, source_file: str, beta: float, work: Path) -> dict:
    """Time three in-process passes of the runtime under ``exe`` (the runtime on its path and the
    environment of the box)."""
    (work / "autotts_runtime").exists() or (work / "autotts_runtime").symlink_to(RUNTIME_DIR)
    out = subprocess.run([exe, "-s", "-c", PASSES, pack, source_file, str(beta)], capture_output=True, text=True,
                         check=True, cwd=work, env={"PYTHONPATH": str(work), "PATH": "/usr/bin:/bin",
                                                    **INTERPRETER_ENV})
    return json.loads(out.stdout)


def _verdict(met: bool, target: str) -> str:
    return f" [target {target}: {'met' if met else 'MISSED'}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sandbox", default="docker", help="time the sweep through this backend ('none' skips)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autotts-bench-"))
    source_file = REPO / "sandbox" / "controllers" / "cmc.py"
    source = source_file.read_text()
    env = "Qwen3-4B/aime25"
    pack = str(write_pack(env, json.loads((replay_dir() / "Qwen3-4B" / "aime25.json").read_text()), tmp))
    jp = load_judge_pack(pack)
    for beta in (0.5, 1.0):
        rows = {}
        for name, exe in (("cpython", os.path.realpath(shutil.which("python3") or "python3")),
                          ("pypy", shutil.which("pypy3"))):
            if exe is None:
                print(f"  {name}: not installed (apt-get install pypy3)")
                continue
            res = interpreter_passes(exe, pack, str(source_file), beta, tmp)
            t = time.perf_counter()
            point, _ = judge_point(jp, res["raw"], {"beta": beta}, SEEDS, frozenset())
            judge_s = time.perf_counter() - t
            rows[name] = (point["accuracy"], repr(point["avg_cost"]))
            cold, warm = res["times"][0], min(res["times"][1:])
            print(f"CMC beta={beta} {env} under {name}: 3000 solves cold {cold:.2f} s = {3000 / cold:,.0f}/s "
                  f"({3000 / cold / REFERENCE_SOLVES_PER_S:.0f}x reference), warm {warm:.2f} s = "
                  f"{3000 / warm:,.0f}/s ({3000 / warm / REFERENCE_SOLVES_PER_S:.0f}x); judge {judge_s * 1000:.0f} ms;"
                  f" acc {point['accuracy']} cost {point['avg_cost']!r}"
                  + (_verdict(3000 / warm / REFERENCE_SOLVES_PER_S >= 50, ">= 50x warm")
                     if (beta, name) == (1.0, "pypy") else ""))
        if len(set(rows.values())) > 1:
            raise SystemExit(f"interpreters disagree: {rows}")
    cls = load_controller_class(source)
    started = time.perf_counter()
    evaluate_point(cls, load_pack(pack), {"beta": 1.0}, SEEDS, frozenset())
    print(f"(in this process, CPython: {3000 / (time.perf_counter() - started):,.0f} solves/s)")
    if args.sandbox != "none":
        from autotts_graph.store.db import Store
        from autotts_graph.tools.context import ToolContext
        from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

        store = Store(tmp / "bench.duckdb")
        envs = ensure_envs(store, ("aime24",))
        ctx = ToolContext(store=store, sandbox=args.sandbox, workers=args.workers)
        if hasattr(ctx.backend, "pool"):  # a warm machine: containers ready before the clock starts
            ctx.backend.pool.start(wait=True)
        started = time.perf_counter()
        summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=envs, betas=BETAS, seeds=100))
        ctx.close()
        assert summary.ok, summary.error
        print(f"full sweep ({len(BETAS)} betas x {len(envs)} envs x 100 seeds, traces for seed 0) through the "
              f"{summary.backend} sandbox under {summary.interpreter}, judged, audited and recorded: "
              f"{(elapsed := time.perf_counter() - started):.1f} s on {args.workers} workers"
              + _verdict(elapsed < 15, "< 15 s"))


if __name__ == "__main__":
    main()
