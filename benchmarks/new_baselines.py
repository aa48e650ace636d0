"""The field's other answer-only baselines against the paper's on the shipped AIME24/AIME25 data.

    python benchmarks/new_baselines.py --store /tmp/nb.duckdb [--seeds 100] [--workers 2] [--sandbox process]
                                       [--no-sweeps] [--no-speed]

Prints, in markdown:
1. a table in the style of the paper's Table 1: every baseline at its reference configurations (SC@64,
   ASC(64), ESC(64,8), Parallel-Probe(64), CMC at beta 0.5 and 1, and each new method at beta 1, its 64-branch
   ceiling) on the 4 AIME24 (search) and 4 AIME25 (held-out) environments;
2. with the sweeps: every (environment, new-method beta point) that dominates a CMC beta point on the same
   environment (accuracy >= and tokens <=, one of them strictly), and the same on the means over each split;
   the best accuracy each method reaches within token budgets; single-branch exits against plain branches;
3. replay speed: solves per second of each new controller, one core, no judge, at beta 0, 0.5 and 1 on
   Qwen3-4B/aime25 (3,000 solves each): in this process (CPython) and under PyPy when pypy3 is installed.

The store gets the 8 environments from $AUTOTTS_DATA (default ../shared/data) when it lacks them (AIME24
search, AIME25 held out). Evaluations go through the ordinary baselines tool, so they are cached in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autotts_graph.cli.report import cost_k
from autotts_graph.sandbox.backends.base import RUNTIME_DIR
from autotts_graph.sandbox.runtime.evaluate import evaluate_point, load_controller_class
from autotts_graph.sandbox.runtime.replay import load_pack
from autotts_graph.store.db import Store
from autotts_graph.store.trajectories import pack_path
from autotts_graph.tools.baselines import (
    CONTROLLERS_DIR,
    METHODS,
    NEW_METHODS,
    REFERENCE,
    SWEEPS,
    BaselineInput,
    baseline_configs,
    baseline_source,
    fitted_tables,
    point_label,
    run_baseline,
)
from autotts_graph.tools.context import ToolContext
from replay_data import MODELS, ensure_envs

SEARCH = [f"{m}/aime24" for m in MODELS]
HELD = [f"{m}/aime25" for m in MODELS]
SPEED_ENV = "Qwen3-4B/aime25"


def run(ctx: ToolContext, method: str, configs: list[dict] | None, seeds: int) -> list:
    """Rows of one baseline on all 8 environments (held-out included: this is a benchmark, not an agent)."""
    started = time.perf_counter()
    summary, rows = run_baseline(ctx, BaselineInput(method=method, envs=SEARCH + HELD, seeds=seeds,
                                                    configs=baseline_configs(method, configs) if configs else None,
                                                    fit_envs=SEARCH))
    if not summary.ok:
        raise SystemExit(f"{method}: {summary.error.kind.value}: {summary.error.message}")
    print(f"  {method}: {len(rows)} points in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def table1(rows: list) -> str:
    """Models as row blocks, methods as rows, AIME24 / AIME25 / held-out average as columns."""
    cell = {(r.label, r.point.env): r.point for r in rows}
    labels = list(dict.fromkeys(r.label for r in rows))
    out = ["| model | method | AIME24 (search) acc / tokens | AIME25 (held-out) acc / tokens |", "|---|---|---|---|"]
    for model in MODELS:
        for label in labels:
            parts = []
            for env in (f"{model}/aime24", f"{model}/aime25"):
                p = cell.get((label, env))
                parts.append(f"{p.accuracy:.2f} / {cost_k(p.avg_cost)}" if p else "")
            out.append(f"| {model} | {label} | {parts[0]} | {parts[1]} |")
    out.append("| **mean of 4 models** | | | |")
    for label in labels:
        parts = []
        for envs in (SEARCH, HELD):
            pts = [cell[(label, e)] for e in envs if (label, e) in cell]
            if len(pts) == len(envs):
                acc = sum(p.accuracy for p in pts) / len(pts)
                parts.append(f"{acc:.2f} / {cost_k(sum(p.avg_cost for p in pts) / len(pts))}")
            else:
                parts.append("")
        out.append(f"| mean | {label} | {parts[0]} | {parts[1]} |")
    return "\n".join(out)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(accuracy, cost) a dominates b."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def domination(sweeps: dict[str, list]) -> str:
    """Which new-method points dominate which CMC β points, per environment and on the split means."""
    def points(method: str) -> dict[str, dict[str, tuple[float, float]]]:
        by: dict[str, dict[str, tuple[float, float]]] = {}
        for r in sweeps[method]:
            by.setdefault(r.point.env, {})[r.label] = (r.point.accuracy, r.point.avg_cost)
        for name, envs in (("mean AIME24", SEARCH), ("mean AIME25", HELD)):
            labels = set.intersection(*(set(by.get(e, {})) for e in envs))
            by[name] = {lab: (sum(by[e][lab][0] for e in envs) / len(envs),
                              sum(by[e][lab][1] for e in envs) / len(envs)) for lab in labels}
        return by

    cmc = points("cmc")
    lines = ["| environment | new method point | acc / tokens | dominates CMC at β |", "|---|---|---|---|"]
    count = 0
    for method in NEW_METHODS:
        mine = points(method)
        for env in [*SEARCH, *HELD, "mean AIME24", "mean AIME25"]:
            for label, own in sorted(mine.get(env, {}).items(), key=lambda kv: kv[1][1]):
                beaten = [lab.split("β=")[1] for lab, c in sorted(cmc.get(env, {}).items(), key=lambda kv: kv[1][1])
                          if dominates(own, c)]
                if beaten:
                    count += 1
                    lines.append(f"| {env} | {label} | {own[0]:.2f} / {cost_k(own[1])} | {', '.join(beaten)} |")
    head = f"{count} (environment, new-method point) pairs dominate at least one CMC β point (11-point sweeps)."
    return head + "\n\n" + "\n".join(lines)


BUDGETS_K = (25, 50, 100, 200, 400, 800)


def _means(rows: list, envs: list[str]) -> list[tuple[str, float, float]]:
    """(label, mean accuracy, mean tokens) over ``envs`` for every label present on all of them."""
    by: dict[str, list] = {}
    for r in rows:
        if r.point.env in envs:
            by.setdefault(r.label, []).append(r.point)
    return [(lab, sum(p.accuracy for p in pts) / len(pts), sum(p.avg_cost for p in pts) / len(pts))
            for lab, pts in by.items() if len(pts) == len(envs)]


def budget_table(sweeps: dict[str, list]) -> str:
    """Per method and split: the best mean accuracy of its sweep points whose mean tokens fit each budget."""
    head = " | ".join(f"{s} ≤{b}k" for s in ("AIME24", "AIME25") for b in BUDGETS_K)
    out = [f"| method | {head} |", "|---|" + "---|" * (2 * len(BUDGETS_K))]
    for method, rows in sweeps.items():
        cells = []
        for envs in (SEARCH, HELD):
            pts = _means(rows, envs)
            for b in BUDGETS_K:
                fit = [acc for _, acc, cost in pts if cost <= 1000 * b]
                cells.append(f"{max(fit):.2f}" if fit else "–")
        out.append(f"| {SWEEPS[method][0]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def single_branch(ctx: ToolContext, seeds: int) -> str:
    """Single-branch exits against one or two plain branches (the spec's "one branch or less" expectation)."""
    plan = [("sc", [{"k": 1}, {"k": 2}]), ("short1", [{"beta": 0.0}, {"beta": 0.1}]),
            ("dynasor", [{"N": n, "k": 1} for n in (2, 3, 8, 12, 16)]),
            ("es_cot", [{"d_min": d, "k": 1} for d in (2, 5, 10, 15)])]
    out = ["| configuration | AIME24 acc / tokens | AIME25 acc / tokens |", "|---|---|---|"]
    for method, configs in plan:
        rows = run(ctx, method, configs, seeds)
        for config in baseline_configs(method, configs):
            label = point_label(method, config)
            cells = []
            for envs in (SEARCH, HELD):
                (_, acc, cost), = [m for m in _means(rows, envs) if m[0] == label]
                cells.append(f"{acc:.2f} / {cost_k(cost)}")
            out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(out)


# Runs under PyPy with the runtime on its path, as in the box: the best of two passes per config (warm JIT).
PYPY_PASSES = """
import json, sys, time
from autotts_runtime.evaluate import evaluate_point, load_controller_class
from autotts_runtime.replay import load_pack
pack, cls, configs = load_pack(sys.argv[1]), load_controller_class(open(sys.argv[2]).read()), json.loads(sys.argv[3])
seeds = list(range(int(sys.argv[4])))
out = []
for config in configs:
    best = None
    for _ in range(2):
        t = time.perf_counter()
        evaluate_point(cls, pack, config, seeds, frozenset())
        best = min(best or 1e9, time.perf_counter() - t)
    out.append(best)
print(json.dumps(out))
"""


def _pypy_seconds(pack: str, method: str, configs: list[dict], seeds: int, work: Path) -> list[float] | None:
    """Seconds per config under Debian's pypy3, or None when it is not installed."""
    exe = shutil.which("pypy3")
    if exe is None:
        return None
    link = work / "autotts_runtime"
    link.exists() or link.symlink_to(RUNTIME_DIR)
    source = CONTROLLERS_DIR / f"{METHODS[method].source}.py"
    out = subprocess.run([exe, "-s", "-c", PYPY_PASSES, pack, str(source), json.dumps(configs), str(seeds)],
                         capture_output=True, text=True, check=True, cwd=work,
                         env={"PYTHONPATH": str(work), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)


def speed(store: Store, seeds: int) -> str:
    """Solves per second of each controller's replay, one core, no judge: in this process (CPython) and
    under PyPy (the interpreter the sandbox picks for these standard-library-only controllers)."""
    pack_file = str(pack_path(store, SPEED_ENV))
    pack = load_pack(pack_file)
    solves = seeds * len(pack.questions)
    out = ["| controller | CPython β=0 | β=0.5 | β=1 | PyPy β=0 | β=0.5 | β=1 |", "|---|---|---|---|---|---|---|"]
    ctx = ToolContext(store=store, sandbox="process", workers=1, expose_heldout=True)
    work = Path(tempfile.mkdtemp(prefix="autotts-nb-"))
    for method in ("cmc", "asc", *NEW_METHODS):
        cls = load_controller_class(baseline_source(method))
        configs = baseline_configs(method, betas=[0.0, 0.5, 1.0])
        if METHODS[method].fitted:  # the held-out env shares one full-fit table per β
            configs = [{**c, "stop_at": fitted_tables(ctx, SPEED_ENV, ["Qwen3-4B/aime24"], [c])[0][0]} for c in configs]
        cells = []
        for config in configs:
            started = time.perf_counter()
            evaluate_point(cls, pack, config, list(range(seeds)), frozenset())
            cells.append(f"{solves / (time.perf_counter() - started):,.0f}")
        pypy = _pypy_seconds(pack_file, method, configs, seeds, work)
        cells += [f"{solves / t:,.0f}" for t in pypy] if pypy else ["–"] * 3
        out.append(f"| {SWEEPS[method][0]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/tmp/autotts-new-baselines.duckdb"))
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sandbox", default="process", help="process (trusted baselines), docker, bwrap or auto")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the β sweeps and the domination table")
    parser.add_argument("--no-speed", action="store_true", help="skip the replay-speed table")
    args = parser.parse_args()
    store = Store(args.store)
    ensure_envs(store)
    ctx = ToolContext(store=store, sandbox=args.sandbox, workers=args.workers, expose_heldout=True)
    try:
        print("evaluating the reference points ...", file=sys.stderr)
        rows = [r for m in SWEEPS for r in run(ctx, m, REFERENCE[m], args.seeds)]
        print(f"## Reference points ({args.seeds} seeds; accuracy % / tokens per question)\n")
        print(table1(rows) + "\n")
        if not args.no_sweeps:
            print("evaluating the β sweeps ...", file=sys.stderr)
            sweeps = {m: run(ctx, m, None, args.seeds) for m in SWEEPS}
            print("## Where a new method dominates CMC\n")
            print(domination(sweeps) + "\n")
            print("## Best accuracy within a token budget (mean over the 4 models; any sweep point at or under it)\n")
            print(budget_table(sweeps) + "\n")
            print("## One branch or less (mean over the 4 models)\n")
            print(single_branch(ctx, args.seeds) + "\n")
            print("## β sweeps of the new methods (mean over the 4 models)\n")
            print("| method point | AIME24 acc / tokens | AIME25 acc / tokens |\n|---|---|---|")
            for m in ("cmc", *NEW_METHODS):
                for config in baseline_configs(m):
                    label = point_label(m, config)
                    cells = []
                    for envs in (SEARCH, HELD):
                        pts = [r.point for r in sweeps[m] if r.label == label and r.point.env in envs]
                        acc = sum(p.accuracy for p in pts) / len(pts)
                        cells.append(f"{acc:.2f} / {cost_k(sum(p.avg_cost for p in pts) / len(pts))}")
                    print(f"| {label} | {cells[0]} | {cells[1]} |")
            print()
    finally:
        ctx.close()
    if not args.no_speed:
        print(f"## Replay speed, solves/s on one core, no judge ({SPEED_ENV}, {args.seeds} seeds x 30 questions)\n")
        print(speed(store, args.seeds))


if __name__ == "__main__":
    main()
