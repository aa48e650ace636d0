"""The whole pipeline on a real model on this CPU, at full size: SmolLM2-135M-Instruct (the GGUF of
.ci/llm-setup.sh, through the collector's transformers backend) answers the repository's arithmetic word
problems (store/collect/questions/arithmetic.jsonl: 8 questions x 16 branches, a probe every 64 tokens), the
branches are imported as an environment, and a discovery run (offline roles) goes over it.

Prints the time of each stage (tokenizer and model load, sampling, probing, building and importing the
environment, the discovery run), sampled and probe tokens per second, and what the model got right.

    python benchmarks/collector_cpu.py [--questions 8] [--branches 16] [--probe-every 64] [--think-budget 256]
                                       [--threads 1] [--store /tmp/collect-bench.duckdb]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))


class TimedBackend:
    """A collector backend whose sample and probe calls are timed (the stages of a collection)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.seconds = {"sample": 0.0, "probe": 0.0}

    def sample(self, requests):
        t0 = time.perf_counter()
        try:
            return self.backend.sample(requests)
        finally:
            self.seconds["sample"] += time.perf_counter() - t0

    def probe(self, requests):
        t0 = time.perf_counter()
        try:
            return self.backend.probe(requests)
        finally:
            self.seconds["probe"] += time.perf_counter() - t0

    def close(self) -> None:
        self.backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--branches", type=int, default=16)
    ap.add_argument("--probe-every", type=int, default=64)
    ap.add_argument("--think-budget", type=int, default=256)
    ap.add_argument("--answer-budget", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: more threads slow a shared CPU down)")
    ap.add_argument("--store", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from autotts_graph.store.collect.backend import ChatTokenizer
    from autotts_graph.store.collect.collector import CollectOptions, read_questions, run_collection
    from autotts_graph.store.collect.hf import HFBackend
    from autotts_graph.store.collect.spec import (
        PLAIN_FORCE_TEXT,
        PLAIN_PROBE_SUFFIX,
        CollectSpec,
        GenerationSpec,
        ProbeSpec,
    )
    from autotts_graph.store.db import Store
    from llm_server import gguf_path

    torch.set_num_threads(args.threads)
    model = str(gguf_path())
    items = read_questions(REPO / "store" / "collect" / "questions" / "arithmetic.jsonl")[:args.questions]
    store_path = args.store or Path(tempfile.mkdtemp()) / "collect-bench.duckdb"
    stages: dict[str, float] = {}

    t0 = time.perf_counter()
    tok = ChatTokenizer(model)
    stages["tokenizer load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    backend = TimedBackend(HFBackend(model, tok.stop_ids, batch_size=args.branches))
    stages["model load (dequantise)"] = time.perf_counter() - t0

    spec = CollectSpec(
        generation=GenerationSpec(model=model, tokenizer=model, backend="hf", think_budget=args.think_budget,
                                  answer_budget=args.answer_budget, enable_thinking=False, think_end="",
                                  force_text=PLAIN_FORCE_TEXT),
        probe=ProbeSpec(probe_every=args.probe_every, max_tokens=8, suffix=PLAIN_PROBE_SUFFIX))
    options = CollectOptions(dataset="arith", env_model="SmolLM2-135M", n_branches=args.branches,
                             batch_size=args.branches, replace=True, source="arithmetic.jsonl")
    t0 = time.perf_counter()
    result = run_collection(Store(store_path), spec, items, options, backend, tok)
    total = time.perf_counter() - t0
    stages["sampling"] = backend.seconds["sample"]
    stages["probing"] = backend.seconds["probe"]
    stages["store + build + import"] = total - backend.seconds["sample"] - backend.seconds["probe"]
    backend.close()

    from autotts_graph.graph.configuration import RunConfig
    from autotts_graph.graph.deps import DepsProvider
    from autotts_graph.graph.nodes.prepare import resolve_config
    from autotts_graph.graph.runner import start_run
    from autotts_graph.store.trajectories import export_records

    t0 = time.perf_counter()
    cfg = resolve_config(RunConfig(search_envs=[result.env], rounds=2, population=2, seeds=10,
                                   baselines=["sc", "asc", "cmc"]), Store(store_path))
    provider = DepsProvider(store_path=store_path)
    try:
        state = start_run(cfg, provider)
    finally:
        provider.close()
    stages["discovery run (2 generations x 2, offline roles)"] = time.perf_counter() - t0

    records = export_records(Store(store_path), result.env)
    finals = [a for r in records for a in r["final_answers_trace"]]
    right = sum(a == r["gold_answer"] for r in records for a in r["final_answers_trace"])
    print(f"collected {result.env}: {result.questions} questions x {args.branches} branches, a probe every "
          f"{args.probe_every} tokens, budget {args.think_budget} + {args.answer_budget} tokens, "
          f"{args.threads} torch threads")
    for name, seconds in stages.items():
        print(f"  {name:<48} {seconds:8.1f} s")
    print(f"  sampled tokens {result.generated_tokens:,}: {result.generated_tokens / stages['sampling']:,.0f} "
          f"tokens/s while sampling; probe tokens {result.probe_tokens:,}: "
          f"{result.probe_tokens / max(stages['probing'], 1e-9):,.0f} tokens/s while probing; "
          f"{result.tokens_per_s:,.0f} sampled tokens/s over the whole collection")
    print(f"  final answers right: {right}/{len(finals)} ({100 * right / max(1, len(finals)):.0f} %)")
    best = state.best
    print(f"  discovery: {state.status}, {state.screened} screened, best "
          + (f"{best.name} at {best.search_accuracy:.1f} % search accuracy" if best and best.search_accuracy
             is not None else "-"))


if __name__ == "__main__":
    main()
