"""Tool: score a controller source over environments x betas in the sandbox, record it in the history.

``evaluate_controller`` is the one judged path: every caller (CLI, baselines, graph, tool server, held-out)
comes here. It runs in visible stages:

1. **plan**: static checks on the host, one ``Job`` per (configuration, environment) with its cache key,
   the points already in the cache;
2. **run**: the jobs not cached, grouped into sandbox tasks (one environment each), on the executor;
3. **judge**: every task's action records re-priced and scored on the host (``sandbox/judge.py``);
4. **audit**: per environment, a secret sample of the new solves replayed under every audit of
   ``sandbox/audit.py`` (counterfactual and relabelling), as soon as the environment's last task is in;
5. **record**: the evaluation and its points in the store, figures only when every stage passed.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotts_graph.sandbox.backends.base import (
    ErrorKind,
    SandboxError,
    SandboxResult,
    SandboxTask,
    runtime_hash,
)
from autotts_graph.sandbox.runtime.validate import BETA_GRID
from autotts_graph.store import history
from autotts_graph.store.packs import key_path
from autotts_graph.store.trajectories import pack_path
from pydantic import BaseModel, Field

from .context import ToolContext

if TYPE_CHECKING:
    from autotts_graph.sandbox.audit import Observed, Solve

# The judge and the audit (numpy) are imported in the background while the first tasks run: a one-off
# `eval` would otherwise load numpy before its task even starts (imported the usual way where needed).
_JUDGE_MODULES = ("autotts_graph.sandbox.judge", "autotts_graph.sandbox.audit")

DEFAULT_BETAS = BETA_GRID  # the contract's grid (one copy: sandbox/runtime/validate.py)
JUDGE_VERSION = "judge-2"  # part of every cache key: figures from an older, weaker path are never reused


class EvaluateInput(BaseModel):
    """Evaluate controller code: betas (the single knob) or explicit configs, over environments."""

    source: str = Field(description="Complete Python source of one autotts_runtime.Controller subclass.")
    envs: list[str] = Field(description="Environment names, e.g. 'Qwen3-4B/aime24'.")
    betas: list[float] = Field(default_factory=lambda: list(DEFAULT_BETAS), description="Values of the knob.")
    configs: list[dict[str, Any]] | None = Field(
        default=None, description="Explicit controller configs instead of betas (e.g. baseline budgets).")
    seeds: int = Field(default=100, ge=1, le=1000, description="Shuffle seeds 0..seeds-1 (the spec uses 100), "
                                                                "from first_seed on when it is given.")
    first_seed: int = Field(default=0, ge=0, description="The first shuffle seed (fresh seeds for a re-evaluation).")
    trace_seeds: int = Field(default=1, ge=0, le=10, description="Keep full traces for seeds 0..trace_seeds-1.")
    label: str = Field(default="", description="Free text recorded with the evaluation.")
    split: str = Field(default="search", description="'search' or 'heldout'.")
    audit: str = Field(default="standard", pattern="^(standard|strict)$",
                       description="standard: every evaluation's audits (a 10 % deviation caught with 99 % "
                                   "probability); strict: the selected controller's (a 2 % deviation). Cached "
                                   "points serve a strict request only if they were audited strictly.")
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


@dataclass(frozen=True)
class Job:
    """One point of an evaluation: a configuration on an environment, and the cache key of its figures."""

    index: int  # the configuration's position in the request
    env: str
    config: dict[str, Any]
    pack: Path
    key: str


@dataclass
class EvaluationPlan:
    """What an evaluation will do: its jobs, which of them the cache already answers, and any refusal."""

    inp: EvaluateInput
    configs: list[dict[str, Any]]
    seeds: list[int]
    trace_seeds: list[int]
    code: str
    runtime: str  # the cache keys' runtime part: runtime files, judge version, intended interpreter
    interpreter: str  # the interpreter the source is meant for
    packs: dict[str, Path]
    jobs: list[Job]
    cached: dict[str, dict[str, Any]]
    error: SandboxError | None

    @property
    def todo(self) -> list[Job]:
        return [] if self.error is not None else [j for j in self.jobs if j.key not in self.cached]

    def per_env(self) -> dict[str, list[Job]]:
        """The jobs to run, by environment, in request order."""
        out: dict[str, list[Job]] = {}
        for job in self.todo:
            out.setdefault(job.env, []).append(job)
        return out


@dataclass
class RunState:
    """What the run, judge and audit stages have produced so far."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # cache key -> judged point
    error: SandboxError | None = None
    ran_on: set[str] = field(default_factory=set)
    backends: set[str] = field(default_factory=set)
    replay_s: float = 0.0
    audited: dict[str, int] = field(default_factory=dict)  # audit name -> solves it replayed

    def fail(self, error: SandboxError) -> None:
        """Keep the first error: it is the one the caller sees."""
        self.error = self.error or error


def _configs(inp: EvaluateInput) -> list[dict[str, Any]]:
    if inp.configs is not None:
        return [dict(c) for c in inp.configs]
    return [{"beta": float(b)} for b in inp.betas]


def _rejected(message: str, details: list[str] | None = None, kind: ErrorKind = ErrorKind.contract) -> SandboxError:
    return SandboxError(kind=kind, message=message, details=details or [])


def _questions(pack: Path, known: dict[Path, int]) -> int:
    """Questions in a pack, from its answer key (no numpy needed before the first task starts)."""
    if pack not in known:
        known[pack] = len(json.loads(key_path(pack).read_text())["gold"])
    return known[pack]


def _load_judge_in_background() -> None:
    if all(name in sys.modules for name in _JUDGE_MODULES):
        return

    def load() -> None:
        for name in _JUDGE_MODULES:
            importlib.import_module(name)

    threading.Thread(target=load, daemon=True, name="autotts-judge-import").start()


# --------------------------------------------------------------------------------------------------------
# 1. plan


def plan_evaluation(ctx: ToolContext, inp: EvaluateInput) -> EvaluationPlan:
    """Static checks, the jobs and their cache keys, and the cached points (none when the source is refused)."""
    configs = _configs(inp)
    seeds = list(range(inp.first_seed, inp.first_seed + inp.seeds))
    trace_seeds = seeds[:inp.trace_seeds]
    code = history.code_hash(inp.source)
    static = ctx.check_source(inp.source)  # the server's is bounded and out of process
    # The interpreter the source is meant for keys the cache; a backend without PyPy runs it on CPython
    # with identical figures, and the protocol records what actually ran.
    rt = f"{runtime_hash()}:{JUDGE_VERSION}:{static.interpreter}"
    error = None
    if static.errors:
        more = f" (and {len(static.errors) - 1} more)" if len(static.errors) > 1 else ""
        kind = ErrorKind.syntax if static.errors[0].startswith("syntax error") else ErrorKind.contract
        error = _rejected(f"the source breaks the controller rules: {static.errors[0]}{more}", static.errors, kind)
    # The look-ups share one read-only connection (nested connects reuse it): opening the file costs tens
    # of ms each time, a fair part of a one-off `eval`. It is closed before any sandbox work starts.
    with ctx.store.connect(read_only=True):
        ctx.require_visible(inp.envs)
        packs = {env: pack_path(ctx.store, env) for env in inp.envs}
        jobs = [Job(idx, env, config, packs[env], history.cache_key(code, packs[env].stem, config, seeds, trace_seeds,
                                                                    rt))
                for idx, config in enumerate(configs) for env in inp.envs]
        cached = {} if error else history.cached_points(ctx.store, [j.key for j in jobs],
                                                        strict_audit=inp.audit == "strict")
    return EvaluationPlan(inp=inp, configs=configs, seeds=seeds, trace_seeds=trace_seeds, code=code, runtime=rt,
                          interpreter=static.interpreter, packs=packs, jobs=jobs, cached=cached, error=error)


@dataclass(frozen=True)
class Batch:
    """One sandbox task's share of an evaluation: every job of ``envs`` x ``points`` (configuration indices);
    the runner returns their results environment by environment, points in order within each."""

    envs: tuple[str, ...]
    points: tuple[int, ...]
    jobs: tuple[Job, ...]


def _batches(todo: list[Job], tasks: int) -> list[Batch]:
    """The jobs in about ``tasks`` sandbox tasks of similar size. Environments that need the same points share
    a task when the points of one are fewer than a task's share (each task loads its packs, warms PyPy's JIT
    and pays the sandbox's per-task overhead once); an environment with more points than a share is split over
    several tasks, its points interleaved so that cheap (low beta) and expensive (high beta) ones mix."""
    per_env: dict[str, dict[int, Job]] = {}
    for job in todo:
        per_env.setdefault(job.env, {})[job.index] = job
    size = max(1, -(-len(todo) // max(1, tasks)))
    groups: dict[tuple[int, ...], list[str]] = {}  # environments by the points they need (rectangles of jobs)
    for env, jobs in per_env.items():
        groups.setdefault(tuple(jobs), []).append(env)
    batches = []
    for points, envs in groups.items():
        if len(points) >= size:
            n = -(-len(points) // size)
            chunks = [((env,), points[i::n]) for env in envs for i in range(n)]
        else:
            # As many environments per task as fit a share, spread evenly over the tasks they need.
            n = -(-len(envs) // max(1, size // len(points)))
            chunks = [(tuple(envs[i::n]), points) for i in range(n)]
        batches += [Batch(e, p, tuple(per_env[env][i] for env in e for i in p)) for e, p in chunks]
    return batches


# --------------------------------------------------------------------------------------------------------
# 2.-4. run, judge, audit


class _Sweep:
    """The run, judge and audit stages of one evaluation's new jobs."""

    def __init__(self, ctx: ToolContext, plan: EvaluationPlan, interpreter: str,
                 progress: Callable[[int, int], None] | None, tasks: int | None = None) -> None:
        self.tasks = tasks  # None: the context's (read when the tasks start: Ray knows its cores by then)
        self.ctx, self.plan, self.interpreter, self.progress = ctx, plan, interpreter, progress
        self.state = RunState()
        self.per_env = plan.per_env()
        self.secret = random.SystemRandom()  # which solves get audited must be unpredictable to the controller
        self.questions: dict[Path, int] = {}
        self.samples: dict[str, list[Solve]] = {}  # env -> the audited solves (every audit replays them)
        self.observed: dict[str, dict[Solve, Observed]] = {env: {} for env in self.per_env}
        self.auditing: list[tuple[tuple[str, ...], Future[SandboxError | None]]] = []
        self.done = len(plan.jobs) - len(plan.todo)

    def task_of(self, batch: Batch) -> SandboxTask:
        work = len(batch.points) * len(self.plan.seeds) * sum(_questions(self.plan.packs[e], self.questions)
                                                              for e in batch.envs)
        return SandboxTask(source=self.plan.inp.source, packs={env: str(self.plan.packs[env]) for env in batch.envs},
                           points=[self.plan.configs[i] for i in batch.points], seeds=self.plan.seeds,
                           trace_seeds=self.plan.trace_seeds, interpreter=self.interpreter, work=work,
                           solve_timeout_s=self.ctx.solve_timeout_s)

    def draw_samples(self) -> None:
        """The audited solves of every environment, drawn before any result is seen: the audit level's
        budget shared over the environments in proportion to their new solves."""
        from autotts_graph.sandbox.audit import audit_budget, choose_solves

        n_seeds = len(self.plan.seeds)
        sizes = {env: len(jobs) * n_seeds * _questions(jobs[0].pack, self.questions)
                 for env, jobs in self.per_env.items()}
        budget = audit_budget(self.plan.inp.audit, sizes)  # type: ignore[arg-type]
        for env, jobs in self.per_env.items():
            q = _questions(jobs[0].pack, self.questions)
            self.samples[env] = choose_solves(len(jobs), self.plan.seeds, q, budget[env], self.secret)

    def run(self) -> None:
        """Run the batches; judge each result as it arrives; start the audits of the environments a result
        completes, together in one task."""
        batches = _batches(self.plan.todo, self.tasks or self.ctx.evaluation_tasks or self.ctx.workers)
        left = {env: sum(env in b.envs for b in batches) for env in self.per_env}
        audit_lane = ThreadPoolExecutor(max_workers=len(batches), thread_name_prefix="autotts-audit")
        try:
            executor = self.ctx.executor
            for batch, res in zip(batches, executor.run([self.task_of(b) for b in batches]), strict=True):
                self.done += len(batch.jobs)
                if self.progress:
                    self.progress(self.done, len(self.plan.jobs))
                for env in batch.envs:
                    left[env] -= 1
                self.judge(batch, res, [env for env in batch.envs if left[env] == 0], audit_lane)
        finally:
            audit_lane.shutdown(wait=True)  # audits already started finish (and clean up) even after an error
        for _, future in self.auditing:
            error = future.result()
            if error is not None:
                self.state.fail(error)
        from autotts_graph.sandbox.audit import AUDITS

        for envs, _ in self.auditing:
            for env in envs:
                for audit in AUDITS:
                    self.state.audited[audit.name] = self.state.audited.get(audit.name, 0) + len(self.samples[env])

    def judge(self, batch: Batch, res: SandboxResult, complete: list[str], lane: ThreadPoolExecutor) -> None:
        """Judge one task's records; start the audits of the environments it completes."""
        state = self.state
        if not res.ok:
            state.fail(res.error)
            return
        state.ran_on.add(res.interpreter)
        state.backends.add(res.backend)
        state.replay_s += res.runner_s
        if len(res.results or []) != len(batch.jobs):
            state.fail(_rejected(f"the sandbox returned {len(res.results or [])} results for {len(batch.jobs)} "
                                 "points"))
            return
        # Here, not above: the background import (numpy) must not hold up the first task's start.
        from autotts_graph.sandbox.audit import observed_from_record, observed_rows, same_observations
        from autotts_graph.sandbox.judge import JudgeError, judge_point, load_judge_pack

        if not self.samples:
            self.draw_samples()
        judge_packs = {env: load_judge_pack(self.plan.packs[env]) for env in batch.envs}
        rows = list(zip(batch.jobs, res.results, strict=True))  # the runner's order is the batch's
        early: dict[str, dict[Solve, Observed]] | None = None
        if complete and state.error is None:
            # The audits start from the audited solves read off the record and run while the judge checks the
            # whole record (the verdict counts only if the judge accepts the record, and then these solves are
            # exactly the judged ones).
            early = {env: dict(self.observed[env]) for env in complete}
            for job, raw in rows:
                if job.env not in early:
                    continue
                seen = observed_from_record(raw, self.per_env[job.env].index(job), self.samples[job.env],
                                            judge_packs[job.env], self.plan.seeds)
                if seen is None:
                    early = None
                    break
                early[job.env].update(seen)
            if early is not None:
                self.auditing.append((tuple(complete), lane.submit(self.audit, early)))
        for job, raw in rows:
            jp = judge_packs[job.env]
            try:
                point, judged = judge_point(jp, raw, job.config, self.plan.seeds, frozenset(self.plan.trace_seeds))
            except JudgeError as exc:
                state.fail(_rejected(f"the judge rejected the result: {exc}"))
                continue
            self.observed[job.env].update(observed_rows(judged, self.per_env[job.env].index(job),
                                                        self.samples[job.env], jp.questions, self.plan.seeds))
            state.results[job.key] = {**point, "interpreter": res.interpreter}
        if complete and state.error is None:
            if early is None:
                self.auditing.append((tuple(complete), lane.submit(
                    self.audit, {env: self.observed[env] for env in complete})))
            elif any(not same_observations(early[env], self.observed[env]) for env in complete):
                state.fail(_rejected("the audited solves differ from the judged record"))  # impossible once judged

    def solves_of(self, env: str) -> list[Solve]:
        """``env``'s audited solves with the request's configuration indices (the audit task's points): the
        samples count an environment's new points only, and the order of points is the same either way."""
        jobs = self.per_env[env]
        return [(jobs[p].index, seed, q) for p, seed, q in self.samples[env]]

    def audit(self, observed: dict[str, dict[Solve, Observed]]) -> SandboxError | None:
        """Replay the sampled solves of these environments under every audit, side by side in one task (one
        changed pack per environment and audit); an error if any differs."""
        from autotts_graph.sandbox.audit import AUDITS, differences, replay_groups
        from autotts_graph.sandbox.judge import load_judge_pack

        plans = []  # (env, plan), in the task's pack order
        try:
            for env, seen in observed.items():
                for audit in AUDITS:
                    plans.append((env, audit.build(self.plan.packs[env], seen, self.secret)))
            # Neutral names: which pack is which audit (and environment) is the host's to know.
            packs = {str(i): str(p.pack) for i, (_, p) in enumerate(plans)}
            task = SandboxTask(source=self.plan.inp.source, packs=packs, points=self.plan.configs,
                               seeds=self.plan.seeds, trace_seeds=[],
                               solves={str(i): self.solves_of(env) for i, (env, _) in enumerate(plans)},
                               interpreter=self.interpreter,
                               work=sum(len(self.samples[env]) for env, _ in plans),
                               solve_timeout_s=self.ctx.solve_timeout_s)
            res = next(iter(self.ctx.executor.run([task])))
            if not res.ok:
                err = res.error
                return _rejected(f"the audits' replay failed ({err.kind.value}: {err.message}): the controller "
                                 "behaves differently when run again with the data it had not observed replaced "
                                 "or its answers renamed", err.details, ErrorKind.audit)
            results = res.results or []
            expected = sum(len(replay_groups(self.samples[env])) for env, _ in plans)
            if len(results) != expected:
                return _rejected(f"the audit returned {len(results)} results, expected {expected}",
                                 kind=ErrorKind.audit)
            originals = {env: load_judge_pack(self.plan.packs[env]) for env in observed}
            at = 0
            for env, plan in plans:  # the runner's order: pack by pack, each pack's points in increasing order
                solves = self.samples[env]
                configs = [j.config for j in self.per_env[env]]
                n = len(replay_groups(solves))
                problems = differences(plan, solves, originals[env], observed[env], results[at:at + n], configs)
                at += n
                if problems:
                    return _rejected(f"the {plan.audit.name} audit flagged the controller: {problems[0]}. "
                                     "Controllers may act only on what the primitives returned in the current "
                                     "question (no reading of replay data, no memory across questions or seeds) "
                                     "and must treat answers as opaque labels (equality, first-seen order, "
                                     "lexicographic order and 'ERR' only; no answer known in advance, no "
                                     "iteration over a set of answers).", problems[:10], ErrorKind.audit)
        finally:
            for _, plan in plans:
                plan.cleanup()
        return None


# --------------------------------------------------------------------------------------------------------
# 5. record, and the whole path


def evaluate_controller(ctx: ToolContext, inp: EvaluateInput,
                        progress: Callable[[int, int], None] | None = None,
                        tasks: int | None = None) -> EvaluationSummary:
    """Score every (env, config) point through the one judged path, reusing cached points, and record it.

    Static checks on the host, the runtime in the sandbox (PyPy when the source allows), the judge on the
    host, the counterfactual and relabelling audits. A candidate that fails any of them gets an error and
    no figures. ``tasks``: the sandbox tasks the new work is split into (default: the context's
    ``evaluation_tasks``, else ``workers``); the figures are the same however it is split.
    """
    started = time.perf_counter()
    plan = plan_evaluation(ctx, inp)
    todo = plan.todo
    if progress:
        progress(len(plan.jobs) - len(todo), len(plan.jobs))
    executor = ctx.executor if todo else None
    # Cached points keep the interpreter their key names; new work runs on it when the backend has it.
    interpreter = plan.interpreter if executor is None or plan.interpreter in executor.interpreters else "cpython"
    state = RunState(error=plan.error)
    if todo:
        _load_judge_in_background()
        sweep = _Sweep(ctx, plan, interpreter, progress, tasks)
        sweep.run()
        state = sweep.state
    points = []
    for job in plan.jobs:
        pt = plan.cached.get(job.key) or state.results.get(job.key)
        if pt is not None:
            points.append({**pt, "point_index": job.index, "env": job.env, "config": job.config,
                           "pack_hash": job.pack.stem, "cache_key": job.key, "beta": job.config.get("beta")})
    evaluation_id = history.new_id("ev")
    ok = state.error is None
    backend = "+".join(sorted(state.backends)) or ("cache" if not todo else "none")
    protocol = {"seeds": inp.seeds, **({"first_seed": inp.first_seed} if inp.first_seed else {}),
                "trace_seeds": inp.trace_seeds, "envs": inp.envs, "configs": plan.configs,
                "runtime": plan.runtime, "backend": backend, "executor": ctx.executor_name,
                "interpreter": "+".join(sorted(state.ran_on)) or interpreter, "audit": inp.audit,
                "audited_solves": state.audited}
    history.record_evaluation(ctx.store, evaluation_id=evaluation_id, code=plan.code, label=inp.label,
                              split=inp.split, protocol=protocol, points=points if ok else [],
                              status="ok" if ok else "error",
                              error=state.error.model_dump(mode="json") if state.error else None,
                              elapsed_s=time.perf_counter() - started, run_id=inp.run_id,
                              candidate_id=inp.candidate_id)
    summaries = [PointSummary(env=p["env"], point_index=p["point_index"], beta=p["beta"], config=p["config"],
                              description=p["description"], accuracy=p["accuracy"], avg_cost=p["avg_cost"],
                              std_acc=p["std_acc"]) for p in points] if ok else []
    return EvaluationSummary(evaluation_id=evaluation_id, ok=ok, error=state.error, points=summaries,
                             cached_points=len(plan.jobs) - len(todo), elapsed_s=time.perf_counter() - started,
                             backend=backend, interpreter=protocol["interpreter"], replay_s=state.replay_s)
