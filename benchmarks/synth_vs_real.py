"""Side-by-side statistics of the real AutoTTS replay environments and the synthetic presets.

Run ``python benchmarks/synth_vs_real.py [--seeds N] [--synth-seeds K]``. Real data is read from
``$AUTOTTS_DATA`` or ``<repo>/../shared/data`` (files ``autotts-replay/<Model>/<dataset>.json``); each
synthetic preset is drawn with K seeds so its spread can be compared with the spread between real datasets.

Columns: single-branch accuracy (1-acc), SC@64 accuracy, mean branch tokens, fraction of 'ERR' probes,
mean probes per branch, ASC(max 64, threshold 0.95) accuracy / cost and CMC(beta 0.5) accuracy / cost
(costs in thousands of tokens per question), all over shuffle seeds 0..N-1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from autotts_graph.sandbox.judge import score_in_process
from autotts_graph.sandbox.runtime.evaluate import load_controller_class
from autotts_graph.store.packs import write_pack
from autotts_graph.store.synth import PRESETS, synthesize
from replay_data import replay_dir

REPO = Path(__file__).resolve().parents[1]
CONTROLLERS = REPO / "sandbox" / "controllers"
POINTS = {"sc": ("sc.py", {"k": 64}), "asc": ("asc.py", {"max_samples": 64, "threshold": 0.95}),
          "cmc": ("cmc.py", {"beta": 0.5})}


def record_stats(records: list[dict]) -> dict[str, float]:
    """Controller-free statistics of a set of question records."""
    acc, tokens, probes, errs = [], [], [], 0
    for rec in records:
        for probe_answers, branch_tokens, final in rec["each_branch"]:
            acc.append(final == rec["gold_answer"])
            tokens.append(branch_tokens)
            probes.append(len(probe_answers))
            errs += sum(a == "ERR" for a in probe_answers)
    return {"single": 100 * float(np.mean(acc)), "tokens": float(np.mean(tokens)),
            "err": errs / max(1, sum(probes)), "probes": float(np.mean(probes))}


def controller_stats(name: str, records: list[dict], pack_dir: Path, seeds: list[int]) -> dict[str, float]:
    """SC@64, ASC and CMC accuracy (%) and average cost on the records."""
    pack = write_pack(name, records, pack_dir)
    out: dict[str, float] = {}
    for label, (file, config) in POINTS.items():
        cls = load_controller_class((CONTROLLERS / file).read_text())
        point = score_in_process(cls, pack, config, seeds=seeds, trace_seeds=frozenset())
        out[f"{label}_acc"] = point["accuracy"]
        out[f"{label}_cost"] = point["avg_cost"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the comparison table; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="shuffle seeds per evaluation")
    ap.add_argument("--synth-seeds", type=int, default=2, help="synthetic draws per preset")
    ap.add_argument("--presets", nargs="*", default=list(PRESETS), help="presets to include")
    ap.add_argument("--no-real", action="store_true", help="skip the real environments")
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))

    rows: list[tuple[str, list[dict]]] = []
    if not args.no_real:
        replay = replay_dir()
        files = sorted(replay.glob("*/*.json"))
        if not files:
            print(f"note: no real replay files under {replay}; showing synthetic presets only",
                  file=sys.stderr)
        rows += [(f"{f.parent.name}/{f.stem}", json.loads(f.read_text())) for f in files]
    for name in args.presets:
        if name not in PRESETS:
            print(f"error: unknown preset {name!r} (known: {', '.join(PRESETS)})", file=sys.stderr)
            return 1
        for s in range(args.synth_seeds):
            rows.append((f"{name} seed {s}", synthesize(PRESETS[name].model_copy(update={"seed": s}))))

    header = (f"{'environment':<22}{'1-acc':>7}{'SC@64':>7}{'tokens':>8}{'ERR':>6}{'probes':>7}"
              f"{'ASC acc':>9}{'ASC k':>7}{'CMC acc':>9}{'CMC k':>7}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name, records in rows:
            r = record_stats(records)
            c = controller_stats(name, records, Path(tmp), seeds)
            print(f"{name:<22}{r['single']:>7.1f}{c['sc_acc']:>7.1f}{r['tokens']:>8.0f}{r['err']:>6.3f}"
                  f"{r['probes']:>7.1f}{c['asc_acc']:>9.1f}{c['asc_cost'] / 1000:>7.0f}"
                  f"{c['cmc_acc']:>9.1f}{c['cmc_cost'] / 1000:>7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
