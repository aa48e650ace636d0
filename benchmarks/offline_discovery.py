"""Offline discovery on the real AutoTTS environments, without the LangGraph graph.

The loop is the graph's, in-process: the offline proposer writes a controller, the contract check and the
offline critic vet it, the β sweep runs on the AIME24 search environments of the four backbones, the offline
diagnostician reads the outcomes and traces, and the next proposal follows the diagnosis. At the end the
selected controller (best search fitness) is evaluated once on the held-out AIME25 environments.

Run ``python benchmarks/offline_discovery.py [--rounds 10] [--seeds 100] [--workers 2]``. Data is read from
``$AUTOTTS_DATA`` or ``<repo>/../shared/data``. Baseline sweeps are cached under ``--cache-dir`` (keyed by the
pack content hash, the baseline source and the seeds), so only the first run pays for them.

Prints: best-so-far by round (search fitness and mean-over-envs accuracy/cost), the non-domination check of
the selected controller's β points against every baseline configuration — SC@k and ASC(k, 0.95) for
k = 1..64, ESC(16/32/64, 8), Parallel-Probe(k) for k = 1..64 — both on the mean over the four search
environments and per environment, and the held-out AIME25 table of the selected controller against the
reference baselines and CMC β ∈ {0.5, 1.0}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autotts_graph.graph.agents.genome import Genome
from autotts_graph.graph.agents.heuristic import (
    HeuristicProposer,
    RuleCritic,
    StatsDiagnostician,
    baseline_means,
    fitness,
    mean_curve,
    non_dominated_points,
)
from autotts_graph.graph.agents.roles import (
    BaselinePoint,
    CriticInput,
    CurvePoint,
    DiagnoseInput,
    HistoryEntry,
    ProposerInput,
    QuestionOutcome,
    TraceSample,
)
from autotts_graph.sandbox.runtime.evaluate import ControllerError, evaluate_point, load_controller_class
from autotts_graph.sandbox.runtime.replay import ReplayPack, load_pack
from autotts_graph.sandbox.runtime.validate import validate_source
from autotts_graph.store.packs import write_pack
from autotts_graph.tools.validate import static_issues

REPO = Path(__file__).resolve().parents[1]
CONTROLLERS = REPO / "sandbox" / "controllers"
MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
BETAS = [round(0.1 * i, 1) for i in range(11)]
POWERS = (1, 2, 4, 8, 16, 32, 64)
PP_FIXED = {"T": 40, "prune_patience": 7, "warm_up": 15}

# Every baseline configuration the non-domination check compares against (the brief's sweeps).
SEARCH_SWEEPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sc": [(f"SC@{k}", {"k": k}) for k in range(1, 65)],
    "asc": [(f"ASC({k})", {"max_samples": k, "threshold": 0.95}) for k in range(1, 65)],
    "esc": [(f"ESC({k},8)", {"max_samples": k, "window_size": 8}) for k in (16, 32, 64)],
    "parallel_probe": [(f"PP({k})", {"num_chains": k, **PP_FIXED}) for k in range(1, 65)],
}
# The reference rows of the paper's table (spec §8.4) plus CMC, for the held-out comparison.
HELDOUT_SWEEPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sc": [("SC@64", {"k": 64})],
    "asc": [("ASC(64)", {"max_samples": 64, "threshold": 0.95})],
    "esc": [("ESC(64,8)", {"max_samples": 64, "window_size": 8})],
    "parallel_probe": [("PP(64)", {"num_chains": 64, **PP_FIXED})],
    "cmc": [("CMC β=0.5", {"beta": 0.5}), ("CMC β=1.0", {"beta": 1.0})],
}
METHOD_TITLES = {"sc": "SC@k", "asc": "ASC", "esc": "ESC", "parallel_probe": "Parallel-Probe", "cmc": "CMC"}


def data_root() -> Path:
    """``$AUTOTTS_DATA`` or the shared data folder next to the repository."""
    env = os.environ.get("AUTOTTS_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_envs(dataset: str, cache_dir: Path, models: Iterable[str] = MODELS) -> dict[str, Path]:
    """Pack paths of ``<model>/<dataset>`` for the given models (packs written once into the cache)."""
    out: dict[str, Path] = {}
    for model in models:
        path = data_root() / "autotts-replay" / model / f"{dataset}.json"
        records = json.loads(path.read_text())
        out[f"{model}/{dataset}"] = write_pack(f"{model}/{dataset}", records, cache_dir / "packs")
    return out


# --------------------------------------------------------------------------- evaluation (process pool)

_PACKS: dict[str, ReplayPack] = {}
_CLASSES: dict[str, type] = {}


def _pack(path: str) -> ReplayPack:
    pack = _PACKS.get(path)
    if pack is None:
        pack = _PACKS[path] = load_pack(path)
    return pack


def _job(args: tuple[str, str, dict[str, Any], list[int], list[int]]) -> dict[str, Any]:
    """One (source, env, config) point; controller failures come back as an error dict, never raised."""
    source, pack_path, config, seeds, trace_seeds = args
    try:
        key = hashlib.sha256(source.encode()).hexdigest()
        cls = _CLASSES.get(key)
        if cls is None:
            cls = _CLASSES[key] = load_controller_class(source)
        return evaluate_point(cls, _pack(pack_path), config, seeds, frozenset(trace_seeds))
    except ControllerError as exc:
        return {"error": {"kind": exc.kind, "message": exc.message, "details": exc.details}}


def _indexed_job(item: tuple[int, tuple]) -> tuple[int, dict[str, Any]]:
    return item[0], _job(item[1])


class Evaluator:
    """Runs (source, env, config) jobs on a fork pool; the same numbers as the sandbox's evaluator."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool = multiprocessing.get_context("fork").Pool(self.workers) if self.workers > 1 else None

    def run(self, jobs: list[tuple[str, str, dict[str, Any], list[int], list[int]]]) -> list[dict[str, Any]]:
        """Results in job order."""
        if self._pool is None:
            return [_job(j) for j in jobs]
        return self._pool.map(_job, jobs, chunksize=1)

    def run_unordered(self, jobs: list[tuple[str, str, dict[str, Any], list[int], list[int]]]):
        """(job index, result) pairs as they complete (so callers can cache each one at once)."""
        if self._pool is None:
            for i, job in enumerate(jobs):
                yield i, _job(job)
            return
        yield from self._pool.imap_unordered(_indexed_job, list(enumerate(jobs)), chunksize=1)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()


def baseline_rows(evaluator: Evaluator, envs: dict[str, Path], sweeps: dict[str, list[tuple[str, dict]]],
                  seeds: list[int], cache_dir: Path) -> list[dict[str, Any]]:
    """Accuracy and cost of every baseline configuration on every environment (cached on disk)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    jobs, slots = [], []
    for method, configs in sweeps.items():
        source = (CONTROLLERS / f"{method}.py").read_text()
        for env, pack_path in envs.items():
            for label, config in configs:
                key = hashlib.sha256(json.dumps([source, Path(pack_path).name, config, seeds],
                                                sort_keys=True).encode()).hexdigest()[:24]
                cached = cache_dir / f"baseline-{key}.json"
                row = {"method": method, "label": label, "env": env, "config": config}
                if cached.exists():
                    row.update(json.loads(cached.read_text()))
                    rows.append(row)
                    continue
                jobs.append((source, str(pack_path), config, seeds, []))
                slots.append((row, cached))
    if jobs:
        # Cheap configurations first and each result cached as it lands: an interrupted sweep resumes.
        order = sorted(range(len(jobs)), key=lambda i: _expected_cost(jobs[i][2]))
        print(f"computing {len(jobs)} baseline points (cached under {cache_dir})", file=sys.stderr, flush=True)
        for k, res in evaluator.run_unordered([jobs[i] for i in order]):
            row, cached = slots[order[k]]
            if "error" in res:
                raise RuntimeError(f"baseline {row['label']} failed on {row['env']}: {res['error']}")
            figures = {"accuracy": res["accuracy"], "avg_cost": res["avg_cost"]}
            cached.write_text(json.dumps(figures))
            row.update(figures)
            rows.append(row)
    order_of = {(m, label): i for m, configs in sweeps.items() for i, (label, _) in enumerate(configs)}
    rows.sort(key=lambda r: (r["method"], order_of[(r["method"], r["label"])], r["env"]))
    return rows


def _budget(config: dict[str, Any]) -> int:
    return int(config.get("k", config.get("max_samples", config.get("num_chains", 0))))


def _expected_cost(config: dict[str, Any]) -> float:
    if "num_chains" in config:
        return 10.0 * config["num_chains"]
    if "beta" in config:
        return 100.0
    return float(config.get("k", config.get("max_samples", 1)))


def to_baseline_points(rows: list[dict[str, Any]]) -> list[BaselinePoint]:
    """Baseline rows as the agents see them."""
    return [BaselinePoint(method=r["method"], label=r["label"], env=r["env"], accuracy=r["accuracy"],
                          avg_cost=r["avg_cost"]) for r in rows]


# --------------------------------------------------------------------------- one candidate

def sweep(evaluator: Evaluator, source: str, envs: dict[str, Path], betas: list[float], seeds: list[int],
          trace_seeds: list[int]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The β sweep of one source on the environments: (results, first error or None)."""
    jobs = [(source, str(path), {"beta": b}, seeds, trace_seeds) for path in envs.values() for b in betas]
    # Costly high-β jobs first keeps both workers busy to the end.
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][2]["beta"])
    results: list[dict[str, Any]] = [{}] * len(jobs)
    for i, res in zip(order, evaluator.run([jobs[i] for i in order]), strict=True):
        results[i] = res
    errors = [r["error"] for r in results if "error" in r]
    return results, (errors[0] if errors else None)


def evidence(results: list[dict[str, Any]], packs: dict[str, ReplayPack]) -> tuple[
        list[CurvePoint], list[QuestionOutcome], list[TraceSample]]:
    """Curve, per-question outcomes and traces of a sweep, as the diagnostician reads them."""
    curve, outcomes, traces = [], [], []
    for res in results:
        env, beta = res["env"], res["config"]["beta"]
        curve.append(CurvePoint(env=env, beta=beta, accuracy=res["accuracy"], avg_cost=res["avg_cost"]))
        golds = [q.gold for q in packs[env].questions]
        n_seeds = len(res["correct"])
        for qi, gold in enumerate(golds):
            answers = [row[qi] for row in res["answers"]]
            counts: dict[Any, int] = {}
            for a in answers:
                counts[a] = counts.get(a, 0) + 1
            modal = max(counts, key=counts.__getitem__) if counts else None
            outcomes.append(QuestionOutcome(env=env, beta=beta, question_index=qi, gold=gold,
                                            accuracy=sum(row[qi] for row in res["correct"]) / n_seeds,
                                            mean_tokens=sum(row[qi] for row in res["tokens"]) / n_seeds,
                                            modal_answer=modal))
        for t in res["traces"]:
            traces.append(TraceSample(env=env, beta=beta, seed=t["shuffle_seed"], question_index=t["question_index"],
                                      is_correct=t["is_correct"], cost=t["cost"], answer=t["answer"],
                                      steps=t["trace"]))
    return curve, outcomes, traces


# --------------------------------------------------------------------------- the loop

def discovery(args: argparse.Namespace) -> dict[str, Any]:
    """Run the offline loop and print the figures; returns everything as a JSON-able dict."""
    cache_dir = Path(args.cache_dir).expanduser()
    seeds = list(range(args.seeds))
    evaluator = Evaluator(args.workers)
    t0 = time.perf_counter()
    search = load_envs("aime24", cache_dir, args.models)
    packs = {name: load_pack(path) for name, path in search.items()}
    first_pack = packs[next(iter(packs))]
    sweeps = SEARCH_SWEEPS
    if args.baseline_budgets == "powers":
        sweeps = {m: [(label, c) for label, c in configs if _budget(c) in POWERS] for m, configs in sweeps.items()}
    rows = baseline_rows(evaluator, search, sweeps, list(range(100)), cache_dir)
    baselines = to_baseline_points(rows)
    print(f"search envs: {', '.join(search)}; {len(rows)} baseline configurations "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)

    proposer = HeuristicProposer(seed=args.seed)
    critic = RuleCritic()
    diagnostician = StatsDiagnostician()
    history: list[HistoryEntry] = []
    diagnosis = None
    best: tuple[float, HistoryEntry] | None = None
    by_round: list[dict[str, Any]] = []
    print(f"\n{'round':>5} {'candidate':<10} {'fitness':>8} {'maxacc':>7} {'nondom':>6} {'best':>8}  mechanisms / top "
          "diagnosis", flush=True)
    for rnd in range(args.rounds):
        t_round = time.perf_counter()
        feedback: list[str] = []
        last_source = None
        proposal = None
        for attempt in range(args.attempts):
            proposal = proposer.propose(ProposerInput(
                round=rnd, attempt=attempt, search_envs=list(search), betas=BETAS, history=history,
                baselines=baselines, diagnosis=diagnosis, feedback=feedback, last_source=last_source, seed=args.seed))
            errors, warnings = static_issues(proposal.source)
            schedule: dict[str, dict[str, Any]] = {}
            if not errors:
                try:
                    report = validate_source(proposal.source, first_pack)
                    errors, schedule = report["errors"], report["schedule"]
                except ControllerError as exc:
                    errors = [f"{exc.kind}: {exc.message}"]
            verdict = critic.review(CriticInput(source=proposal.source, check_errors=errors, check_warnings=warnings,
                                                schedule=schedule, history=history))
            if verdict.approve:
                break
            history.append(HistoryEntry(candidate_id=f"r{rnd:02d}a{attempt}", round=rnd, origin="offline",
                                        parent=proposal.parent_id, source=proposal.source, status="rejected",
                                        notes=verdict.reasons, genome=proposal.genome))
            feedback, last_source = verdict.reasons, proposal.source
            print(f"{rnd:>5} rejected: {'; '.join(verdict.reasons)[:160]}", flush=True)
            proposal = None
        if proposal is None:
            continue
        cid = f"r{rnd:02d}"
        results, error = sweep(evaluator, proposal.source, search, BETAS, seeds, [0])
        if error is not None:
            diagnosis = diagnostician.diagnose(DiagnoseInput(candidate_id=cid, source=proposal.source,
                                                             error_kind=error["kind"], error=error["message"]))
            history.append(HistoryEntry(candidate_id=cid, round=rnd, origin="offline", parent=proposal.parent_id,
                                        source=proposal.source, status="crashed", diagnosis=diagnosis,
                                        genome=proposal.genome))
            print(f"{rnd:>5} {cid:<10} crashed: {error['message'][:120]}", flush=True)
            continue
        curve, outcomes, traces = evidence(results, packs)
        diagnosis = diagnostician.diagnose(DiagnoseInput(candidate_id=cid, source=proposal.source, curve=curve,
                                                         baselines=baselines, outcomes=outcomes, traces=traces))
        mean = mean_curve(curve)
        entry = HistoryEntry(candidate_id=cid, round=rnd, name=proposal.genome and Genome.model_validate(
                                 proposal.genome).describe() or "", origin="offline", parent=proposal.parent_id,
                             source=proposal.source, curve=curve, search_accuracy=max(a for _, a, _ in mean),
                             diagnosis=diagnosis, genome=proposal.genome)
        history.append(entry)
        fit = fitness(curve, baselines)
        nondom = sum(r["dominated_by"] is None for r in non_dominated_points(curve, baselines, "mean"))
        if best is None or fit > best[0]:
            best = (fit, entry)
        by_round.append({"round": rnd, "candidate": cid, "fitness": fit, "max_accuracy": entry.search_accuracy,
                         "non_dominated_mean_points": nondom, "best_fitness": best[0], "best": best[1].candidate_id,
                         "mechanisms": entry.name, "diagnosis": diagnosis.summary, "actions": diagnosis.actions,
                         "rationale": proposal.rationale, "seconds": time.perf_counter() - t_round})
        top = diagnosis.failure_modes[0].kind if diagnosis.failure_modes else "-"
        print(f"{rnd:>5} {cid:<10} {fit:>+8.2f} {entry.search_accuracy:>7.2f} {nondom:>4}/11 {best[0]:>+8.2f}  "
              f"{entry.name} | {top} → {','.join(diagnosis.actions[:3])} ({time.perf_counter() - t_round:.0f}s)",
              flush=True)
    if best is None:
        evaluator.close()
        raise SystemExit("no candidate was evaluated")
    selected = best[1]
    out: dict[str, Any] = {"rounds": by_round, "selected": selected.candidate_id, "source": selected.source,
                           "genome": selected.genome}
    print("\nbest so far by round (fitness = mean over β of the accuracy margin, in points, over the baselines' "
          "frontier at equal mean cost):")
    print("  " + " ".join(f"r{r['round']}:{r['best_fitness']:+.2f}" for r in by_round))
    if args.final_seeds != args.seeds:
        # Re-score the selection on the baselines' protocol (100 seeds) before comparing with them.
        results, error = sweep(evaluator, selected.source, search, BETAS, list(range(args.final_seeds)), [])
        if error is None:
            curve = [CurvePoint(env=r["env"], beta=r["config"]["beta"], accuracy=r["accuracy"],
                                avg_cost=r["avg_cost"]) for r in results]
            selected = selected.model_copy(update={"curve": curve})
            print(f"selected {selected.candidate_id} re-evaluated with {args.final_seeds} seeds: fitness "
                  f"{fitness(curve, baselines):+.2f}")
    out["search_curve"] = [p.model_dump() for p in selected.curve]
    if args.baseline_budgets != "all":
        # The check itself always uses every configuration of the brief's sweeps.
        baselines = to_baseline_points(baseline_rows(evaluator, search, SEARCH_SWEEPS, list(range(100)), cache_dir))
    out["non_domination"] = report_non_domination(selected, baselines)
    out["heldout"] = report_heldout(evaluator, selected, list(range(args.final_seeds)), cache_dir, args.models)
    evaluator.close()
    out["seconds"] = time.perf_counter() - t0
    return out


def report_non_domination(selected: HistoryEntry, baselines: list[BaselinePoint]) -> dict[str, Any]:
    """Print and return the selected controller's β points with the baseline that dominates each (if any)."""
    mean_rows = non_dominated_points(selected.curve, baselines, "mean")
    env_rows = non_dominated_points(selected.curve, baselines, "env")
    envs = {p.env for p in selected.curve}
    base = baseline_means(baselines, envs)
    print(f"\nselected {selected.candidate_id}: {selected.name}")
    print(f"non-domination on the MEAN over the {len(envs)} AIME24 search envs vs {len(base)} baseline configurations "
          "(SC@1..64, ASC(1..64, 0.95), ESC(16/32/64, 8), PP(1..64)):")
    print(f"  {'β':>4} {'acc':>6} {'cost':>8}  dominated by")
    for r in mean_rows:
        by = r["dominated_by"] or "— (non-dominated)"
        print(f"  {r['beta']:>4} {r['accuracy']:>6.2f} {r['avg_cost'] / 1000:>7.1f}k  {by}")
    per_env: dict[str, int] = defaultdict(int)
    for r in env_rows:
        per_env[r["env"]] += r["dominated_by"] is None
    print("  per env, non-dominated β points: " + ", ".join(f"{e}: {n}/11" for e, n in sorted(per_env.items())))
    return {"mean": mean_rows, "per_env": env_rows}


def report_heldout(evaluator: Evaluator, selected: HistoryEntry, seeds: list[int], cache_dir: Path,
                   models: Iterable[str] = MODELS) -> dict[str, Any]:
    """Evaluate the selected controller once on AIME25 and print it next to the reference baselines and CMC."""
    heldout = load_envs("aime25", cache_dir, models)
    rows = baseline_rows(evaluator, heldout, HELDOUT_SWEEPS, list(range(100)), cache_dir)
    results, error = sweep(evaluator, selected.source, heldout, BETAS, seeds, [])
    if error is not None:
        print(f"held-out evaluation failed: {error['message']}")
        return {"error": error}
    ours = [{"label": f"{selected.candidate_id} β={r['config']['beta']}", "env": r["env"], "accuracy": r["accuracy"],
             "avg_cost": r["avg_cost"]} for r in results]
    table = rows + [{"method": "selected", **o} for o in ours]
    envs = list(heldout)
    labels = list(dict.fromkeys(r["label"] for r in table))
    cell = {(r["label"], r["env"]): r for r in table}
    print(f"\nheld-out AIME25 ({len(seeds)} seeds for the selected controller, 100 for baselines): accuracy % / "
          "k tokens per question")
    print(f"  {'method':<16}" + "".join(f"{e.split('/')[0]:>18}" for e in envs) + f"{'mean':>18}")
    for label in labels:
        cells = [cell.get((label, e)) for e in envs]
        if any(c is None for c in cells):
            continue
        acc = statistics.fmean(c["accuracy"] for c in cells)
        cost = statistics.fmean(c["avg_cost"] for c in cells)
        print(f"  {label:<16}" + "".join(f"{c['accuracy']:>8.2f} / {c['avg_cost'] / 1000:>6.1f}k" for c in cells)
              + f"{acc:>8.2f} / {cost / 1000:>6.1f}k")
    ref = [b for b in to_baseline_points(rows) if b.method != "cmc"]
    nd = non_dominated_points([CurvePoint(env=o["env"], beta=float(o["label"].split("=")[-1]), accuracy=o["accuracy"],
                                          avg_cost=o["avg_cost"]) for o in ours], ref, "mean")
    print("  held-out, mean over envs, β points not dominated by SC@64/ASC(64)/ESC(64,8)/PP(64): "
          + ", ".join(str(r["beta"]) for r in nd if r["dominated_by"] is None))
    return {"rows": table, "non_dominated_vs_reference": nd}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=100, help="shuffle seeds per (env, β) point")
    ap.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, 16)))
    ap.add_argument("--seed", type=int, default=0, help="proposer seed")
    ap.add_argument("--attempts", type=int, default=3, help="proposals per round before giving up on the round")
    ap.add_argument("--cache-dir", default="~/.cache/autotts-graph/offline-discovery")
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="backbones (default: all four)")
    ap.add_argument("--baseline-budgets", choices=("all", "powers"), default="all",
                    help="SC/ASC/PP budgets the proposer and diagnostician see during the search: k = 1..64 "
                         "(all) or powers of two (cheaper to compute); the final check always uses all")
    ap.add_argument("--final-seeds", type=int, default=100,
                    help="seeds for re-evaluating the selected controller on the search envs before the "
                         "non-domination check (the baselines always use 100)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    out = discovery(args)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=str))
        print(f"\nwrote {args.out}")
    print(f"total {out['seconds']:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
