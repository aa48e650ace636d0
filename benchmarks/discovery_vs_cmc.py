"""Discovery against CMC on the real data, through the shipped graph (issue 15).

    python benchmarks/discovery_vs_cmc.py [--store PATH] [--generations 400] [--population 8] [--wall 3600]
        [--seeds 100] [--screen-seeds 10] [--workers 2] [--sandbox auto] [--seed 0] [--resume RUN_ID]

Runs ``autotts_graph.graph.runner.start_run`` — the graph the CLI runs: generations of ``--population``
offline proposals, the critic, the cascade (a screen of ``--screen-seeds`` seeds at β 0, 0.5, 1; the full
β grid x ``--seeds`` for candidates near their niche's best), the archive, selection by fitness on the search
set — with the 4 AIME24 environments as the search set and the 4 AIME25 environments held out. The held-out
split is evaluated once, by the graph's own ``heldout`` node, after the selection; nothing here feeds it back.

Data: the 8 environments are imported from ``$AUTOTTS_DATA`` (default ``<repo>/../shared/data``) into the
store (a temporary one unless ``--store`` is given; AIME25 with split ``heldout``).

Prints:
1. candidates screened and fully evaluated, in all and per hour of discovery wall time (the baseline sweeps
   before the first generation and the held-out evaluation after the last are timed separately);
2. the best fitness by generation (fitness = mean over β and environments of the accuracy margin over the
   whole baseline frontier at equal cost, CMC at every β included);
3. for the selected controller on held-out AIME25, per model and on the 4-model mean, per β: accuracy and
   tokens against CMC at the same β, the difference with its 95 % bootstrap interval over questions, and
   whether it dominates CMC, CMC dominates it, or neither (``graph/scoring.py``);
4. on the mean over environments, search and held-out, the β points of the selected controller that no
   configuration of any baseline dominates (the run report's table); then the issue's targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from autotts_graph.cli.report import cost_k
from autotts_graph.graph import evidence, scoring
from autotts_graph.graph.configuration import RoleSettings, RunConfig
from autotts_graph.graph.deps import DepsProvider
from autotts_graph.graph.nodes.prepare import resolve_config
from autotts_graph.graph.runner import resume_run, start_run
from autotts_graph.store import history
from autotts_graph.store.db import Store
from replay_data import MODELS, replay_store

SEARCH = [f"{m}/aime24" for m in MODELS]
HELD = [f"{m}/aime25" for m in MODELS]


def observer(started: float):
    """Prints one line per finished generation (the graph's own summaries)."""
    shown = [0]

    def see(state) -> None:
        gens = getattr(state, "generations", None)  # lanes report their own (LaneState) values too
        if gens is None:
            return
        for g in gens[shown[0]:]:
            best = f"{g.best_fitness:+.3f}" if g.best_fitness is not None else "-"
            print(f"  generation {g.generation:3d}: screened {g.screened}, fully evaluated {g.promoted}, failed "
                  f"{g.failed}; best fitness {best}; archive {g.archive_members} members in {g.archive_cells} "
                  f"cells; {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        shown[0] = len(gens)
    return see


def throughput(store: Store, run_id: str, state) -> list[str]:
    spend = history.run_spend(store, run_id)
    before = spend["prepare"].seconds if "prepare" in spend else 0.0
    after = spend["heldout"].seconds if "heldout" in spend else 0.0
    wall = max(state.wall_s - before - after, 1e-9)
    members = history.list_archive(store, run_id)
    screened = state.screened or len({m.candidate_id for m in members})
    full = len(state.evaluated)
    return ["## Throughput", "",
            f"- discovery wall time {wall / 60:.1f} min on {os.cpu_count()} cores (baselines before it "
            f"{before / 60:.1f} min, held-out evaluation after it {after / 60:.1f} min)",
            f"- candidates screened: {screened} ({screened / wall * 3600:.0f} per hour)",
            f"- candidates fully evaluated: {full} ({full / wall * 3600:.0f} per hour)",
            f"- generations: {len(state.generations)}; archive {state.archive_members} members in "
            f"{state.archive_cells} cells", ""]


def fitness_by_generation(state) -> list[str]:
    lines = ["## Best fitness by generation (search set, stage 2)", "",
             "| generation | screened | fully evaluated | best of the generation | best so far |",
             "|---|---|---|---|---|"]
    for g in state.generations:
        own = f"{g.generation_best:+.3f}" if g.generation_best is not None else ""
        best = f"{g.best_fitness:+.3f}" if g.best_fitness is not None else ""
        lines.append(f"| {g.generation} | {g.screened} | {g.promoted} | {own} | {best} |")
    return [*lines, ""]


def versus_cmc(verdicts: list[scoring.Verdict], envs: list[str], title: str) -> tuple[list[str], dict]:
    """Per environment and the mean: the β points where the controller dominates CMC, where CMC dominates it,
    and the CI of the accuracy difference per β."""
    lines = [f"## {title}", ""]
    summary: dict[str, dict[str, list[float]]] = {}
    for env in [*envs, "mean"]:
        rows = sorted((v for v in verdicts if v.env == env), key=lambda v: v.beta)
        if not rows:
            continue
        wins = [v.beta for v in rows if v.status == "dominates"]
        losses = [v.beta for v in rows if v.status == "dominated"]
        summary[env] = {"dominates": wins, "dominated": losses}
        name = "4-model mean" if env == "mean" else env
        won = ", ".join(f"{b:g}" for b in wins) or "none"
        lost = ", ".join(f"{b:g}" for b in losses) or "none"
        lines += [f"**{name}**: dominates CMC at {len(wins)} of {len(rows)} β ({won}); CMC dominates it at "
                  f"{len(losses)} ({lost})", "",
                  "| β | controller acc / tokens | CMC acc / tokens | difference [95% CI] | tokens ratio | verdict |",
                  "|---|---|---|---|---|---|"]
        for v in rows:
            ci = f" [{v.ci[0]:+.2f}, {v.ci[1]:+.2f}]" if v.ci else ""
            lines.append(f"| {v.beta:g} | {v.accuracy:.2f} / {cost_k(v.avg_cost)} | {v.ref_accuracy:.2f} / "
                         f"{cost_k(v.ref_avg_cost)} | {v.diff:+.2f}{ci} | {v.cost_ratio:.2f} | {v.status} |")
        lines.append("")
    return lines, summary


def versus_baselines(store: Store, run_id: str) -> list[str]:
    """Per β on the mean over environments, search and held-out: the baseline configurations (every one the run
    evaluated, CMC included) that dominate the selected controller, as the run report shows them."""
    from autotts_graph.cli.run_report import domination_lines
    from autotts_graph.graph.run_view import build_run_view

    view = build_run_view(store, run_id)
    return [*domination_lines(view.search, "Search set (AIME24): the selected controller vs every baseline "
                                           "configuration"),
            *(domination_lines(view.heldout, "Held-out (AIME25): the selected controller vs every baseline "
                                             "configuration") if view.heldout else [])]


def targets(rate: float, held: dict) -> list[str]:
    mean = held.get("mean", {"dominates": [], "dominated": []})
    per_model = [len(held.get(e, {}).get("dominated", [])) for e in HELD]
    ok_models = sum(1 for n in per_model if n <= 2)
    checks = [(rate >= 300, f"≥300 candidates screened per hour: {rate:.0f}"),
              (not mean["dominated"], f"held-out mean: CMC dominates at 0 of 11 β: {len(mean['dominated'])}"),
              (len(mean["dominates"]) >= 4, f"held-out mean: dominates CMC at ≥4 β: {len(mean['dominates'])}"),
              (ok_models >= 3, f"≥3 of 4 models with CMC dominating at ≤2 β: {ok_models} "
                               f"(CMC dominates at {per_model} β per model)")]
    return ["## Targets", "", *[f"- [{'x' if ok else ' '}] {text}" for ok, text in checks], ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--generations", type=int, default=400)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--wall", type=float, default=3600.0, help="wall-clock budget of the run, seconds")
    ap.add_argument("--max-evaluations", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--screen-seeds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sandbox", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", default=None, help="continue this run id (same --store) instead of starting one")
    args = ap.parse_args()

    store, tmp = replay_store(args.store, "discovery-vs-cmc-")
    provider = DepsProvider(store_path=store.path)
    started = time.perf_counter()
    if args.resume:
        state = resume_run(args.resume, provider, observer=observer(started))
    else:
        offline = RoleSettings(kind="offline")
        cfg = RunConfig(search_envs=SEARCH, heldout_envs=HELD, rounds=args.generations, population=args.population,
                        seeds=args.seeds, screen_seeds=args.screen_seeds, max_wall_s=args.wall,
                        max_evaluations=args.max_evaluations, selection="frontier", workers=args.workers,
                        sandbox=args.sandbox, seed=args.seed, trace_seeds=1,
                        proposer=offline, critic=offline, diagnostician=offline)
        cfg = resolve_config(cfg, store)
        print(f"run {cfg.run_id}: store {store.path}", file=sys.stderr, flush=True)
        state = start_run(cfg, provider, observer=observer(started))
    run_id = state.config.run_id
    run = history.get_run(store, run_id)
    out = [f"# Discovery vs CMC: run {run_id} ({run.status}; stop: {state.stop_reason or '-'})", "",
           f"Search: {', '.join(SEARCH)}; held out: {', '.join(HELD)}; population {state.config.population}, "
           f"{state.config.seeds} seeds (screen {state.config.screen_seeds} seeds at β "
           f"{state.config.screen_protocol()[0]}), selection by {state.config.selection}.", ""]
    out += throughput(store, run_id, state)
    out += fitness_by_generation(state)
    best = run.best_candidate
    ids = (run.report or {}).get("baseline_evaluations", {})
    if best is None:
        out.append("No controller was selected.")
        print("\n".join(out))
        return
    cand = history.get_candidate(store, run_id, best)
    out += [f"## Selected controller: {cand.name} ({best}, generation {cand.round})", "",
            f"- mechanisms: {_describe(cand.genome)}", f"- origin: {cand.origin}", ""]
    search_ev = history.find_evaluation(store, run_id=run_id, candidate_id=best, split="search")
    search_rows = evidence.cmc_verdicts(store, search_ev, ids.get("cmc@search"))
    lines, _ = versus_cmc(search_rows, SEARCH, "Search set (AIME24), for reference: the selected controller vs CMC")
    out += lines
    held_ev = history.find_evaluation(store, run_id=run_id, candidate_id=best, split="heldout")
    held_rows = evidence.cmc_verdicts(store, held_ev, ids.get("cmc@heldout"))
    lines, held = versus_cmc(held_rows, HELD, "Held-out (AIME25): the selected controller vs CMC")
    out += lines
    out += versus_baselines(store, run_id)
    node_spend = history.run_spend(store, run_id)
    wall = state.wall_s - sum(node_spend[n].seconds for n in ("prepare", "heldout") if n in node_spend)
    screened = state.screened or len({m.candidate_id for m in history.list_archive(store, run_id)})
    out += targets(screened / max(wall, 1e-9) * 3600, held)
    print("\n".join(out))
    if tmp is not None:
        print(f"(temporary store {store.path} removed; pass --store to keep it)", file=sys.stderr)


def _describe(genome: dict | None) -> str:
    if not genome:
        return "(no genome: written outside the grammar)"
    from autotts_graph.graph.agents.genome import Genome, family

    g = Genome.model_validate(genome)
    return f"{g.describe()} (family {family(g)})"


if __name__ == "__main__":
    main()
