"""Tool: check a controller source against the contract, statically and in the sandbox."""

from __future__ import annotations

from autotts_graph.sandbox.backends.base import SandboxError, SandboxTask, run_with_fallback
from autotts_graph.sandbox.static_checks import (
    ALLOWED_IMPORTS,
    COST_READOUTS,
    FORBIDDEN_CALLS,
    MAX_SOURCE_CHARS,
    check_source,
)
from autotts_graph.store.trajectories import pack_path
from pydantic import BaseModel, Field

from .context import ToolContext
from .environments import ENV_NAME_CHARS

__all__ = ["ALLOWED_IMPORTS", "COST_READOUTS", "FORBIDDEN_CALLS", "ValidateInput", "ValidationReport", "static_issues",
           "validate_controller"]


class ValidateInput(BaseModel):
    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS,
                        description=f"Complete controller source (at most {MAX_SOURCE_CHARS:,} characters).")
    env: str | None = Field(default=None, max_length=ENV_NAME_CHARS,
                            description="Environment for the smoke solve (default: first visible).")
    smoke_questions: int = Field(default=3, ge=1, le=30)


class ValidationReport(BaseModel):
    """ok when the source loads, obeys the contract, has a monotone schedule and smoke-solves cleanly."""

    ok: bool
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    controller: str | None = None
    schedule: dict[str, dict] = Field(default_factory=dict)
    sandbox_error: SandboxError | None = None


def static_issues(source: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) found without running the code: imports, reflection, private state, cost oracles."""
    report = check_source(source)
    return report.errors, report.warnings


def validate_controller(ctx: ToolContext, inp: ValidateInput) -> ValidationReport:
    """Static checks, then the sandbox's contract check (schedule over the beta grid, smoke solve)."""
    static = ctx.check_source(inp.source)
    errors, warnings = static.errors, static.warnings
    if errors:
        return ValidationReport(ok=False, errors=errors, warnings=warnings)
    envs = [inp.env] if inp.env else [e.name for e in ctx.environments()][:1]
    if envs:
        ctx.require_visible(envs)
    packs = {envs[0]: str(pack_path(ctx.store, envs[0]))} if envs else {}
    backend = ctx.backend
    interpreter = static.interpreter if static.interpreter in backend.interpreters else "cpython"
    task = SandboxTask(op="validate", source=inp.source, packs=packs, smoke_questions=inp.smoke_questions,
                       solve_timeout_s=ctx.solve_timeout_s, interpreter=interpreter)
    res = run_with_fallback(backend, task)
    if not res.ok:
        err = res.error
        msg = f"{err.kind.value}: {err.message}" + (f" ({'; '.join(err.details[-3:])})" if err.details else "")
        return ValidationReport(ok=False, errors=[msg], warnings=warnings, sandbox_error=err)
    report = res.report or {}
    return ValidationReport(ok=bool(report.get("ok")), errors=report.get("errors", []), warnings=warnings,
                            controller=report.get("controller"), schedule=report.get("schedule", {}))
