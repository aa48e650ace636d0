"""What the fitness, the selection and the archive make of a finished discovery run (issue 23).

    python benchmarks/fitness_and_archive.py --store PATH [--run RUN_ID] [--heldout CAND,CAND,...]

Reads a run from the store (``autotts-graph run`` or ``discovery_vs_cmc.py`` on the real data, AIME24 search
and AIME25 held out) and prints:

1. per fully evaluated candidate, on the search set: the frontier margin, the fitness, the β points that any
   baseline configuration dominates per model (the report's bootstrap rule), the scaling shortfall per model,
   and its gain from β 0.5 to 1 against CMC's; its rank by margin alone and by fitness;
2. the selection record: finalists, fresh-seed fitness, lower bounds, whether the pick changed;
3. archive cells occupied per generation as the run placed its members, and what one cost band per octave x
   family (the descriptors before issue 23) and the current descriptors make of the same members; each
   island's best elites;
4. with ``--heldout``: the given candidates evaluated once on the held-out environments (report only: nothing
   here feeds a search), with the same per-model figures against the held-out baselines.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

from autotts_graph.graph import archive, evidence, scoring
from autotts_graph.store import history
from autotts_graph.store.db import Store
from autotts_graph.tools.baselines import point_label


def split_baselines(store: Store, report: dict, split: str) -> list[scoring.Outcomes]:
    """The run's baseline configurations on one split, with their per-question outcomes."""
    out = []
    for key, ev in sorted((report.get("baseline_evaluations") or {}).items()):
        method, _, sp = key.partition("@")
        if sp == split:
            for p in evidence.points_with_outcomes(store, ev):
                o = scoring.outcomes_from_point(p)
                o.method, o.label = method, point_label(method, p.get("config") or {})
                out.append(o)
    return out


def per_model(curve: list[scoring.Outcomes], base: list[scoring.Outcomes]) -> tuple[scoring.Fitness, list]:
    """The fitness parts and, per environment, (the curve's, CMC's) accuracy gain from β 0.5 to 1."""
    parts = scoring.fitness_parts(curve, base)
    gains = []
    for env in sorted(parts.points):
        own = {o.beta: o.accuracy for o in curve if o.env == env}
        cmc = {o.beta: o.accuracy for o in base if o.env == env and o.method == "cmc"}
        gains.append((round(own.get(1.0, math.nan) - own.get(0.5, math.nan), 2),
                      round(cmc.get(1.0, math.nan) - cmc.get(0.5, math.nan), 2)))
    return parts, gains


def candidates_table(store: Store, run_id: str, report: dict) -> None:
    base = split_baselines(store, report, "search")
    rows = []
    for c in history.candidates(store, run_id):
        if (c.stage or 0) >= 2 and c.evaluation_id:
            parts, gains = per_model(evidence.curve_outcomes(store, c.evaluation_id), base)
            rows.append((c.candidate_id, c.round, parts, gains))
    by_margin = [r[0] for r in sorted(rows, key=lambda r: -r[2].margin)]
    by_fitness = [r[0] for r in sorted(rows, key=lambda r: -r[2].value)]
    print("## Fully evaluated candidates (search)\n")
    print("| candidate | gen | margin | fitness | dominated per model (of β points) | shortfall per model | "
          "gain β 0.5→1 own / CMC per model | rank by margin | rank by fitness |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cid, gen, p, g in sorted(rows, key=lambda r: by_margin.index(r[0])):
        envs = sorted(p.points)
        print(f"| {cid} | {gen} | {p.margin:+.3f} | {p.value:+.3f} | {[p.dominated[e] for e in envs]} (sum "
              f"{p.dominated_total}) | {[round(p.shortfall.get(e, 0.0), 2) for e in envs]} | {g} | "
              f"{by_margin.index(cid)} | {by_fitness.index(cid)} |")
    print()


def selection(report: dict) -> None:
    sel = report.get("selection")
    print("## Selection\n")
    if not sel:
        print("no selection record (a run from before issue 23)\n")
        return
    for f in sel["finalists"]:
        print(f"- rank {f['rank']} {f['candidate_id']}: fitness {f['fitness']:+.3f} on the search seeds, "
              f"{f['fresh_fitness'] if f['fresh_fitness'] is None else round(f['fresh_fitness'], 3)} on fresh "
              f"seeds, lower bound {f['lower_bound'] if f['lower_bound'] is None else round(f['lower_bound'], 3)}, "
              f"audit {f['audit']}")
    print(f"- point estimate's pick {sel['point_pick']}, selected {sel['selected']}: "
          f"{'changed' if sel['changed'] else 'unchanged'} ({sel['why']})\n")


def archive_spread(store: Store, run_id: str) -> None:
    members = history.list_archive(store, run_id)
    screens = history.evaluation_points(store, [m.screen_evaluation_id for m in members if m.screen_evaluation_id])
    gens = sorted({m.generation for m in members})
    placed: dict[int, set] = defaultdict(set)
    octave: dict[int, set] = defaultdict(set)
    now: dict[int, set] = defaultdict(set)
    for m in members:
        curve = evidence.curve_from_points(screens[m.screen_evaluation_id].points)
        tokens = archive.mean_tokens(curve)
        before = f"c{math.floor(math.log2(max(tokens or 1.0, 1.0)))}|{m.family}"  # the pre-issue-23 niche
        current = archive.niche_of(archive.cost_band(tokens), m.family, archive.scaling_band(curve))
        for g in gens:
            if m.generation <= g:
                placed[g].add((m.island, m.niche))
                octave[g].add((m.island, before))
                now[g].add((m.island, current))
    print("## Archive\n")
    print(f"- cells occupied per generation, as placed: {[len(placed[g]) for g in gens]}; niches "
          f"{len({m.niche for m in members})}")
    print(f"- the same members, one cost band per octave x family: {[len(octave[g]) for g in gens]}; half-octave "
          f"band x scaling band x family: {[len(now[g]) for g in gens]}")
    arch = archive.Archive(members)
    for island in sorted({m.island for m in members}):
        elites = arch.elites(island)
        print(f"- island {island}: best elites {[e.candidate_id for e in elites[:3]]}; {len(elites)} elites, "
              f"{sum(1 for e in elites if e.migrated_from is None)} born there")
    print()


def heldout(store: Store, run_id: str, report: dict, wanted: list[str]) -> None:
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    cfg = history.get_run(store, run_id).config
    base = split_baselines(store, report, "heldout")
    ctx = ToolContext(store=store, sandbox=cfg.get("sandbox", "auto"), workers=2, expose_heldout=True)
    print("## Held-out (report only)\n")
    try:
        for cid in wanted:
            ev_id = history.find_evaluation(store, run_id=run_id, candidate_id=cid, split="heldout")
            if ev_id is None:
                cand = history.get_candidate(store, run_id, cid)
                ev_id = evaluate_controller(ctx, EvaluateInput(
                    source=cand.source, envs=cfg["heldout_envs"], betas=cfg["betas"], seeds=cfg["seeds"],
                    trace_seeds=0, split="heldout", label=f"benchmark heldout {cid}")).evaluation_id
            parts, gains = per_model(evidence.curve_outcomes(store, ev_id), base)
            envs = sorted(parts.points)
            print(f"- {cid}: margin {parts.margin:+.3f}, fitness {parts.value:+.3f}; dominated by some baseline "
                  f"configuration per model {[parts.dominated[e] for e in envs]} (sum {parts.dominated_total}); "
                  f"gain β 0.5→1 own / CMC {gains}")
    finally:
        ctx.close()
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--run", default=None, help="run id (default: the store's first run)")
    ap.add_argument("--heldout", default="", help="comma-separated candidate ids to evaluate on the held-out set")
    args = ap.parse_args()
    store = Store(args.store)
    run_id = args.run or history.list_runs(store)[-1].run_id
    report = history.get_run(store, run_id).report or {}
    print(f"# Run {run_id}\n")
    candidates_table(store, run_id, report)
    selection(report)
    archive_spread(store, run_id)
    if args.heldout:
        heldout(store, run_id, report, [c for c in args.heldout.split(",") if c])


if __name__ == "__main__":
    main()
