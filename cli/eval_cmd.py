"""`autotts-graph eval` and `autotts-graph baselines`: beta sweeps and reference baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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

DEFAULT_BETAS = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
SandboxOption = Annotated[str, typer.Option("--sandbox", help="auto (docker, else bwrap), docker, bwrap, or "
                                                             "process (NOT a security boundary).")]
DEFAULT_BETAS = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
WorkersOption = Annotated[int, typer.Option("--workers", min=1, help="Parallel sandbox tasks (default: cores).")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds one solve() may run before it "
                                                                       "is stopped and reported.")]


def make_context(store: Path, sandbox: str, workers: int | None, expose_heldout: bool = True,
                 timeout: float = 10.0, executor: str = "local", ray_address: str | None = None):
    """A ToolContext for a CLI user (who may see every environment); on Ray, workers default to its cores."""
    import os

    from autotts_graph.store.db import Store
    from autotts_graph.tools.context import ToolContext

    check_executor(executor)
    default = 0 if executor == "ray" else os.cpu_count() or 1
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
    """Sweep a controller's beta over environments: accuracy and mean tokens per question."""
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    source, label = read_controller(controller)
    beta_list = parse_floats(betas, "--betas")
    if any(not 0.0 <= b <= 1.0 for b in beta_list):
        raise ValueError("--betas: every value must lie in [0, 1]")
    ctx = make_context(store, sandbox, workers, timeout=timeout, executor=executor, ray_address=ray_address)
    if executor == "local":
        ctx.warm_up()
    try:
        with sweep_progress(f"eval {label}", ctx) as update:
            if controller.startswith("baseline:"):
                # Through the baselines tool: it adds structural constants (short-1's m) and fits bayes_fit.
                from autotts_graph.tools.baselines import BaselineInput, baseline_configs, run_baseline

                name = controller.split(":", 1)[1]
                summary, _ = run_baseline(ctx, BaselineInput(method=name, envs=env, seeds=seeds, trace_seeds=traces,
                                                             configs=baseline_configs(name, betas=beta_list)),
                                          update)
            else:
                summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=env, betas=beta_list,
                                                                 seeds=seeds, trace_seeds=traces, label=label), update)
        where = describe_executor(ctx)
    finally:
        ctx.close()
    if ctx.sandbox_reason:
        typer.echo(f"sandbox: {summary.backend} ({ctx.sandbox_reason})", err=True)
    if where:
        typer.echo(where, err=True)
    if as_json:
        print_json(summary.model_dump(mode="json"))
    if not summary.ok:
        err = summary.error
        details = f" | {' | '.join(err.details[-3:])}" if err.details else ""
        fail(f"{label}: {err.kind.value} error: {err.message}{details}")
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
