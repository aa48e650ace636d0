#!/usr/bin/env bash
# GPU check of the collector's vLLM path, with nothing downloaded.
#
# Writes a tokenizer trained locally and a Qwen3-0.6B-shaped config.json (vLLM's dummy weights: random
# values, real shapes, so speed is real and text is noise), then
#   1. prints generated tokens/s of the raw engine at several context lengths (N sequences decoding
#      together past a shared-length prompt, EOS ignored) — the figure that sets collection time;
#   2. runs a small end-to-end collection through the collector's vLLM backend (sample, forced end of
#      thinking, probes in depth waves) into a temporary store and prints its tokens/s and probe share.
#
# Needs: an NVIDIA GPU, vLLM importable, this package installed (pip install -e '.[collect]').
# Environment: PYTHON (python3), CONTEXTS ("1024 8192 32768"), SEQS (64), GEN (256),
#              GPU_UTIL (0.85), KV_DTYPE (auto; fp8 to halve KV traffic).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
CONTEXTS="${CONTEXTS:-1024 8192 32768}"
SEQS="${SEQS:-64}"
GEN="${GEN:-256}"
GPU_UTIL="${GPU_UTIL:-0.85}"
KV_DTYPE="${KV_DTYPE:-auto}"

command -v nvidia-smi >/dev/null || { echo "error: no nvidia-smi: this check needs an NVIDIA GPU" >&2; exit 1; }
"$PYTHON" -c "import vllm" 2>/dev/null || { echo "error: vLLM is not importable by $PYTHON (pip install vllm)" >&2; exit 1; }
"$PYTHON" -c "import autotts_graph.store.collect.vllm" \
    || { echo "error: autotts_graph is not installed (pip install -e '.[collect]')" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export WORK CONTEXTS SEQS GEN GPU_UTIL KV_DTYPE
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}" TOKENIZERS_PARALLELISM=false

"$PYTHON" - <<'PY'
import json
import os
import random
import time
from pathlib import Path

from autotts_graph.store.collect.tiny import QWEN3_0_6B, write_tiny_model, write_tiny_tokenizer

work = Path(os.environ["WORK"])
model_dir = work / "qwen3-0.6b-shape"
model_dir.mkdir()
tok = write_tiny_tokenizer(model_dir)
write_tiny_model(model_dir, tok, shape=QWEN3_0_6B, weights=False)
contexts = [int(c) for c in os.environ["CONTEXTS"].split()]
seqs, gen = int(os.environ["SEQS"]), int(os.environ["GEN"])
max_len = max(contexts) + gen + 64

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402

engine_args = {"load_format": "dummy", "max_model_len": max_len, "gpu_memory_utilization":
               float(os.environ["GPU_UTIL"]), "kv_cache_dtype": os.environ["KV_DTYPE"], "seed": 0}
t0 = time.perf_counter()
llm = LLM(model=str(model_dir), tokenizer=str(model_dir), dtype="bfloat16", enable_prefix_caching=True,
          **engine_args)
kv = engine_args['kv_cache_dtype']
print(f"engine start: {time.perf_counter() - t0:.1f}s (Qwen3-0.6B shape, dummy weights, KV {kv})")

rng = random.Random(0)
vocab = len(tok)
print(f"{'context':>8} {'seqs':>5} {'prefill s':>10} {'decode s':>9} {'gen tok/s':>10} {'per-seq tok/s':>14}")
for ctx in contexts:
    prompts = [[rng.randrange(10, vocab) for _ in range(ctx)] for _ in range(seqs)]
    one = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True, detokenize=False)
    t0 = time.perf_counter()
    llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], one, use_tqdm=False)
    prefill = time.perf_counter() - t0
    # Same prompts again: their prefixes are cached now, so this time is (almost) pure decoding.
    params = SamplingParams(max_tokens=gen, temperature=0.7, top_p=0.95, top_k=20, ignore_eos=True,
                            detokenize=False, seed=1)
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    decode = time.perf_counter() - t0
    n = sum(len(o.outputs[0].token_ids) for o in outs)
    print(f"{ctx:>8} {seqs:>5} {prefill:>10.2f} {decode:>9.2f} {n / decode:>10.0f} {n / decode / seqs:>14.1f}")
del llm
(work / "engine_args.json").write_text(json.dumps({k: v for k, v in engine_args.items() if k != "seed"}))
PY

"$PYTHON" - <<'PY'
import json
import os
import time
from pathlib import Path

from autotts_graph.store.collect.backend import ChatTokenizer
from autotts_graph.store.collect.collector import CollectOptions, QuestionItem, run_collection
from autotts_graph.store.collect.spec import CollectSpec, GenerationSpec, ProbeSpec
from autotts_graph.store.collect.vllm import VLLMBackend
from autotts_graph.store.db import Store

work = Path(os.environ["WORK"])
model_dir = str(work / "qwen3-0.6b-shape")
engine_args = json.loads((work / "engine_args.json").read_text())
engine_args["max_model_len"] = 8192
tok = ChatTokenizer(model_dir)
spec = CollectSpec(generation=GenerationSpec(model=model_dir, tokenizer=model_dir, backend="vllm", think_budget=4000,
                                             answer_budget=256, dtype="bfloat16", engine_args=engine_args),
                   probe=ProbeSpec(probe_every=500))
questions = [QuestionItem(question=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(4)]
options = CollectOptions(dataset="gpu-check", env_model="Qwen3-0.6B-dummy", n_branches=32, batch_size=128)
backend = VLLMBackend(model_dir, model_dir, tok.stop_ids, dtype="bfloat16", engine_args=engine_args)
t0 = time.perf_counter()
result = run_collection(Store(work / "store.duckdb"), spec, questions, options, backend, tok)
wall = time.perf_counter() - t0
print(f"collector e2e: {result.env} {result.questions} questions x {options.n_branches} branches, "
      f"{result.generated_tokens:,} branch tokens + {result.probe_tokens:,} probe tokens in {wall:.1f}s "
      f"= {result.generated_tokens / wall:,.0f} branch tokens/s (probes included in the time)")
again = run_collection(Store(work / "store.duckdb"), spec, questions, options, backend, tok)
print(f"resume check: second run generated {again.generated_branches} branches (expected 0)")
PY
