"""`autotts-graph eval` and `autotts-graph baselines`: beta sweeps and reference baselines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from autotts_graph.sandbox.runtime.validate import BETA_GRID
from pydantic import BaseModel, Field

from .cluster_cmd import ExecutorOption, RayAddressOption, check_executor, describe_executor, sweep_progress
from .common import (
    DEFAULT_STORE,
    StoreOption,
    fail,
    parse_floats,
    print_json,
    print_table,
    user_errors,
)

SandboxOption = Annotated[str, typer.Option("--sandbox", help="auto (docker, else bwrap), docker, bwrap, or "
                                                             "process (NOT a security boundary).")]
# The flag's text form of the contract's grid (one copy: sandbox/runtime/validate.py).
DEFAULT_BETAS = ",".join(f"{b:g}" for b in BETA_GRID)
WorkersOption = Annotated[int, typer.Option("--workers", min=1, help="Parallel sandbox tasks (default: cores).")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds one solve() may run before it "
                                                                       "is stopped and reported.")]


def make_context(store: Path, sandbox: str, workers: int | None, expose_heldout: bool = True,
                 timeout: float = 10.0, executor: str = "local", ray_address: str | None = None):
    """A ToolContext for a CLI user (who may see every environment); on Ray, workers default to its cores."""
    from autotts_graph.sandbox.backends.base import usable_cores
    from autotts_graph.store.db import Store
    from autotts_graph.tools.context import ToolContext

    check_executor(executor)
    default = 0 if executor == "ray" else usable_cores()
    return ToolContext(store=Store(store), sandbox=sandbox, workers=workers or default,
                       expose_heldout=expose_heldout, solve_timeout_s=timeout, executor_name=executor,
                       ray_address=ray_address)


def read_controller(spec: str) -> tuple[str, str]:
    """(source, label) from a file path or ``baseline:NAME``."""
    if spec.startswith("baseline:"):
        from autotts_graph.tools.baselines import baseline_source

        return baseline_source(spec.split(":", 1)[1]), spec
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec}: no such controller file (or use baseline:NAME)")
    return path.read_text(encoding="utf-8", errors="replace"), path.name


class EvalRequest(BaseModel):
    """What one `eval` asks, whether it runs here or in the sandbox daemon (``serve_evaluation``)."""

    controller: str = Field(description="As given: a controller file or baseline:NAME.")
    source: str | None = Field(default=None, description="The file's source; None for baseline:NAME.")
    label: str
    envs: list[str] = Field(min_length=1)
    betas: list[float] = Field(min_length=1)
    seeds: int = Field(ge=1, le=1000)
    traces: int = Field(ge=0, le=10)
    store: str = Field(description="Absolute path of the store file.")
    workers: int | None = Field(default=None, ge=1)
    timeout: float = Field(gt=0)


def _run_eval(ctx: Any, req: EvalRequest, update: Callable[[int, int], None]) -> Any:
    """The evaluation `eval` asks for, through the one evaluation path; its EvaluationSummary."""
    if req.controller.startswith("baseline:"):
        # Through the baselines tool: it adds structural constants (short-1's m) and fits bayes_fit.
        from autotts_graph.tools.baselines import BaselineInput, baseline_configs, baseline_source, run_baseline

        name = req.controller.split(":", 1)[1]
        baseline_source(name)  # ValueError naming the known baselines when there is no such one
        summary, _ = run_baseline(ctx, BaselineInput(method=name, envs=req.envs, seeds=req.seeds,
                                                     trace_seeds=req.traces,
                                                     configs=baseline_configs(name, betas=req.betas)), update)
        return summary
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    return evaluate_controller(ctx, EvaluateInput(source=req.source, envs=req.envs, betas=req.betas, seeds=req.seeds,
                                                  trace_seeds=req.traces, label=req.label), update)


def preload() -> None:
    """Import the evaluation path (numpy, the judge, the store): the sandbox daemon does it once at start."""
    import autotts_graph.sandbox.audit  # noqa: F401
    import autotts_graph.sandbox.judge  # noqa: F401
    import autotts_graph.tools.baselines  # noqa: F401
    import autotts_graph.tools.evaluate  # noqa: F401


def serve_evaluation(payload: dict[str, Any], backend: Any, progress: Callable[[int, int], None],
                     stores: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sandbox daemon's handler of `eval`: the evaluation eval_command would run, on the daemon's warm
    backend, with the CLI's visibility (every environment). Errors the user must fix become RequestError,
    worded as the CLI words them. ``stores`` keeps the daemon's Store objects by path (each checks its
    schema once)."""
    import duckdb
    from autotts_graph.sandbox.backends.base import usable_cores
    from autotts_graph.sandbox.daemon import Borrowed, RequestError
    from autotts_graph.sandbox.select import SandboxUnavailable
    from autotts_graph.store.db import Store, StoreError
    from autotts_graph.tools.context import ToolContext
    from pydantic import ValidationError

    try:
        req = EvalRequest.model_validate(payload)
        store = stores.get(req.store) if stores is not None else None
        if store is None:
            store = Store(req.store)
            if stores is not None:
                stores[req.store] = store
        ctx = ToolContext(store=store, sandbox="docker", workers=req.workers or usable_cores(),
                          expose_heldout=True, solve_timeout_s=req.timeout, _backend=Borrowed(backend))
        try:
            return _run_eval(ctx, req, progress).model_dump(mode="json")
        finally:
            ctx.close()  # the borrowed backend stays the daemon's
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RequestError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None
    except (StoreError, SandboxUnavailable, ValueError, FileNotFoundError, PermissionError) as exc:
        raise RequestError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except duckdb.Error as exc:
        raise RequestError(f"store error: {str(exc).splitlines()[0]}") from None


def evaluation_handler() -> Callable[[dict[str, Any], Any, Callable[[int, int], None]], dict[str, Any]]:
    """The `evaluate` handler of one sandbox daemon (``serve_evaluation`` with the daemon's own stores)."""
    stores: dict[str, Any] = {}
    return lambda payload, backend, progress: serve_evaluation(payload, backend, progress, stores)


def _via_daemon(req: EvalRequest) -> tuple[dict[str, Any] | None, str]:
    """The evaluation run by a sandbox daemon, or (None, why not): the caller then runs it here."""
    from autotts_graph.sandbox import daemon

    try:
        if not daemon.wanted() or daemon.status() is None:
            return None, ""
    except daemon.DaemonError as exc:  # a socket directory that is not private: never used
        typer.echo(f"warning: {exc}", err=True)
        return None, ""
    from .common import progress_bar

    try:
        with progress_bar(f"eval {req.label}") as update:
            return daemon.evaluate(req.model_dump(), update)
    except daemon.RequestError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


@user_errors
def eval_command(
    controller: Annotated[str, typer.Argument(help="Controller file (.py) or baseline:NAME (see `baselines "
                                                   "--help` for the names).")],
    env: Annotated[list[str], typer.Option("--env", help="Environment (repeat for several).")],
    betas: Annotated[str, typer.Option(help="Comma-separated knob values.")] = DEFAULT_BETAS,
    seeds: Annotated[int, typer.Option(min=1, max=1000, help="Shuffle seeds 0..N-1.")] = 100,
    traces: Annotated[int, typer.Option(min=0, max=10, help="Keep full traces for the first N seeds.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    sandbox: SandboxOption = "auto",
    workers: WorkersOption = None,
    timeout: TimeoutOption = 10.0,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Sweep a controller's beta over environments: accuracy and mean tokens per question.

    With a sandbox daemon running (`sandbox warm`) and the docker sandbox, the daemon runs the evaluation
    (the same one, already warm); otherwise it runs here.
    """
    beta_list = parse_floats(betas, "--betas")
    if any(not 0.0 <= b <= 1.0 for b in beta_list):
        raise ValueError("--betas: every value must lie in [0, 1]")
    if controller.startswith("baseline:"):
        source, label = None, controller  # the baseline's source is looked up where the evaluation runs
    else:
        source, label = read_controller(controller)
    req = EvalRequest(controller=controller, source=source, label=label, envs=env, betas=beta_list, seeds=seeds,
                      traces=traces, store=str(Path(store).absolute()), workers=workers, timeout=timeout)
    if executor == "local" and sandbox in ("auto", "docker"):
        out, reason = _via_daemon(req)
        if out is not None:
            _report(out, label, reason, "", as_json)
            return
    # No early start of the backend: it would save nothing measurable on new work (the first task creates
    # it) and cost a cache hit ~0.4 s of Docker client start-up.
    ctx = make_context(store, sandbox, workers, timeout=timeout, executor=executor, ray_address=ray_address)
    try:
        with sweep_progress(f"eval {label}", ctx) as update:
            summary = _run_eval(ctx, req, update)
        where = describe_executor(ctx)
    finally:
        ctx.close()
    _report(summary.model_dump(mode="json"), label, ctx.sandbox_reason, where, as_json)


def _report(out: dict[str, Any], label: str, reason: str, where: str, as_json: bool) -> None:
    """Print an evaluation summary (``EvaluationSummary`` as JSON) the way `eval` does, failing with one line on
    an error."""
    from autotts_graph.tools.evaluate import EvaluationSummary

    summary = EvaluationSummary.model_validate(out)
    if summary.backend == "cache":
        typer.echo("sandbox: not needed (every point was already in the store)", err=True)
    elif reason:
        typer.echo(f"sandbox: {summary.backend} ({reason})", err=True)
    if where:
        typer.echo(where, err=True)
    if as_json:
        print_json(out)
    if not summary.ok:
        err = summary.error
        details = f" | {' | '.join(err.details[-3:])}" if err and err.details else ""
        fail(f"{label}: {err.kind.value if err else 'unknown'} error: {err.message if err else ''}{details}")
    if not as_json:
        print_table(f"{label} — evaluation {summary.evaluation_id}", ["env", "β", "accuracy %", "tokens/question",
                                                                         "std %"],
                    [[p.env, p.beta, f"{p.accuracy:.2f}", f"{int(p.avg_cost):,}", f"{p.std_acc:.2f}"]
                     for p in summary.points])


@user_errors
def baselines_command(
    env: Annotated[list[str], typer.Option("--env", help="Environment (repeat for several).")],
    methods: Annotated[str, typer.Option(help="Comma-separated: sc, asc, esc, parallel_probe, cmc, bayes, bayes_fit, "
                                              "dynasor, certaindex, es_cot, short1, short3, deepconf; or 'all'.")] =
        "all",
    reference: Annotated[bool, typer.Option("--reference", help="Only each method's reference configurations "
                                                                "(the paper's Table 1 points).")] = False,
    seeds: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    fmt: Annotated[str, typer.Option("--format", help="markdown, csv or json.")] = "markdown",
    sandbox: SandboxOption = "auto",
    workers: WorkersOption = None,
    timeout: TimeoutOption = 10.0,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """The baselines over their budget sweeps (or reference points), as a Table-1-style table."""
    from autotts_graph.tools.baselines import REFERENCE, SWEEPS, BaselineInput, baseline_configs, run_baseline

    from .report import baseline_table

    if fmt not in ("markdown", "csv", "json"):
        raise ValueError("--format must be markdown, csv or json")
    chosen = list(SWEEPS) if methods.strip() == "all" else [m.strip() for m in methods.split(",") if m.strip()]
    for m in chosen:
        if m not in SWEEPS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(SWEEPS)}")
    ctx = make_context(store, sandbox, workers, timeout=timeout, executor=executor, ray_address=ray_address)
    rows = []
    try:
        for m in chosen:
            configs = baseline_configs(m, REFERENCE[m]) if reference else None
            with sweep_progress(f"baseline {m}", ctx) as update:
                summary, method_rows = run_baseline(ctx, BaselineInput(method=m, envs=env, seeds=seeds,
                                                                       configs=configs), update)
            if not summary.ok:
                fail(f"baseline {m}: {summary.error.kind.value} error: {summary.error.message}")
            rows += method_rows
        where = describe_executor(ctx)
    finally:
        ctx.close()
    if where:
        typer.echo(where, err=True)
    typer.echo(baseline_table(rows, env, fmt))
