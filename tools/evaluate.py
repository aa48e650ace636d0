"""Tool: score a controller source over environments x betas in the sandbox, record it in the history."""

from __future__ import annotations

import importlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotts_graph.sandbox.backends.base import (
    ErrorKind,
    SandboxError,
    SandboxTask,
    runtime_hash,
)
from autotts_graph.sandbox.static_checks import check_source
from autotts_graph.store import history
from autotts_graph.store.packs import key_path
from autotts_graph.store.trajectories import pack_path
from pydantic import BaseModel, Field

from .context import ToolContext

if TYPE_CHECKING:
    from autotts_graph.sandbox.audit import Observed

# The judge and the audit (numpy) are imported in the background while the first tasks run: a one-off
# `eval` would otherwise load numpy before its task even starts (imported the usual way where needed).
_JUDGE_MODULES = ("autotts_graph.sandbox.judge", "autotts_graph.sandbox.audit")

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
    interpreter: str = Field(default="", description="pypy or cpython: which interpreter ran the controller.")
    replay_s: float = Field(default=0.0, description="The sandboxes' own account of their replay time, summed "
                                                     "over tasks (0 when everything came from the cache).")


def _configs(inp: EvaluateInput) -> list[dict[str, Any]]:
    if inp.configs is not None:
        return [dict(c) for c in inp.configs]
    return [{"beta": float(b)} for b in inp.betas]


def _batches(todo: list[tuple], workers: int) -> list[list[tuple]]:
    """Jobs grouped per environment into about one task per worker (at least one per environment): each
    task loads its pack, warms PyPy's JIT and pays the sandbox's per-task overhead once."""
    per_env: dict[str, list[tuple]] = {}
    for job in todo:
        per_env.setdefault(job[1], []).append(job)
    target = max(1, workers)
    size = max(1, -(-len(todo) // target))
    batches = []
    for env_jobs in per_env.values():
        # Interleave by position so cheap (low beta) and expensive (high beta) points share a task.
        n = max(1, -(-len(env_jobs) // size))
        batches += [env_jobs[i::n] for i in range(n)]
    return batches


JUDGE_VERSION = "judge-1"  # part of every cache key: figures from an older, forgeable path are never reused


def _load_judge_in_background() -> None:
    if all(name in sys.modules for name in _JUDGE_MODULES):
        return

    def load() -> None:
        for name in _JUDGE_MODULES:
            importlib.import_module(name)

    threading.Thread(target=load, daemon=True, name="autotts-judge-import").start()


def _questions(pack: Path, known: dict[Path, int]) -> int:
    """Questions in a pack, from its answer key (no numpy needed before the first task starts)."""
    if pack not in known:
        known[pack] = len(json.loads(key_path(pack).read_text())["gold"])
    return known[pack]


def _rejected(message: str, details: list[str] | None = None, kind: ErrorKind = ErrorKind.contract) -> SandboxError:
    return SandboxError(kind=kind, message=message, details=details or [])


def evaluate_controller(ctx: ToolContext, inp: EvaluateInput,
                        progress: Callable[[int, int], None] | None = None) -> EvaluationSummary:
    """Score every (env, config) point through the one judged path, reusing cached points, and record it.

    Every caller (CLI, baselines, graph, tool server, held-out) comes here: static checks on the host, the
    runtime in the sandbox (PyPy when the source allows), the judge on the host, the counterfactual audit.
    A candidate that fails any of them gets an error and no figures.
    """
    started = time.perf_counter()
    configs = _configs(inp)
    seeds = list(range(inp.seeds))
    trace_seeds = list(range(inp.trace_seeds))
    code = history.code_hash(inp.source)
    static = check_source(inp.source)
    # The interpreter the source is meant for keys the cache; a backend without PyPy runs it on CPython
    # with identical figures, and the protocol records what actually ran.
    rt = f"{runtime_hash()}:{JUDGE_VERSION}:{static.interpreter}"
    error: SandboxError | None = None
    if static.errors:
        more = f" (and {len(static.errors) - 1} more)" if len(static.errors) > 1 else ""
        kind = ErrorKind.syntax if static.errors[0].startswith("syntax error") else ErrorKind.contract
        error = _rejected(f"the source breaks the controller rules: {static.errors[0]}{more}", static.errors, kind)
    # The look-ups share one read-only connection (nested connects reuse it): opening the file costs tens
    # of ms each time, a fair part of a one-off `eval`. It is closed before any sandbox work starts.
    with ctx.store.connect(read_only=True):
        ctx.require_visible(inp.envs)
        packs = {env: pack_path(ctx.store, env) for env in inp.envs}
        jobs = []  # (point_index, env, config, pack, cache key)
        for idx, config in enumerate(configs):
            for env in inp.envs:
                key = history.cache_key(code, packs[env].stem, config, seeds, trace_seeds, rt)
                jobs.append((idx, env, config, packs[env], key))
        cached = history.cached_points(ctx.store, [j[4] for j in jobs]) if error is None else {}
    todo = [j for j in jobs if j[4] not in cached] if error is None else []
    done = len(jobs) - len(todo)
    if progress:
        progress(done, len(jobs))
    results: dict[str, dict[str, Any]] = {}
    secret = random.SystemRandom()  # which solves get audited must be unpredictable to the controller
    per_env: dict[str, list[tuple]] = {}
    for job in todo:
        per_env.setdefault(job[1], []).append(job)
    questions: dict[Path, int] = {}
    if todo:
        _load_judge_in_background()
    audits: dict[str, list[tuple[int, int, int]]] = {}  # drawn (secretly) when an environment's first result comes
    observed: dict[str, dict[tuple[int, int, int], Observed]] = {env: {} for env in per_env}
    ran_on: set[str] = set()
    used: set[str] = set()
    replay_s = 0.0
    executor = ctx.executor if todo else None
    # Cached points keep the interpreter their key names; new work runs on it when the backend has it.
    interpreter = static.interpreter if executor is None or static.interpreter in executor.interpreters else "cpython"

    def task_of(batch: list[tuple]) -> SandboxTask:
        env, pack = batch[0][1], batch[0][3]
        work = len(batch) * len(seeds) * _questions(pack, questions)
        return SandboxTask(source=inp.source, packs={env: str(pack)}, points=[j[2] for j in batch], seeds=seeds,
                           trace_seeds=trace_seeds, interpreter=interpreter, work=work,
                           solve_timeout_s=ctx.solve_timeout_s)

    if todo:
        batches = _batches(todo, ctx.workers)
        left = {env: sum(b[0][1] == env for b in batches) for env in per_env}  # batches still to be judged
        auditing: dict[str, Future[SandboxError | None]] = {}
        # An environment's audit starts as soon as its last result arrives, while other environments still
        # replay: only the last ones' audits remain when the replay ends.
        audit_lane = ThreadPoolExecutor(max_workers=len(per_env), thread_name_prefix="autotts-audit")

        def start_audit(env: str, seen: dict[tuple[int, int, int], Observed]) -> None:
            auditing[env] = audit_lane.submit(_audit, ctx, inp.source, interpreter, {env: per_env[env]}, packs,
                                              seeds, {env: seen})

        try:
            for batch, res in zip(batches, executor.run([task_of(b) for b in batches]), strict=True):
                done += len(batch)
                if progress:
                    progress(done, len(jobs))
                env = batch[0][1]
                left[env] -= 1
                if not res.ok:
                    error = error or res.error
                    continue
                ran_on.add(res.interpreter)
                used.add(res.backend)
                replay_s += res.runner_s
                if len(res.results or []) != len(batch):
                    error = error or _rejected(f"the sandbox returned {len(res.results or [])} results for "
                                               f"{len(batch)} points")
                    continue
                # Here, not above: the background import (numpy) must not hold up the first task's start.
                from autotts_graph.sandbox.audit import (
                    choose_solves,
                    observed_from_record,
                    observed_rows,
                    same_observations,
                )
                from autotts_graph.sandbox.judge import JudgeError, judge_point, load_judge_pack

                jp = load_judge_pack(packs[env])
                if env not in audits:
                    audits[env] = choose_solves(len(per_env[env]), seeds, jp.questions, ctx.audit_solves, secret)
                early: dict[tuple[int, int, int], Observed] | None = None
                if left[env] == 0 and error is None:
                    # The environment's last batch: its audit starts from the audited solves read off the
                    # record and runs while the judge checks the whole record (the verdict counts only if
                    # the judge accepts the record, and then these solves are exactly the judged ones).
                    early = dict(observed[env])
                    for job, raw in zip(batch, res.results, strict=True):
                        rows = observed_from_record(raw, per_env[env].index(job), audits[env], jp, seeds)
                        if rows is None:
                            early = None
                            break
                        early.update(rows)
                    if early is not None:
                        start_audit(env, early)
                for job, raw in zip(batch, res.results, strict=True):  # a batch is one environment's
                    try:
                        point, judged = judge_point(jp, raw, job[2], seeds, frozenset(trace_seeds))
                    except JudgeError as exc:
                        error = error or _rejected(f"the judge rejected the result: {exc}")
                        continue
                    local = per_env[env].index(job)
                    observed[env].update(observed_rows(judged, local, audits[env], jp.questions, seeds, jp.vocab))
                    results[job[4]] = {**point, "interpreter": res.interpreter}
                if left[env] == 0 and error is None:
                    if early is None:
                        start_audit(env, observed[env])
                    elif not same_observations(early, observed[env]):  # impossible once the judge accepted it
                        error = _rejected("the audited solves differ from the judged record")
        finally:
            audit_lane.shutdown(wait=True)  # audits already started finish (and clean up) even after an error
        for future in auditing.values():
            error = error or future.result()
    points = []
    for idx, env, config, pack, key in jobs:
        pt = cached.get(key) or results.get(key)
        if pt is None:
            continue
        points.append({**pt, "point_index": idx, "env": env, "config": config, "pack_hash": Path(pack).stem,
                       "cache_key": key, "beta": config.get("beta")})
    evaluation_id = history.new_id("ev")
    ok = error is None
    backend = "+".join(sorted(used)) or ("cache" if not todo else "none")
    protocol = {"seeds": inp.seeds, "trace_seeds": inp.trace_seeds, "envs": inp.envs, "configs": configs,
                "runtime": rt, "backend": backend, "executor": ctx.executor_name,
                "interpreter": "+".join(sorted(ran_on)) or interpreter,
                "audited_solves": sum(len(v) for v in audits.values())}
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
                             backend=backend, interpreter=protocol["interpreter"], replay_s=replay_s)


def _audit(ctx: ToolContext, source: str, interpreter: str, per_env: dict[str, list[tuple]],
           packs: dict[str, Path], seeds: list[int],
           observed: dict[str, dict[tuple[int, int, int], Observed]]) -> SandboxError | None:
    """Replay the audited solves of every environment on counterfactual data; an error if any differ."""
    from autotts_graph.sandbox.audit import build_plan, differences
    from autotts_graph.sandbox.judge import load_judge_pack

    rng = random.SystemRandom()
    plans = {env: build_plan(packs[env], load_judge_pack(packs[env]).gold_text, seen, rng)
             for env, seen in observed.items() if seen}
    try:
        configs = {env: [j[2] for j in per_env[env]] for env in plans}
        tasks = [SandboxTask(source=source, packs={env: str(plan.pack)}, points=configs[env], seeds=seeds,
                             trace_seeds=[], solves=plan.solves, interpreter=interpreter, work=len(plan.solves),
                             solve_timeout_s=ctx.solve_timeout_s) for env, plan in plans.items()]
        for (env, plan), res in zip(plans.items(), ctx.executor.run(tasks), strict=True):
            if not res.ok:
                err = res.error
                return _rejected(f"the audit replay failed ({err.kind.value}: {err.message}): the controller "
                                 "behaves differently when run again", err.details, ErrorKind.audit)
            problems = differences(plan, load_judge_pack(packs[env]).gold_text, observed[env], res.results or [],
                                   configs[env])
            if problems:
                return _rejected(f"the audit flagged the controller: {problems[0]}. Controllers may act only on "
                                 "what the primitives returned in the current question (no reading of replay "
                                 "data, no memory across questions or seeds).", problems[:10], ErrorKind.audit)
    finally:
        for plan in plans.values():
            plan.workdir.cleanup()
    return None
