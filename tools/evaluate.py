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

DEFAULT_BETAS = [round(0.1 * i, 1) for i in range(11)]
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


def _batches(todo: list[Job], workers: int) -> list[list[Job]]:
    """Jobs grouped per environment into about one task per worker (at least one per environment): each
    task loads its pack, warms PyPy's JIT and pays the sandbox's per-task overhead once."""
    per_env: dict[str, list[Job]] = {}
    for job in todo:
        per_env.setdefault(job.env, []).append(job)
    size = max(1, -(-len(todo) // max(1, workers)))
    batches = []
    for env_jobs in per_env.values():
        # Interleave by position so cheap (low beta) and expensive (high beta) points share a task.
        n = max(1, -(-len(env_jobs) // size))
        batches += [env_jobs[i::n] for i in range(n)]
    return batches


# --------------------------------------------------------------------------------------------------------
# 2.-4. run, judge, audit


class _Sweep:
    """The run, judge and audit stages of one evaluation's new jobs."""

    def __init__(self, ctx: ToolContext, plan: EvaluationPlan, interpreter: str,
                 progress: Callable[[int, int], None] | None) -> None:
        self.ctx, self.plan, self.interpreter, self.progress = ctx, plan, interpreter, progress
        self.state = RunState()
        self.per_env = plan.per_env()
        self.secret = random.SystemRandom()  # which solves get audited must be unpredictable to the controller
        self.questions: dict[Path, int] = {}
        self.samples: dict[str, list[Solve]] = {}  # env -> the audited solves (every audit replays them)
        self.observed: dict[str, dict[Solve, Observed]] = {env: {} for env in self.per_env}
        self.auditing: dict[str, Future[SandboxError | None]] = {}
        self.done = len(plan.jobs) - len(plan.todo)

    def task_of(self, batch: list[Job]) -> SandboxTask:
        work = len(batch) * len(self.plan.seeds) * _questions(batch[0].pack, self.questions)
        return SandboxTask(source=self.plan.inp.source, packs={batch[0].env: str(batch[0].pack)},
                           points=[j.config for j in batch], seeds=self.plan.seeds,
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
        """Run the batches; judge each result as it arrives; start an environment's audits with its last."""
        batches = _batches(self.plan.todo, self.ctx.workers)
        left = {env: sum(b[0].env == env for b in batches) for env in self.per_env}
        audit_lane = ThreadPoolExecutor(max_workers=len(self.per_env), thread_name_prefix="autotts-audit")
        try:
            executor = self.ctx.executor
            for batch, res in zip(batches, executor.run([self.task_of(b) for b in batches]), strict=True):
                self.done += len(batch)
                if self.progress:
                    self.progress(self.done, len(self.plan.jobs))
                env = batch[0].env
                left[env] -= 1
                self.judge(batch, res, last=left[env] == 0, lane=audit_lane)
        finally:
            audit_lane.shutdown(wait=True)  # audits already started finish (and clean up) even after an error
        for future in self.auditing.values():
            error = future.result()
            if error is not None:
                self.state.fail(error)
        from autotts_graph.sandbox.audit import AUDITS

        for env in self.auditing:
            for audit in AUDITS:
                self.state.audited[audit.name] = self.state.audited.get(audit.name, 0) + len(self.samples[env])

    def judge(self, batch: list[Job], res: SandboxResult, last: bool, lane: ThreadPoolExecutor) -> None:
        """Judge one task's records; on the environment's last task, start its audits."""
        state = self.state
        if not res.ok:
            state.fail(res.error)
            return
        state.ran_on.add(res.interpreter)
        state.backends.add(res.backend)
        state.replay_s += res.runner_s
        if len(res.results or []) != len(batch):
            state.fail(_rejected(f"the sandbox returned {len(res.results or [])} results for {len(batch)} points"))
            return
        # Here, not above: the background import (numpy) must not hold up the first task's start.
        from autotts_graph.sandbox.audit import observed_from_record, observed_rows, same_observations
        from autotts_graph.sandbox.judge import JudgeError, judge_point, load_judge_pack

        env = batch[0].env
        jp = load_judge_pack(self.plan.packs[env])
        if not self.samples:
            self.draw_samples()
        wanted = self.samples[env]
        jobs = self.per_env[env]
        early: dict[Solve, Observed] | None = None
        if last and state.error is None:
            # The environment's last batch: its audits start from the audited solves read off the record and
            # run while the judge checks the whole record (the verdict counts only if the judge accepts the
            # record, and then these solves are exactly the judged ones).
            early = dict(self.observed[env])
            for job, raw in zip(batch, res.results, strict=True):
                rows = observed_from_record(raw, jobs.index(job), wanted, jp, self.plan.seeds)
                if rows is None:
                    early = None
                    break
                early.update(rows)
            if early is not None:
                self.auditing[env] = lane.submit(self.audit, env, early)
        for job, raw in zip(batch, res.results, strict=True):  # a batch is one environment's
            try:
                point, judged = judge_point(jp, raw, job.config, self.plan.seeds, frozenset(self.plan.trace_seeds))
            except JudgeError as exc:
                state.fail(_rejected(f"the judge rejected the result: {exc}"))
                continue
            self.observed[env].update(observed_rows(judged, jobs.index(job), wanted, jp.questions, self.plan.seeds))
            state.results[job.key] = {**point, "interpreter": res.interpreter}
        if last and state.error is None:
            if early is None:
                self.auditing[env] = lane.submit(self.audit, env, self.observed[env])
            elif not same_observations(early, self.observed[env]):  # impossible once the judge accepted it
                state.fail(_rejected("the audited solves differ from the judged record"))

    def audit(self, env: str, observed: dict[Solve, Observed]) -> SandboxError | None:
        """Replay ``env``'s sampled solves under every audit, side by side in one task (one changed pack per
        audit); an error if any differs."""
        from autotts_graph.sandbox.audit import AUDITS, differences, replay_groups
        from autotts_graph.sandbox.judge import load_judge_pack

        pack, configs, solves = self.plan.packs[env], [j.config for j in self.per_env[env]], self.samples[env]
        plans = []
        try:
            for audit in AUDITS:
                plans.append(audit.build(pack, observed, self.secret))
            task = SandboxTask(source=self.plan.inp.source, packs={p.audit.name: str(p.pack) for p in plans},
                               points=configs, seeds=self.plan.seeds, trace_seeds=[], solves=solves,
                               interpreter=self.interpreter, work=len(solves) * len(plans),
                               solve_timeout_s=self.ctx.solve_timeout_s)
            res = next(iter(self.ctx.executor.run([task])))
            if not res.ok:
                err = res.error
                return _rejected(f"the audits' replay failed ({err.kind.value}: {err.message}): the controller "
                                 "behaves differently when run again with the data it had not observed replaced "
                                 "or its answers renamed", err.details, ErrorKind.audit)
            results, per_pack = res.results or [], len(replay_groups(solves))
            original = load_judge_pack(pack)
            for k, plan in enumerate(plans):  # the runner's order: points, then the packs of each point
                problems = differences(plan, solves, original, observed, results[k::len(plans)], configs) \
                    if len(results) == per_pack * len(plans) else [f"the audit returned {len(results)} results, "
                                                                  f"expected {per_pack * len(plans)}"]
                if problems:
                    return _rejected(f"the {plan.audit.name} audit flagged the controller: {problems[0]}. "
                                     "Controllers may act only on what the primitives returned in the current "
                                     "question (no reading of replay data, no memory across questions or seeds) "
                                     "and must treat answers as opaque labels (equality, first-seen order, "
                                     "lexicographic order and 'ERR' only; no answer known in advance, no "
                                     "iteration over a set of answers).", problems[:10], ErrorKind.audit)
        finally:
            for plan in plans:
                plan.cleanup()
        return None


# --------------------------------------------------------------------------------------------------------
# 5. record, and the whole path


def evaluate_controller(ctx: ToolContext, inp: EvaluateInput,
                        progress: Callable[[int, int], None] | None = None) -> EvaluationSummary:
    """Score every (env, config) point through the one judged path, reusing cached points, and record it.

    Static checks on the host, the runtime in the sandbox (PyPy when the source allows), the judge on the
    host, the counterfactual and relabelling audits. A candidate that fails any of them gets an error and
    no figures.
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
        sweep = _Sweep(ctx, plan, interpreter, progress)
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
