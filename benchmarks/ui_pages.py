"""How fast the run browser opens its pages on a large run (target: under a second for 2,000 candidates).

A store with one finished run of N candidates is synthesised through the run ledger and the history's writers
(no sandbox runs): every candidate screened on two environments at three β, one in ten fully evaluated on
eleven β, the archive filled, SC and CMC baselines, a held-out evaluation of the winner. Then
`autotts-graph ui` serves it and every page type is fetched over HTTP: the first request after start (which
builds the snapshot and the run's view), the same page again, and the pages after the store changed (a new
snapshot). With chromium installed, the run page is also timed in the browser until its plots are drawn.

    python benchmarks/ui_pages.py [--candidates 2000] [--store PATH]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from autotts_graph.store import history
from autotts_graph.store.db import Store
from autotts_graph.store.ledger import CandidateRow, CandidateStatus, RunLedger, SpendRow
from autotts_graph.store.rows import ArchiveRow

ROOT = Path(__file__).resolve().parents[1]
ENVS = ["m1/search", "m2/search"]
HELD = ["m1/heldout"]
BETAS = [round(0.1 * i, 1) for i in range(11)]
SCREEN_BETAS = [0.0, 0.5, 1.0]
QUESTIONS, SEEDS = 30, 4


def _points(rng: random.Random, envs: list[str], betas: list[float], level: float) -> list[dict]:
    """Evaluation points with per-seed outcomes and one sampled trace per (env, β), as the runtime writes them."""
    out = []
    for env in envs:
        for i, beta in enumerate(betas):
            correct = [[int(rng.random() < level + 0.2 * beta) for _ in range(QUESTIONS)] for _ in range(SEEDS)]
            tokens = [[int(20_000 * (1 + 9 * beta) * rng.uniform(0.7, 1.3)) for _ in range(QUESTIONS)]
                      for _ in range(SEEDS)]
            acc = 100.0 * sum(map(sum, correct)) / (QUESTIONS * SEEDS)
            cost = sum(map(sum, tokens)) / (QUESTIONS * SEEDS)
            steps = [{"event": "start", "goal": "", "input": None, "output": None, "state": None, "decision": None}]
            steps += [{"event": "probe", "goal": "g", "input": {"branch": k}, "output": "42", "state": None,
                       "decision": None} for k in range(30)]
            steps.append({"event": "finish", "goal": "", "input": None, "output": "42", "state": None,
                          "decision": "stop"})
            out.append({"point_index": i, "env": env, "pack_hash": "p", "cache_key": f"k{rng.random()}",
                        "config": {"beta": beta}, "beta": beta, "description": f"beta={beta}", "accuracy": acc,
                        "avg_cost": cost, "std_acc": 1.0, "params": {"beta": beta}, "acc_per_seed": [acc] * SEEDS,
                        "cost_per_seed": [cost] * SEEDS, "seeds": list(range(SEEDS)), "correct": correct,
                        "tokens": tokens, "answers": [["42"] * QUESTIONS for _ in range(SEEDS)],
                        "traces": [{"shuffle_seed": 0, "question_index": 0, "is_correct": True, "cost": 1000,
                                    "answer": "42", "trace": steps}]})
    return out


def _evaluate(store: Store, rng: random.Random, *, run_id: str, candidate_id: str | None, label: str, split: str,
              envs: list[str], betas: list[float], level: float) -> str:
    evaluation_id = history.new_id("ev")
    history.record_evaluation(store, evaluation_id=evaluation_id, code="h", label=label, split=split,
                              protocol={"seeds": SEEDS, "envs": envs,
                                        "audited_solves": {"counterfactual": 44, "relabelling": 44}},
                              points=_points(rng, envs, betas, level), run_id=run_id, candidate_id=candidate_id)
    return evaluation_id


def synthesise(path: Path, n: int) -> str:
    """A store holding one finished run of ``n`` candidates; returns its run id."""
    rng = random.Random(0)
    store = Store(path)
    run_id = "run-bench"
    ledger = RunLedger(store, run_id)
    ledger.open(config={"betas": BETAS, "seeds": SEEDS, "population": 20, "selection": "frontier",
                        "screen_margin": 0.1}, search_envs=ENVS, heldout_envs=HELD)
    base = (ROOT / "sandbox" / "controllers" / "cmc.py").read_text()
    baselines = {f"{m}@search": _evaluate(store, rng, run_id=run_id, candidate_id=None, label=f"baseline:{m}",
                                          split="search", envs=ENVS, betas=BETAS, level=0.4) for m in ("sc", "cmc")}
    population, members, best = 20, [], (None, -1e9)
    for i in range(n):
        gen, slot = divmod(i, population)
        cid = f"cand-{i:05d}"
        parent = f"cand-{rng.randrange(i):05d}" if i >= population else None
        ledger.add_candidate(CandidateRow(candidate_id=cid, run_id=run_id, round=gen, slot=slot, parent=parent,
                                          source=f"# candidate {i}\n{base}", name=f"ctl_{i}", origin="offline-proposer",
                                          rationale=f"child of {parent}; diagnosis → more_width" if parent else "seed"))
        level = rng.uniform(0.3, 0.5)
        screen = _evaluate(store, rng, run_id=run_id, candidate_id=cid, label=f"screen ctl_{i}", split="search",
                           envs=ENVS, betas=SCREEN_BETAS, level=level)
        full = _evaluate(store, rng, run_id=run_id, candidate_id=cid, label=f"candidate ctl_{i}", split="search",
                         envs=ENVS, betas=BETAS, level=level) if i % 10 == 0 else None
        fitness = rng.uniform(-5, 2) if full else None
        for status in (CandidateStatus.CHECKED, CandidateStatus.APPROVED, CandidateStatus.SCREENED):
            ledger.update_candidate(cid, status, check_result={"ok": True}, critic={"approve": True},
                                    screen_evaluation_id=screen, evaluation_id=screen, stage=1, search_accuracy=50.0)
        if full:
            ledger.update_candidate(cid, CandidateStatus.EVALUATED, evaluation_id=full, stage=2, search_accuracy=55.0)
        ledger.record_diagnosis(cid, gen, {"summary": f"diagnosis of {cid}", "actions": ["more_width"]})
        ledger.record_spend(SpendRow(round=gen, node="propose", seconds=0.1, slot=slot, candidate_id=cid))
        band = 14 + i % 4
        members.append(ArchiveRow(run_id=run_id, candidate_id=cid, island=slot % 3, generation=gen, slot=slot,
                                  niche=f"c{band}|fam{i % 5}", cost_band=band, family=f"fam{i % 5}",
                                  stage=2 if full else 1, fitness=fitness, screen_fitness=rng.uniform(-6, 2),
                                  mean_tokens=2.0 ** band, search_accuracy=50.0, code_hash=f"h{i}",
                                  evaluation_id=full or screen, screen_evaluation_id=screen))
        if fitness is not None and fitness > best[1]:
            best = (cid, fitness)
    history.record_archive(store, members)
    held = {f"{m}@heldout": _evaluate(store, rng, run_id=run_id, candidate_id=None, label=f"baseline:{m}",
                                      split="heldout", envs=HELD, betas=BETAS, level=0.4) for m in ("sc", "cmc")}
    _evaluate(store, rng, run_id=run_id, candidate_id=best[0], label="heldout", split="heldout", envs=HELD,
              betas=BETAS, level=0.45)
    ledger.set_wall(3600.0)
    ledger.finish(best[0], baseline_evaluations={**baselines, **held})
    return run_id


def fetch(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as res:
        body = res.read()
    return time.perf_counter() - started, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--store", type=Path, help="Keep the synthesised store here (default: a temporary one).")
    args = parser.parse_args()
    tmp = None if args.store else tempfile.TemporaryDirectory()
    path = args.store or Path(tmp.name) / "bench.duckdb"
    started = time.perf_counter()
    if path.exists():
        run_id = history.list_runs(Store(path))[0].run_id
    else:
        with Store(path).connect():  # every write of the synthesis on one connection
            run_id = synthesise(path, args.candidates)
    n = len(history.candidates(Store(path), run_id))
    print(f"store: {path} ({path.stat().st_size / 1e6:.0f} MB), run {run_id} with {n} candidates "
          f"(ready in {time.perf_counter() - started:.0f} s)")
    proc = subprocess.Popen([sys.executable, "-m", "autotts_graph.cli.main", "ui", "--store", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        base = proc.stdout.readline().split()[2].rstrip("/")
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/runs", timeout=60).read()
                break
            except OSError:
                time.sleep(0.1)
        best = history.get_run(Store(path), run_id).best_candidate
        cand = history.candidates(Store(path), run_id)[-1].candidate_id
        pages = {"runs": "/", "run": f"/runs/{run_id}", "candidate": f"/runs/{run_id}/candidates/{cand}",
                 "winner": f"/runs/{run_id}/candidates/{best}",
                 "compare": f"/runs/{run_id}/compare?c={best}&c={cand}&b=cmc&b=sc"}
        print("\npage        first (s)  again (s)  size (kB)")
        for name, page in pages.items():
            first, size = fetch(base + page)
            again, _ = fetch(base + page)
            print(f"{name:<10} {first:9.3f} {again:10.3f} {size / 1e3:10.0f}")
        # A write: the next request builds a new snapshot and a new view of the run.
        RunLedger(Store(path), run_id).merge_report(note="touched")
        time.sleep(1.1)
        changed, _ = fetch(base + pages["run"])
        print(f"\nrun page after a write (new snapshot and view): {changed:.3f} s")
        _browser(base + pages["run"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if tmp is not None:
            tmp.cleanup()


def _browser(url: str) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "ui"))
    try:
        from browser import Browser, available
    except ImportError:
        return
    if available():
        print(f"(no browser timing: {available()})")
        return
    b = Browser()
    try:
        b.open(url)  # Plotly's script into the cache
        for _ in range(3):
            started = time.perf_counter()
            driver = b.open(url)
            drawn = time.perf_counter() - started
            paint = driver.execute_script("return performance.getEntriesByName('first-contentful-paint')[0]"
                                          ".startTime / 1000")
            print(f"run page in chromium: first contentful paint {paint:.3f} s, every plot drawn {drawn:.3f} s")
    finally:
        b.close()


if __name__ == "__main__":
    main()
