"""Tool: score a controller source over environments x betas in the sandbox, record it in the history."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.backends.base import SandboxError, SandboxTask, runtime_hash
from autotts_graph.store import history
from autotts_graph.store.trajectories import pack_path
from pydantic import BaseModel, Field

from .context import ToolContext

DEFAULT_BETAS = [round(0.1 * i, 1) for i in range(11)]


class EvaluateInput(BaseModel):
    """Evaluate controller code: betas (the single knob) or explicit configs, over environments."""

    source: str = Field(description="Complete Python source of one autotts_runtime.Controller subclass.")
    envs: list[str] = Field(description="Environment names, e.g. 'Qwen3-4B/aime24'.")
    betas: list[float] = Field(default_factory=lambda: list(DEFAULT_BETAS), description="Values of the knob.")
    configs: list[dict[str, Any]] | None = Field(
        default=None, description="Explicit controller configs instead of betas (e.g. baseline budgets).")
    seeds: int = Field(default=100, ge=1, le=1000, description="Shuffle seeds 0..seeds-1 (the spec uses 100).")
    trace_seeds: int = Field(default=1, ge=0, le=10, description="Keep full traces for seeds 0..trace_seeds-1.")
    label: str = Field(default="", description="Free text recorded with the evaluation.")
    split: str = Field(default="search", description="'search' or 'heldout'.")
    run_id: str | None = None
    candidate_id: str | None = None


class PointSummary(BaseModel):
    """Accuracy and cost of one (environment, configuration)."""

    env: str
    point_index: int
    beta: float | None
    config: dict[str, Any]
    description: str
    accuracy: float = Field(description="Percent, 2 decimals, as the reference computes it.")
    avg_cost: float = Field(description="Mean tokens per question (unrounded).")
    std_acc: float = Field(description="Std of accuracy over seeds, percent.")


class EvaluationSummary(BaseModel):
    """The result of evaluate_controller; details (outcomes, traces) are in the store by evaluation_id."""

    evaluation_id: str
    ok: bool
    error: SandboxError | None = None
    points: list[PointSummary] = Field(default_factory=list)
    cached_points: int = 0
    elapsed_s: float = 0.0
    backend: str = ""


def _configs(inp: EvaluateInput) -> list[dict[str, Any]]:
    if inp.configs is not None:
        return [dict(c) for c in inp.configs]
    return [{"beta": float(b)} for b in inp.betas]


def _batches(todo: list[tuple], workers: int) -> list[list[tuple]]:
    """Jobs grouped per environment into about three tasks per worker: each task loads its pack once and
    pays the sandbox's per-task overhead once, while enough tasks remain to keep every worker busy."""
    per_env: dict[str, list[tuple]] = {}
    for job in todo:
        per_env.setdefault(job[1], []).append(job)
    target = max(1, 3 * workers)
    size = max(1, -(-len(todo) // target))
    batches = []
    for env_jobs in per_env.values():
        # Interleave by position so cheap (low beta) and expensive (high beta) points share a task.
        n = max(1, -(-len(env_jobs) // size))
        batches += [env_jobs[i::n] for i in range(n)]
    return batches


def evaluate_controller(ctx: ToolContext, inp: EvaluateInput,
                        progress: Callable[[int, int], None] | None = None) -> EvaluationSummary:
    """Run (or reuse from the cache) every (env, config) point in the sandbox and record the evaluation."""
    started = time.perf_counter()
    ctx.require_visible(inp.envs)
    configs = _configs(inp)
    seeds = list(range(inp.seeds))
    trace_seeds = list(range(inp.trace_seeds))
    code = history.code_hash(inp.source)
    rt = runtime_hash()
    packs = {env: pack_path(ctx.store, env) for env in inp.envs}
    jobs = []  # (point_index, env, config, pack, cache key)
    for idx, config in enumerate(configs):
        for env in inp.envs:
            key = history.cache_key(code, packs[env].stem, config, seeds, trace_seeds, rt)
            jobs.append((idx, env, config, packs[env], key))
    cached = history.cached_points(ctx.store, [j[4] for j in jobs])
    todo = [j for j in jobs if j[4] not in cached]
    done = len(jobs) - len(todo)
    if progress:
        progress(done, len(jobs))
    results: dict[str, dict[str, Any]] = {}
    error: SandboxError | None = None
    backend = ctx.backend if todo else None

    def run_batch(batch: list[tuple]) -> tuple[list[tuple], Any]:
        env, pack = batch[0][1], batch[0][3]
        task = SandboxTask(source=inp.source, packs={env: str(pack)}, points=[j[2] for j in batch], seeds=seeds,
                           trace_seeds=trace_seeds)
        return batch, backend.run(task)

    if todo:
        batches = _batches(todo, ctx.workers)
        with ThreadPoolExecutor(max_workers=max(1, min(ctx.workers, len(batches)))) as pool:
            for batch, res in pool.map(run_batch, batches):
                done += len(batch)
                if progress:
                    progress(done, len(jobs))
                if not res.ok:
                    error = error or res.error
                    continue
                for job, result in zip(batch, res.results, strict=True):
                    results[job[4]] = result
    points = []
    for idx, env, config, pack, key in jobs:
        pt = cached.get(key) or results.get(key)
        if pt is None:
            continue
        points.append({**pt, "point_index": idx, "env": env, "config": config, "pack_hash": Path(pack).stem,
                       "cache_key": key, "beta": config.get("beta")})
    evaluation_id = history.new_id("ev")
    ok = error is None
    protocol = {"seeds": inp.seeds, "trace_seeds": inp.trace_seeds, "envs": inp.envs, "configs": configs,
                "runtime": rt, "backend": backend.name if backend else "cache"}
    history.record_evaluation(ctx.store, evaluation_id=evaluation_id, code=code, label=inp.label,
                              split=inp.split, protocol=protocol, points=points if ok else [],
                              status="ok" if ok else "error", error=error.model_dump(mode="json") if error else None,
                              elapsed_s=time.perf_counter() - started, run_id=inp.run_id,
                              candidate_id=inp.candidate_id)
    summaries = [PointSummary(env=p["env"], point_index=p["point_index"], beta=p["beta"], config=p["config"],
                              description=p["description"], accuracy=p["accuracy"], avg_cost=p["avg_cost"],
                              std_acc=p["std_acc"]) for p in points] if ok else []
    return EvaluationSummary(evaluation_id=evaluation_id, ok=ok, error=error, points=summaries,
                             cached_points=len(jobs) - len(todo), elapsed_s=time.perf_counter() - started,
                             backend=backend.name if backend else "cache")
