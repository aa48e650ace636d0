"""Search strategies and ablations at equal budget, over several discovery seeds (issue 23).

    python benchmarks/discovery_ablation.py [--store PATH] [--seeds 3] [--budget 48] [--population 8]
        [--arms evolve,random,greedy,no-diagnosis,no-critic,no-cascade] [--models Qwen3-4B,...] [--quick]
        [--eval-seeds 100] [--screen-seeds 10] [--baselines all] [--workers 2] [--sandbox auto] [--data DIR]
        [--plot PATH]

Every arm runs the shipped graph (``graph/runner.start_run``, offline roles) ``--seeds`` times with discovery
seeds 0, 1, …, each at the same budget: ``--budget`` candidates screened (``max_evaluations``; greedy, one
candidate a generation, gets ``--budget`` generations). The search set is the AIME24 environment of each model
in ``--models``, the held-out set its AIME25 environment (imported into the store from ``--data``,
``$AUTOTTS_DATA`` or ``<repo>/../shared/data``; a temporary store unless ``--store`` is given). The arms:
``evolve`` (the default search), ``random`` (independent proposals), ``greedy`` (refine the best so far), and
``evolve`` with ``--no-diagnosis``, ``--no-critic`` or ``--no-cascade``.

Prints, per arm and model, on the held-out set (AIME25: the search never sees it), the mean ± sd over seeds of
the selected controller's β points dominated by CMC, by ASC and by any baseline configuration (the report's
frontier table), and of the points where it dominates CMC (the report's bootstrap verdicts); the sums over models;
the search fitness of the pick; candidates screened per hour of discovery wall time; the exact sign-flip
permutation test over paired seeds of evolve against random (the sum over models of β points dominated by any
baseline configuration); and a plot of the best fitness against candidates screened, one line per arm with a
band (min to max) over seeds, saved to ``--plot`` (printed at the end).

``--quick``: budget 8 in two generations of 4, 2 seeds, 10 evaluation seeds and 4 screen seeds (a smoke run
of every path; the first generation is the seed mixes, the same in every arm but greedy). The full
default takes hours on 2 cores; baselines are computed once per protocol and then read from the cache.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from autotts_graph.cli.repeat_report import spread_cell  # the --repeat table's mean ± sd

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = {  # arm -> RunConfig settings
    "evolve": {},
    "random": {"strategy": "random"},
    "greedy": {"strategy": "greedy"},
    "no-diagnosis": {"use_diagnosis": False},
    "no-critic": {"use_critic": False},
    "no-cascade": {"cascade": False},
}
FIGURES = (("cmc", "dominated by CMC"), ("asc", "dominated by ASC"), ("any", "dominated by any baseline"),
           ("beats_cmc", "dominates CMC"))


def sign_flip_test(diffs: list[float]) -> float:
    """Two-sided p-value of the exact sign-flip permutation test of paired differences (mean 0 under the null):
    the share of the 2^n sign assignments whose mean is at least as far from 0 as the observed one."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return math.nan
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    means = np.abs((signs * d).mean(axis=1))
    return float((means >= observed - 1e-12).mean())


def per_model_counts(view, envs: list[str]) -> dict[str, dict[str, int]]:
    """Per held-out environment: the selected controller's β points dominated by CMC, by ASC and by any baseline
    configuration, all three by the report's frontier table (``run_view.domination``: one rule, so "any" counts
    at least what CMC or ASC does), and the points where it dominates CMC by the report's CMC verdicts (the
    bootstrap over questions: a gain outside the interval, or 10 % cheaper at no lower accuracy)."""
    from autotts_graph.graph import scoring
    from autotts_graph.graph.run_view import domination

    held = view.heldout
    out: dict[str, dict[str, int]] = {}
    if held is None or held.winner is None:
        return out
    verdicts = scoring.dominance_counts(held.versus_cmc)
    def dominated(winner, baselines) -> int:
        rows, _ = domination(winner, baselines)
        return sum(1 for r in rows if r.dominated_by)

    for env in envs:
        winner = held.winner.model_copy(update={"points": [p for p in held.winner.points if p.env == env]})
        out[env] = {"cmc": dominated(winner, [b for b in held.baselines if b.method == "cmc"]),
                    "asc": dominated(winner, [b for b in held.baselines if b.method == "asc"]),
                    "any": dominated(winner, held.baselines),
                    "beats_cmc": verdicts.get(env, {}).get("dominates", 0)}
    return out


def best_by_screened(view) -> list[float | None]:
    """The run's best fully evaluated fitness after each screened candidate, in the run's (generation, slot)
    order."""
    best: float | None = None
    out: list[float | None] = []
    for m in sorted((m for m in view.archive if m.migrated_from is None), key=lambda m: m.order):
        if m.stage >= 2 and m.fitness is not None:
            best = m.fitness if best is None else max(best, m.fitness)
        out.append(best)
    return out


def discovery_hours(store, run_id: str, wall_s: float) -> float:
    """The run's wall time less the baselines before it and the held-out evaluation after it, in hours."""
    from autotts_graph.store import history

    spend = history.run_spend(store, run_id)
    around = sum(spend[n].seconds for n in ("prepare", "heldout") if n in spend)
    return max(wall_s - around, 1e-9) / 3600


def run_arm(store, arm: str, seed: int, args, search: list[str], held: list[str]) -> dict:
    """One discovery run of ``arm`` under discovery seed ``seed``: its figures."""
    from autotts_graph.graph.configuration import RoleSettings, RunConfig
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.nodes.prepare import resolve_config
    from autotts_graph.graph.run_view import build_run_view
    from autotts_graph.graph.runner import start_run

    offline = RoleSettings(kind="offline")
    settings = ARMS[arm]
    greedy = settings.get("strategy") == "greedy"
    rounds = args.budget if greedy else math.ceil(args.budget / args.population)
    extra = {} if args.baselines == "all" else {"baselines": args.baselines.split(",")}
    cfg = RunConfig(search_envs=search, heldout_envs=held, rounds=rounds, population=args.population,
                    max_evaluations=args.budget, seeds=args.eval_seeds, screen_seeds=args.screen_seeds,
                    workers=args.workers, sandbox=args.sandbox, seed=seed, trace_seeds=1, proposer=offline,
                    critic=offline, diagnostician=offline, **settings, **extra)
    cfg = resolve_config(cfg, store)
    provider = DepsProvider(store_path=store.path)
    started = time.perf_counter()
    try:
        state = start_run(cfg, provider)
    finally:
        provider.close()
    view = build_run_view(store, cfg.run_id)
    hours = discovery_hours(store, cfg.run_id, state.wall_s)
    print(f"  {arm} seed {seed}: run {cfg.run_id} {state.status}, screened {state.screened}, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return {"arm": arm, "seed": seed, "run_id": cfg.run_id, "status": state.status, "screened": state.screened,
            "per_hour": state.screened / hours, "fitness": view.best_fitness if view.run.selected else None,
            "models": per_model_counts(view, held), "curve": best_by_screened(view)}


def table(results: list[dict], arms: list[str], held: list[str]) -> list[str]:
    """The per-arm, per-model table (mean ± sd over seeds), then the sums over models and the throughput."""
    lines = ["## Held-out β points (AIME25), mean ± sd over seeds", "",
             "| arm | model | " + " | ".join(title for _, title in FIGURES) + " |",
             "|---|---|" + "---|" * len(FIGURES)]
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        for env in [*held, "sum"]:
            cells = []
            for key, _ in FIGURES:
                if env == "sum":
                    values = [sum(m[key] for m in r["models"].values()) if r["models"] else math.nan for r in runs]
                else:
                    values = [r["models"][env][key] if env in r["models"] else math.nan for r in runs]
                cells.append(spread_cell(values))
            name = "**sum over models**" if env == "sum" else env.split("/")[0]
            lines.append(f"| {arm} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Search fitness of the pick and throughput", "",
              "| arm | seeds | search fitness | candidates screened | screened per hour |", "|---|---|---|---|---|"]
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        lines.append(f"| {arm} | {len(runs)} | {spread_cell([r['fitness'] for r in runs if r['fitness'] is not None])}"
                     f" | {spread_cell([float(r['screened']) for r in runs])} | "
                     f"{spread_cell([r['per_hour'] for r in runs])} |")
    return [*lines, ""]


def paired_test(results: list[dict]) -> list[str]:
    """Evolve against random over paired seeds: the sum over models of β points dominated by any baseline."""
    def score(r: dict) -> float:
        return float(sum(m["any"] for m in r["models"].values())) if r["models"] else math.nan

    by = {(r["arm"], r["seed"]): r for r in results}
    seeds = sorted({s for a, s in by if a == "evolve"} & {s for a, s in by if a == "random"})
    diffs = [score(by[("random", s)]) - score(by[("evolve", s)]) for s in seeds]
    diffs = [d for d in diffs if not math.isnan(d)]
    if not diffs:
        return ["## Evolve against random", "", "no paired seeds with held-out figures", ""]
    p = sign_flip_test(diffs)
    return ["## Evolve against random (paired over seeds)", "",
            f"- β points dominated by any baseline configuration, summed over models, random − evolve per seed: "
            f"{diffs} (mean {np.mean(diffs):+.2f}; positive: evolve is dominated less)",
            f"- exact sign-flip permutation test, two-sided: p = {p:.3f} over {len(diffs)} paired seeds "
            f"(the smallest p it can give is {2 / 2 ** len(diffs):.3f})", ""]


def plot(results: list[dict], arms: list[str], path: Path, budget: int) -> Path:
    """Best fitness against candidates screened: one line per arm (the mean over seeds), a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    xs = np.arange(1, budget + 1)
    for arm in arms:
        curves = []
        for r in (r for r in results if r["arm"] == arm):
            c = [math.nan if v is None else v for v in r["curve"]][:budget]
            c += [c[-1] if c else math.nan] * (budget - len(c))  # a run that stopped early keeps its best
            curves.append(c)
        if not curves:
            continue
        arr = np.array(curves, dtype=float)
        if np.isnan(arr).all():
            continue
        with warnings.catch_warnings():  # a screened position no seed has a full evaluation at yet: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, lo, hi = np.nanmean(arr, axis=0), np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)
        (line,) = ax.plot(xs, mean, label=f"{arm} ({len(curves)} seeds)")
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("candidates screened")
    ax.set_ylabel("best fitness so far (search set)")
    ax.set_title("Best fitness against evaluations (band: min to max over seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=None, help="discovery seeds per arm (default 3; --quick 2)")
    ap.add_argument("--budget", type=int, default=None, help="candidates screened per run (default 48; --quick 8)")
    ap.add_argument("--population", type=int, default=None, help="candidates a generation (default 8; --quick 4)")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--models", default="", help="comma-separated models (default: all four)")
    ap.add_argument("--quick", action="store_true", help="budget 8 (2 x 4), 2 seeds, 10 evaluation and 4 screen seeds")
    ap.add_argument("--eval-seeds", type=int, default=None, help="shuffle seeds per evaluation (default 100)")
    ap.add_argument("--screen-seeds", type=int, default=None, help="seeds of the screen (default 10)")
    ap.add_argument("--baselines", default="all", help="comma-separated baselines (default: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sandbox", default="auto")
    ap.add_argument("--data", type=Path, default=None, help="the data folder holding autotts-replay/ "
                                                            "(default $AUTOTTS_DATA or <repo>/../shared/data)")
    ap.add_argument("--plot", type=Path, default=None, help="where the plot goes (default: next to the store)")
    args = ap.parse_args()
    # --quick: two generations of four, so that the arms differ after the shared first generation.
    quick = {"seeds": 2, "budget": 8, "population": 4, "eval_seeds": 10, "screen_seeds": 4}
    full = {"seeds": 3, "budget": 48, "population": 8, "eval_seeds": 100, "screen_seeds": 10}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.screen_seeds = min(args.screen_seeds, args.eval_seeds)
    if args.data is not None:
        os.environ["AUTOTTS_DATA"] = str(args.data)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")

    from replay_data import MODELS, replay_store

    models = [m for m in args.models.split(",") if m] or MODELS
    if any(m not in MODELS for m in models):
        ap.error(f"--models: choose from {MODELS}")
    store, tmp = replay_store(args.store, "discovery-ablation-")
    search, held = [f"{m}/aime24" for m in models], [f"{m}/aime25" for m in models]
    started = time.perf_counter()
    results = [run_arm(store, arm, seed, args, search, held) for arm in arms for seed in range(args.seeds)]
    out = [f"# Discovery ablation: {len(arms)} arms x {args.seeds} seeds, budget {args.budget} screened", "",
           f"Search: {', '.join(search)}; held out: {', '.join(held)}; population {args.population}, "
           f"{args.eval_seeds} evaluation seeds, screen {args.screen_seeds} seeds; baselines {args.baselines}; "
           f"{os.cpu_count()} cores; {(time.perf_counter() - started) / 60:.1f} min in all.", "",
           "| arm | seed | run | status | screened |", "|---|---|---|---|---|",
           *(f"| {r['arm']} | {r['seed']} | {r['run_id']} | {r['status']} | {r['screened']} |" for r in results), ""]
    out += table(results, arms, held)
    if "evolve" in arms and "random" in arms:
        out += paired_test(results)
    path = args.plot or (Path(tempfile.gettempdir()) / "discovery_ablation.png" if tmp else
                         store.path.with_suffix(".ablation.png"))
    out.append(f"plot: {plot(results, arms, path, args.budget)}")
    print("\n".join(out))
    if tmp is not None:
        print(f"(temporary store {store.path} removed; pass --store to keep it)", file=sys.stderr)


if __name__ == "__main__":
    main()
