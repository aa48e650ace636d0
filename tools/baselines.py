"""Tool: the baselines over their budget sweeps.

The AutoTTS paper's set (SC@k, ASC, ESC, Parallel-Probe, CMC; replay spec §5) and the field's other
answer-only controllers (more-baselines spec): Optimal Bayesian stopping with a parameter-free and a fitted
prior, Dynasor-CoT, Certaindex-SC, ES-CoT, short-1@k and short-3@k, and DeepConf-consensus.

Every method is a plain controller source under ``sandbox/controllers/`` evaluated through the same path as
any other controller. One exception in how configs are built: the fitted Bayesian prior is fitted here, on
the host, from the search split (``_run_fitted``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.runtime.validate import BETA_GRID
from pydantic import BaseModel, Field

from .context import ToolContext
from .evaluate import EvaluateInput, EvaluationSummary, PointSummary, evaluate_controller

CONTROLLERS_DIR = Path(__file__).resolve().parents[1] / "sandbox" / "controllers"
POWERS = [1, 2, 4, 8, 16, 32, 64]


def _beta(config: dict[str, Any]) -> float:
    """The controller's beta for a config (default 0.5, clipped to [0, 1] as Controller does)."""
    return min(1.0, max(0.0, float(config.get("beta", 0.5))))


def k64(beta: float) -> int:
    """K64(β) = round(64 ** β): 1, 2, 2, 3, 5, 8, 12, 18, 28, 42, 64 for β = 0, 0.1, ..., 1."""
    return round(64**beta)


# Budgets of the new methods, for labels: the controllers' own schedule formulas (tests check they agree).
def _bayes_budget(c: dict[str, Any]) -> int:
    return int(c.get("max_samples", min(64, round(4 * 16 ** _beta(c)))))


def _short_budget(c: dict[str, Any]) -> int:
    m = int(c.get("m", 3))
    return int(c.get("k", max(m, k64(_beta(c)))))


# method -> (the config key of its budget, the budget of a config).
BUDGETS: dict[str, tuple[str, Callable[[dict[str, Any]], int]]] = {
    "bayes": ("max_samples", _bayes_budget),
    "bayes_fit": ("max_samples", _bayes_budget),
    "dynasor": ("k", lambda c: int(c.get("k", k64(_beta(c))))),
    "certaindex": ("cap", lambda c: int(c.get("cap", round(5 + 59 * _beta(c))))),
    "es_cot": ("k", lambda c: int(c.get("k", k64(_beta(c))))),
    "short1": ("k", _short_budget),
    "short3": ("k", _short_budget),
    "deepconf": ("budget", lambda c: int(c.get("budget", round(2 + 62 * _beta(c))))),
}


@dataclass(frozen=True)
class Method:
    """A baseline: its controller file, budget sweep, reference configurations (named in the tables)."""

    title: str
    source: str  # controller file stem under sandbox/controllers/
    sweep: list[dict[str, Any]]
    reference: list[dict[str, Any]]
    about: str  # one line for tool descriptions
    knobs: tuple[str, ...] = ("beta",)  # keys an explicit config must carry
    fixed: dict[str, Any] = field(default_factory=dict)  # structural constants merged into every config
    fitted: bool = False  # the Bayesian prior is fitted on the search split (see _run_fitted)
    label: str = "{title}({budget})"  # point label of a new method's config (β and other knobs follow)


def _betas(**fixed: Any) -> list[dict[str, Any]]:
    return [{"beta": b, **fixed} for b in BETA_GRID]


# Budget sweeps, including every reference configuration of the replay spec (§3.5, §5); the new methods sweep
# the β grid, and their reference point is β = 1, the 64-branch ceiling the paper's Table 1 compares at.
METHODS: dict[str, Method] = {
    "sc": Method("SC@k", "sc", [{"k": k} for k in POWERS], [{"k": 64}],
                 "self-consistency: k full reads, majority vote", ("k",)),
    "asc": Method("ASC", "asc", [{"max_samples": k, "threshold": 0.95} for k in POWERS],
                  [{"max_samples": 64, "threshold": 0.95}], "adaptive consistency, Beta-posterior stop",
                  ("max_samples",)),
    "esc": Method("ESC", "esc", [{"max_samples": k, "window_size": 8} for k in (16, 32, 64)],
                  [{"max_samples": 64, "window_size": 8}], "early-stopping self-consistency, unanimous windows",
                  ("max_samples", "window_size")),
    "parallel_probe": Method("Parallel-Probe", "parallel_probe",
                             [{"num_chains": k, "T": 40, "prune_patience": 7, "warm_up": 15} for k in POWERS],
                             [{"num_chains": 64, "T": 40, "prune_patience": 7, "warm_up": 15}],
                             "parallel probing with pruning and a stable-majority stop", ("num_chains",)),
    "cmc": Method("CMC", "cmc", _betas(), [{"beta": 0.5}, {"beta": 1.0}],
                  "confidence momentum controller (AutoTTS's discovered controller)"),
    "bayes": Method("Bayes-stop", "bayes_stop", _betas(), [{"beta": 1.0}],
                    "optimal Bayesian stopping, parameter-free geometric prior"),
    "bayes_fit": Method("Bayes-stop-fit", "bayes_stop", _betas(), [{"beta": 1.0}],
                        "optimal Bayesian stopping, prior fitted per model on the search split "
                        "(leave-one-question-out on the search environments)", fitted=True),
    "dynasor": Method("Dynasor-CoT", "dynasor", _betas(), [{"beta": 1.0}],
                      "Dynasor-CoT early exit per branch (N equal probe answers), majority over k branches",
                      label="{title}@{budget}"),
    "certaindex": Method("Certaindex-SC", "certaindex", _betas(), [{"beta": 1.0}],
                         "self-consistency that stops after 5 reads when their entropy certaindex >= 0.7"),
    "es_cot": Method("ES-CoT", "es_cot", _betas(), [{"beta": 1.0}],
                     "ES-CoT early exit per branch on answer-run growth, majority over k branches",
                     label="{title}@{budget}"),
    "short1": Method("short-1", "short_m_at_k", _betas(m=1), [{"beta": 1.0, "m": 1}],
                     "short-1@k: k chains in lockstep, the first to finish answers", fixed={"m": 1},
                     label="{title}@{budget}"),
    "short3": Method("short-3", "short_m_at_k", _betas(m=3), [{"beta": 1.0, "m": 3}],
                     "short-3@k: k chains in lockstep, majority of the first 3 to finish", fixed={"m": 3},
                     label="{title}@{budget}"),
    "deepconf": Method("DeepConf-cons", "deepconf_consensus", _betas(), [{"beta": 1.0}],
                       "DeepConf's log-prob-free part: stop once the leader's vote share is >= 0.95"),
}

# name -> (title, sweep configs): the shape every caller of the baselines uses.
SWEEPS: dict[str, tuple[str, list[dict[str, Any]]]] = {name: (m.title, m.sweep) for name, m in METHODS.items()}
REFERENCE: dict[str, list[dict[str, Any]]] = {name: m.reference for name, m in METHODS.items()}
NEW_METHODS = ("bayes", "bayes_fit", "dynasor", "certaindex", "es_cot", "short1", "short3", "deepconf")
# Config keys that carry data rather than knobs: kept out of labels, tables and tool answers.
DATA_KEYS = ("stop_at",)
# What the fitted variant adds to a reported config: where its prior came from.
FIT_META = ("prior", "fit_envs", "leave_one_out")


def baseline_source(name: str) -> str:
    """The controller source of a baseline (any key of ``METHODS``)."""
    method = METHODS.get(name)
    path = CONTROLLERS_DIR / f"{method.source}.py" if method else None
    if path is None or not path.exists():
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(METHODS)}")
    return path.read_text()


def baseline_configs(name: str, configs: list[dict[str, Any]] | None = None,
                     betas: list[float] | None = None) -> list[dict[str, Any]]:
    """The configs to run: explicit ones, else one per beta, else the sweep; structural constants added."""
    method = METHODS[name]
    if configs is None:
        configs = [{"beta": float(b)} for b in betas] if betas is not None else method.sweep
    return [{**method.fixed, **c} for c in configs]


def display_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config without its data keys (the fitted prior's stop table)."""
    return {k: v for k, v in config.items() if k not in DATA_KEYS}


def point_label(method: str, config: dict[str, Any]) -> str:
    """Short human label such as ``ASC(64)``, ``CMC β=0.5`` or ``short-3@64 β=1.0``."""
    spec = METHODS[method]
    title = spec.title
    if method in BUDGETS:
        key, budget = BUDGETS[method]
        knobs = [f"β={config['beta']}"] if "beta" in config else []
        # Explicit knobs other than the budget (e.g. Dynasor's N) keep labels unique.
        knobs += [f"{k}={v}" for k, v in config.items() if k not in ("beta", "m", key, *DATA_KEYS, *FIT_META)]
        return f"{spec.label.format(title=title, budget=budget(config))} {', '.join(knobs) or 'β=default'}"
    if method == "cmc" or not ({"k", "max_samples", "num_chains"} & set(config)):
        return f"{title} β={config.get('beta', 'default')}"
    if method == "sc":
        return f"SC@{config['k']}"
    if method == "esc":
        return f"{title}({config['max_samples']},{config.get('window_size', 8)})"
    budget = config.get("max_samples", config.get("num_chains"))
    return f"{title}({budget})"


def is_reference(method: str, config: dict[str, Any]) -> bool:
    """Whether a config is one of the method's reference configurations (the Table-1 points)."""
    core = {k: v for k, v in config.items() if k not in DATA_KEYS + FIT_META}
    return any(core == {**METHODS[method].fixed, **ref} for ref in METHODS[method].reference)


class BaselineInput(BaseModel):
    """Run one baseline's budget sweep (or chosen configs) on environments."""

    method: str = Field(description="One of " + ", ".join(METHODS) + ".")
    envs: list[str]
    configs: list[dict[str, Any]] | None = Field(default=None, description="Defaults to the method's sweep.")
    seeds: int = Field(default=100, ge=1, le=1000)
    trace_seeds: int = Field(default=0, ge=0, le=10)
    split: str = "search"
    fit_envs: list[str] | None = Field(
        default=None, description="bayes_fit only: the search environments the prior is fitted on (default: every "
                                  "visible environment of the store's search split).")


class BaselineRow(BaseModel):
    """One baseline configuration on one environment."""

    method: str
    label: str
    point: PointSummary


def run_baseline(ctx: ToolContext, inp: BaselineInput, progress: Callable[[int, int], None] | None = None,
                 tasks: int | None = None) -> tuple[EvaluationSummary, list[BaselineRow]]:
    """Evaluate a baseline sweep; cached in the history like any controller (``tasks``: see
    ``evaluate_controller``)."""
    source = baseline_source(inp.method)
    configs = baseline_configs(inp.method, inp.configs)
    if METHODS[inp.method].fitted:
        summary = _run_fitted(ctx, inp, source, configs, progress, tasks)
    else:
        summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=inp.envs, configs=configs,
                                                         seeds=inp.seeds, trace_seeds=inp.trace_seeds,
                                                         label=f"baseline:{inp.method}", split=inp.split), progress,
                                      tasks)
    rows = [BaselineRow(method=inp.method, label=point_label(inp.method, p.config), point=p) for p in summary.points]
    return summary, rows



def run_baselines(ctx: ToolContext, inputs: list[BaselineInput], parallel: int,
                  progress_of: Callable[[str], Callable[[int, int], None] | None] | None = None,
                  ) -> list[tuple[EvaluationSummary, list[BaselineRow]]]:
    """Several baselines, ``parallel`` at a time, each evaluation in one sandbox task; results in the order of
    ``inputs``. One task per method loads its packs, warms PyPy's JIT and pays a container once, and while one
    method's records are judged, audited and recorded on the host the others replay (benchmarks/
    embedded_default.py). The figures are those of ``run_baseline`` one by one."""
    from concurrent.futures import ThreadPoolExecutor

    def one(inp: BaselineInput) -> tuple[EvaluationSummary, list[BaselineRow]]:
        return run_baseline(ctx, inp, progress_of(inp.method) if progress_of else None, tasks=1)

    if parallel <= 1 or len(inputs) <= 1:
        return [run_baseline(ctx, inp, progress_of(inp.method) if progress_of else None) for inp in inputs]
    # The fitted prior's leave-one-out folds are the longest: started first, the others fill the other workers.
    order = sorted(range(len(inputs)), key=lambda i: not METHODS[inputs[i].method].fitted)
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="autotts-baseline") as pool:
        futures = {i: pool.submit(one, inputs[i]) for i in order}
        return [futures[i].result() for i in range(len(inputs))]

# ---- the fitted Bayesian prior ------------------------------------------------------------------------------
#
# The prior is one candidate per search question of the same model (its sorted final-answer frequencies). It
# reaches the controller as the structural constant ``stop_at``: for n = 0..max_samples and b = 0..n//2, the
# inclusive ranges of a where P(a, b, n) >= threshold. On an environment that is itself part of the fit, each
# question must be scored with the prior fitted on the *other* questions (leave-one-question-out), but a solve
# only sees its own question, never its index. So every distinct leave-one-out table is evaluated over the
# whole environment (an ordinary, cached evaluation, recorded as ``baseline:bayes_fit folds``), and the point
# reported for question j is stitched from the run of question j's own table: per seed, question j's answer,
# correctness and tokens, then the reference aggregation (spec §3.2). On an environment outside the fit, all
# questions share one table and the stitched point is that evaluation's point, unchanged.


def bayes_schedule(config: dict[str, Any]) -> tuple[float, int]:
    """(threshold, max_samples) of the Bayesian-stopping controller for a config (its own formulas)."""
    beta = _beta(config)
    threshold = float(config.get("threshold", 1 - 0.1 * 10 ** (-2 * beta)))
    return threshold, _bayes_budget(config)


def _final_answers(ctx: ToolContext, env: str) -> list[list[str]]:
    """Per question, the final answers of its branches (file order)."""
    with ctx.store.connect(read_only=True) as con:
        rows = con.execute("SELECT question_index, list(final_answer ORDER BY branch_index) FROM branches"
                           " WHERE env = ? GROUP BY question_index ORDER BY question_index", [env]).fetchall()
    return [list(r[1]) for r in rows]


def _fit_sets(ctx: ToolContext, inp: BaselineInput) -> dict[str, list[str]]:
    """Per target environment, the search environments its prior is fitted on: those of the same model.

    Without any of the same model the prior is pooled over every fit environment [ours], and the reported
    config says so through ``fit_envs``.
    """
    infos = {e.name: e for e in ctx.environments()}
    if inp.fit_envs is not None:
        ctx.require_visible(inp.fit_envs)
        fit = list(inp.fit_envs)
    else:
        fit = [name for name, e in infos.items() if e.split == "search"]
    if not fit:
        raise ValueError("bayes_fit needs at least one search environment to fit its prior on")
    out = {}
    for env in inp.envs:
        model = infos[env].model if env in infos else None
        out[env] = [f for f in fit if infos[f].model == model] or fit
    return out


def _stop_runs(p: Any, threshold: float, n_max: int) -> list[list[list[int]]]:
    """stop_at[n][b] = [lo, hi, lo, hi, ...]: the inclusive ranges of a with P(a, b, n) >= threshold.

    Ranges rather than a least a: under a mixture prior P is not always monotone in a (seen on Qwen3-8B)."""
    out: list[list[list[int]]] = []
    for n in range(n_max + 1):
        row: list[list[int]] = []
        for b in range(n // 2 + 1):
            ranges: list[int] = []
            for a in range(max(b, 1), n - b + 1):
                if float(p[a, b, n]) >= threshold:
                    if ranges and ranges[-1] == a - 1:
                        ranges[-1] = a
                    else:
                        ranges += [a, a]
            row.append(ranges)
        out.append(row)
    return out


_PARTS: dict[str, Any] = {}  # candidates digest -> (num, den): the posterior's parts, a few seconds each


def _parts(candidates: list[list[float]]) -> tuple[Any, Any]:
    from .bayes_prior import posterior_parts

    key = hashlib.sha256(json.dumps(candidates).encode()).hexdigest()
    if key not in _PARTS:
        if len(_PARTS) >= 8:
            _PARTS.pop(next(iter(_PARTS)))
        _PARTS[key] = posterior_parts(candidates)
    return _PARTS[key]


def fitted_tables(ctx: ToolContext, env: str, fit_envs: list[str],
                  configs: list[dict[str, Any]]) -> list[list[list[list[list[int]]]]]:
    """tables[c][j]: the stop table for config c and question j of ``env`` (leave-one-out when env is fitted on)."""
    from .bayes_prior import candidate_from_answers, posterior

    cands: list[list[float]] = []
    own: dict[int, int] = {}  # question of env -> its candidate's position
    for f in fit_envs:
        for qi, finals in enumerate(_final_answers(ctx, f)):
            if f == env:
                own[qi] = len(cands)
            cands.append(candidate_from_answers(finals))
    num, den = _parts(cands)
    n_questions = len(_final_answers(ctx, env))
    full = posterior(num, den) if len(own) < n_questions else None
    loo = {j: posterior(num, den, exclude=c) for j, c in own.items()}
    tables = []
    for config in configs:
        threshold, n_max = bayes_schedule(config)
        memo: dict[int, list] = {}  # id of a posterior array -> its table (the full fit is shared)
        per_q = []
        for j in range(n_questions):
            p = loo[j] if j in loo else full
            if id(p) not in memo:
                memo[id(p)] = _stop_runs(p, threshold, n_max)
            per_q.append(memo[id(p)])
        tables.append(per_q)
    return tables


def _run_fitted(ctx: ToolContext, inp: BaselineInput, source: str, configs: list[dict[str, Any]],
                progress: Callable[[int, int], None] | None, tasks: int | None = None) -> EvaluationSummary:
    """Fit, evaluate every distinct stop table per environment, stitch per-question results, record them."""
    from autotts_graph.sandbox.judge import aggregate  # numpy: only fitted baselines need it here
    from autotts_graph.store import history
    from autotts_graph.store.rows import OutcomeRow, TraceRow
    from autotts_graph.store.trajectories import pack_path

    started = time.perf_counter()
    ctx.require_visible(inp.envs)
    fit_sets = _fit_sets(ctx, inp)
    code = history.code_hash(source)
    stitched: list[dict[str, Any]] = []
    cached = 0
    backend = ""
    total_jobs = 0
    plans = []
    for env in inp.envs:
        tables = fitted_tables(ctx, env, fit_sets[env], configs)
        distinct: list[dict[str, Any]] = []  # the configs actually evaluated (config + one table)
        index: dict[str, int] = {}
        use = []  # use[c][j] = position in distinct of question j's run for config c
        for c, config in enumerate(configs):
            row = []
            for table in tables[c]:
                body = {**config, "stop_at": table}
                key = json.dumps(body, sort_keys=True)
                if key not in index:
                    index[key] = len(distinct)
                    distinct.append(body)
                row.append(index[key])
            use.append(row)
        plans.append((env, distinct, use))
        total_jobs += len(distinct)
    done = 0
    for env, distinct, use in plans:
        step = (lambda d, t, base=done: progress(base + d, total_jobs)) if progress else None
        folds = evaluate_controller(ctx, EvaluateInput(source=source, envs=[env], configs=distinct, seeds=inp.seeds,
                                                       trace_seeds=inp.trace_seeds, split=inp.split,
                                                       label=f"baseline:{inp.method} folds"), step, tasks)
        done += len(distinct)
        backend = folds.backend
        cached += folds.cached_points
        if not folds.ok:
            return folds
        outcomes: dict[int, list[OutcomeRow]] = {}
        for o in history.get_outcomes(ctx.store, folds.evaluation_id, env=env):
            outcomes.setdefault(o.point_index, []).append(o)
        fold_points = {p.point_index: p for p in folds.points}
        traces: dict[tuple[int, int], list[TraceRow]] = {}
        if inp.trace_seeds:
            page, _ = history.get_traces(ctx.store, folds.evaluation_id, env=env, limit=10**7)
            for t in page:
                traces.setdefault((t.point_index, t.question_index), []).append(t)
        fit_envs = fit_sets[env]
        for c, config in enumerate(configs):
            shown = {**config, "prior": "fitted", "fit_envs": fit_envs, "leave_one_out": env in fit_envs}
            runs = use[c]
            seeds = [o.seed for o in outcomes[runs[0]]]
            correct, tokens, answers = [], [], []
            for s in range(len(seeds)):
                correct.append([int(outcomes[runs[j]][s].correct[j]) for j in range(len(runs))])
                tokens.append([outcomes[runs[j]][s].tokens[j] for j in range(len(runs))])
                answers.append([outcomes[runs[j]][s].answers[j] for j in range(len(runs))])
            first = fold_points[runs[0]]
            threshold, n_max = bayes_schedule(config)
            digest = hashlib.sha256(json.dumps([code, env, shown, [json.dumps(distinct[r]["stop_at"]) for r in runs],
                                                seeds, inp.trace_seeds]).encode()).hexdigest()
            stitched.append({
                "point_index": c, "env": env, "pack_hash": Path(pack_path(ctx.store, env)).stem,
                "cache_key": "stitched-" + digest, "config": shown, "beta": config.get("beta"),
                "description": f"{first.description.split(' | ')[0]} | config={shown!r}",
                **aggregate(correct, tokens),
                "params": {"threshold": threshold, "max_samples": n_max, "prior": "fitted"}, "seeds": seeds,
                "correct": correct, "tokens": tokens, "answers": answers,
                "traces": sorted((t2 for j, r in enumerate(runs) for t2 in traces.get((r, j), [])),
                                 key=lambda t2: (t2.seed, t2.question_index)),
            })
    for p in stitched:  # the stored trace shape (history.record_evaluation)
        p["traces"] = [{"shuffle_seed": t.seed, "question_index": t.question_index, "is_correct": t.is_correct,
                        "cost": t.cost, "answer": t.answer, "trace": t.steps} for t in p["traces"]]
    evaluation_id = history.new_id("ev")
    protocol = {"seeds": inp.seeds, "trace_seeds": inp.trace_seeds, "envs": inp.envs,
                "configs": [p["config"] for p in stitched[: len(configs)]], "backend": backend,
                "stitched": "per-question stop tables (leave-one-question-out on fitted environments)"}
    history.record_evaluation(ctx.store, evaluation_id=evaluation_id, code=code, label=f"baseline:{inp.method}",
                              split=inp.split, protocol=protocol, points=stitched, status="ok",
                              elapsed_s=time.perf_counter() - started)
    points = [PointSummary(env=p["env"], point_index=p["point_index"], beta=p["beta"], config=p["config"],
                           description=p["description"], accuracy=p["accuracy"], avg_cost=p["avg_cost"],
                           std_acc=p["std_acc"]) for p in sorted(stitched, key=lambda p: (p["point_index"],
                                                                                          inp.envs.index(p["env"])))]
    return EvaluationSummary(evaluation_id=evaluation_id, ok=True, points=points, cached_points=cached,
                             elapsed_s=time.perf_counter() - started, backend=backend)
