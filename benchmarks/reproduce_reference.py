"""Check every row of the authors' reference CSVs against our replay + baselines; print a table.

    python benchmarks/reproduce_reference.py [--workers 2] [--interpreter inprocess|cpython|pypy]

``cpython`` and ``pypy`` run every row as a task of the runner under that interpreter (the ``process``
backend: these are our own sources) and score it with the judge, as the sandboxed path does.

Reads ``$AUTOTTS_DATA`` (default ``<repo>/../shared/data``). Exit status 1 if any row differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from autotts_graph.sandbox.backends.base import SandboxTask
from autotts_graph.sandbox.backends.process import ProcessBackend
from autotts_graph.sandbox.judge import judge_point, load_judge_pack, score_in_process
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.store.packs import write_pack
from autotts_graph.tools.reference import load_reference_rows
from replay_data import data_root

REPO = Path(__file__).resolve().parents[1]


def _check(job: tuple) -> tuple:
    pack_file, method, config, interpreter = job
    source = (REPO / "sandbox" / "controllers" / f"{method}.py").read_text()
    seeds = list(range(100))
    started = time.perf_counter()
    if interpreter == "inprocess":
        r = score_in_process(load_controller_class(source), pack_file, config, seeds, frozenset())
    else:
        backend = ProcessBackend()
        try:
            res = backend.run(SandboxTask(source=source, packs={"env": pack_file}, points=[config], seeds=seeds,
                                          trace_seeds=[], interpreter=interpreter, work=3000))
        finally:
            backend.close()
        if not res.ok or res.interpreter != interpreter:
            raise SystemExit(f"{method} {config}: {res.error} (ran on {res.interpreter!r})")
        r, _ = judge_point(load_judge_pack(pack_file), res.results[0], config, seeds, frozenset())
    return r["accuracy"], int(r["avg_cost"]), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--interpreter", choices=["inprocess", "cpython", "pypy"], default="inprocess")
    args = parser.parse_args()
    data = data_root()
    rows = load_reference_rows(data / "reference-results")
    packs_dir = Path(tempfile.mkdtemp(prefix="autotts-ref-"))
    packs = {}
    for row in rows:
        key = f"{row.model}/{row.dataset}"
        if key not in packs:
            records = json.loads((data / "autotts-replay" / row.model / f"{row.dataset}.json").read_text())
            packs[key] = str(write_pack(key, records, packs_dir))
    jobs = [(packs[f"{r.model}/{r.dataset}"], r.method, r.config, args.interpreter) for r in rows]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_check, jobs))
    wall = time.perf_counter() - started
    bad = 0
    print("| model | method | config | reference acc / cost | ours acc / cost | match |")
    print("|---|---|---|---|---|---|")
    for row, (acc, cost, _) in zip(rows, results, strict=True):
        ok = acc == row.accuracy and cost == row.cost
        bad += not ok
        cfg = ", ".join(f"{k}={v}" for k, v in row.config.items() if k in ("beta", "max_samples", "window_size",
                                                                            "num_chains", "threshold"))
        print(f"| {row.model} | {row.method} | {cfg} | {row.accuracy} / {row.cost} | {acc} / {cost} | "
              f"{'yes' if ok else 'NO'} |")
    print(f"\n{len(rows) - bad} of {len(rows)} rows reproduced exactly ({args.interpreter}); {wall:.1f} s wall on "
          f"{args.workers} workers")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
