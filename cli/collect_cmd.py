"""`autotts-graph store collect`: build a replay environment from a model and a questions file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .cluster_cmd import ExecutorOption, RayAddressOption, check_executor
from .common import DEFAULT_STORE, StoreOption, user_errors


def _engine_args(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values parse as JSON when they can (numbers, booleans), else stay strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--engine-arg")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@user_errors
def collect(
    model: Annotated[str, typer.Option(help="Model name or local path (served name for --backend openai).")],
    questions: Annotated[Path, typer.Option(help="JSONL file of {\"question\", \"answer\"[, \"id\"]}.")],
    dataset: Annotated[str, typer.Option(help="Dataset name: the environment is <model>/<dataset>.")],
    branches: Annotated[int, typer.Option(min=1, help="Branches sampled per question.")] = 128,
    probe_every: Annotated[int, typer.Option(min=1, help="Probe interval in tokens (probe_freq).")] = 500,
    think_budget: Annotated[int, typer.Option(min=1, help="Thinking tokens, then forced end.")] = 40000,
    answer_budget: Annotated[int, typer.Option(min=1, help="Answer tokens after the thinking.")] = 2048,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.95,
    top_k: Annotated[int, typer.Option(help="-1 for no top-k.")] = 20,
    seed: Annotated[int, typer.Option(help="Base of the per-branch seeds.")] = 0,
    probe_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens decoded per probe.")] = 20,
    thinking: Annotated[bool, typer.Option("--thinking/--no-thinking", help="The model thinks first (Qwen3's "
                                                                            "</think>); --no-thinking: the whole "
                                                                            "reply is the reasoning (e.g. "
                                                                            "SmolLM2).")] = True,
    backend: Annotated[str, typer.Option(help="vllm | openai | hf")] = "vllm",
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")]
    = None,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="Bearer token for --base-url.")]
    = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer name or path (default: --model).")] = None,
    canonicalize: Annotated[str, typer.Option(help="none (exact) | gold (math-verify) | norm.")] = "none",
    env_model: Annotated[str | None, typer.Option(help="Model part of the environment name "
                                                       "(default: last component of --model, without .gguf).")]
    = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Branches per committed batch "
                                                              "(default: 8 for hf, 128 otherwise).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Parallel HTTP requests (openai).")] = 16,
    dtype: Annotated[str, typer.Option(help="Model dtype: auto, bfloat16, float16, float32.")] = "auto",
    engine_arg: Annotated[list[str] | None, typer.Option(help="Extra engine argument KEY=VALUE (repeatable), "
                                                              "e.g. max_model_len=42000.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for --backend hf.")] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an environment of the same name with new content.")]
    = False,
    split: Annotated[str, typer.Option(help="Tag the environment 'search' or 'heldout'.")] = "search",
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="--executor ray on a cluster without GPUs: CPU engines (default: its cores). "
                                 "With GPUs: one engine per GPU (per tensor_parallel_size GPUs).")] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Sample, probe and store branches as a replay environment; resumable, idempotent per spec."""
    from autotts_graph.store.collect.backend import ChatTokenizer, make_backend
    from autotts_graph.store.collect.collector import CollectOptions, run_collection
    from autotts_graph.store.collect.spec import (
        PLAIN_FORCE_TEXT,
        PLAIN_PROBE_SUFFIX,
        CollectSpec,
        GenerationSpec,
        ProbeSpec,
    )
    from autotts_graph.store.db import Store

    if backend not in ("vllm", "openai", "hf"):
        raise typer.BadParameter(f"{backend!r}: choose vllm, openai or hf", param_hint="--backend")
    if canonicalize not in ("none", "gold", "norm"):
        raise typer.BadParameter(f"{canonicalize!r}: choose none, gold or norm", param_hint="--canonicalize")
    from autotts_graph.store.collect.collector import read_questions

    items = read_questions(questions)
    extra = _engine_args(engine_arg or [])
    plain = {} if thinking else {"enable_thinking": False, "think_end": "", "force_text": PLAIN_FORCE_TEXT}
    spec = CollectSpec(
        generation=GenerationSpec(model=model, tokenizer=tokenizer or model, backend=backend,
                                  temperature=temperature, top_p=top_p, top_k=top_k,
                                  think_budget=think_budget, answer_budget=answer_budget, seed=seed,
                                  dtype=dtype, engine_args=extra, **plain),
        probe=ProbeSpec(probe_every=probe_every, max_tokens=probe_tokens,
                        **({} if thinking else {"suffix": PLAIN_PROBE_SUFFIX})))
    default_name = Path(model.rstrip("/")).name.removesuffix(".gguf") or model
    options = CollectOptions(dataset=dataset, env_model=env_model or default_name,
                             n_branches=branches, batch_size=batch_size or (8 if backend == "hf" else 128),
                             canonicalize=canonicalize, replace=replace, source=str(questions), split=split)
    check_executor(executor)
    if executor == "ray":
        from autotts_graph.store.collect.ray_collect import EngineSpec, RayCollector

        engine_spec = EngineSpec(backend=backend, model=model, tokenizer=tokenizer or model, dtype=dtype,
                                 engine_args=extra, base_url=base_url, api_key=api_key,
                                 batch_size=options.batch_size, concurrency=concurrency, threads=threads)
        runner = RayCollector(engine_spec, spec, items, dataset, address=ray_address, workers=workers or 0)
        engine, tok, close = None, None, runner.close
        where = f"{runner.count} engine(s) on Ray ({'GPU' if 'num_gpus' in runner.options else 'CPU'})"
    else:
        if threads:
            import torch
            torch.set_num_threads(threads)
        tok = ChatTokenizer(tokenizer or model)
        engine = make_backend(backend, model, tok, dtype=dtype, engine_args=extra, base_url=base_url,
                              batch_size=options.batch_size, concurrency=concurrency, api_key=api_key)
        runner, close, where = None, engine.close, f"backend {backend}"
    typer.echo(f"collecting {options.env_model}/{dataset}: {len(items)} questions x {branches} branches "
               f"(spec {spec.spec_hash}, {where})", err=True)
    try:
        with _progress() as update:
            result = run_collection(Store(store), spec, items, options, engine, tok, progress=update,
                                    runner=runner)
    finally:
        close()
    verb = "collected" if result.created else "unchanged"
    typer.echo(f"{verb} {result.env}: {result.questions} questions x {branches} branches; "
               f"{result.generated_branches} generated, {result.reused_branches} reused; "
               f"{result.generated_tokens:,} tokens in {result.seconds:.1f}s "
               f"({result.tokens_per_s:,.0f} tokens/s)")


class _progress:
    """A rich progress bar on stderr with branches, generated tokens/s and ETA."""

    def __enter__(self) -> Any:
        from rich.progress import TextColumn

        from .common import rich_progress

        self.prog = rich_progress(TextColumn("{task.fields[tps]} tok/s"))
        self.prog.__enter__()
        self.task = self.prog.add_task("branches", total=None, tps="-")

        first = [True]

        def update(event: Any) -> None:
            if first[0]:
                # Branches stored by an earlier run are not this run's progress (keeps the ETA honest).
                first[0] = False
                self.prog.reset(self.task, completed=event.done, total=event.total)
            tps = f"{event.generated_tokens / event.elapsed_s:,.0f}" if event.elapsed_s > 0 else "-"
            self.prog.update(self.task, completed=event.done, total=event.total, tps=tps)

        return update

    def __exit__(self, *exc: Any) -> None:
        self.prog.__exit__(*exc)
