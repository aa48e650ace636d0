"""Tool: check a controller source against the contract, statically and in the sandbox."""

from __future__ import annotations

import ast

from autotts_graph.sandbox.backends.base import SandboxError, SandboxTask
from autotts_graph.store.trajectories import pack_path
from pydantic import BaseModel, Field

from .context import ToolContext

ALLOWED_IMPORTS = frozenset({
    "autotts_runtime", "math", "collections", "itertools", "functools", "heapq", "statistics", "bisect",
    "operator", "dataclasses", "typing", "numpy", "enum", "fractions", "__future__",
})
FORBIDDEN_CALLS = frozenset({"open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "globals",
                             "vars", "getattr", "setattr", "delattr"})
COST_READOUTS = frozenset({"get_seq_and_total_tokens", "get_cost_per_branch_active"})


class ValidateInput(BaseModel):
    source: str = Field(description="Complete controller source.")
    env: str | None = Field(default=None, description="Environment for the smoke solve (default: first visible).")
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
    """(errors, warnings) found without running the code: imports, I/O, private state, cost oracles."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"syntax error at line {exc.lineno}: {exc.msg}"], []
    errors: list[str] = []
    warnings: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] not in ALLOWED_IMPORTS:
                    errors.append(f"line {node.lineno}: import of {name!r} is not allowed "
                                  f"(allowed: {', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            errors.append(f"line {node.lineno}: call to {node.func.id}() is not allowed in a controller")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") and not node.attr.startswith("__") and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                errors.append(f"line {node.lineno}: access to private attribute {node.attr!r} (replay internals "
                              "are hidden information)")
            elif node.attr.startswith("__") and node.attr not in ("__init__", "__name__", "__class__"):
                errors.append(f"line {node.lineno}: dunder attribute {node.attr!r} is not allowed")
            elif node.attr in COST_READOUTS:
                warnings.append(f"line {node.lineno}: {node.attr}() is for diagnostics; using it to decide when to "
                                "stop is an oracle the contract forbids")
    return errors, warnings


def validate_controller(ctx: ToolContext, inp: ValidateInput) -> ValidationReport:
    """Static checks, then the sandbox's contract check (schedule over the beta grid, smoke solve)."""
    errors, warnings = static_issues(inp.source)
    if errors:
        return ValidationReport(ok=False, errors=errors, warnings=warnings)
    envs = [inp.env] if inp.env else [e.name for e in ctx.environments()][:1]
    if envs:
        ctx.require_visible(envs)
    packs = {envs[0]: str(pack_path(ctx.store, envs[0]))} if envs else {}
    res = ctx.backend.run(SandboxTask(op="validate", source=inp.source, packs=packs,
                                      smoke_questions=inp.smoke_questions))
    if not res.ok:
        err = res.error
        msg = f"{err.kind.value}: {err.message}" + (f" ({'; '.join(err.details[-3:])})" if err.details else "")
        return ValidationReport(ok=False, errors=[msg], warnings=warnings, sandbox_error=err)
    report = res.report or {}
    return ValidationReport(ok=bool(report.get("ok")), errors=report.get("errors", []), warnings=warnings,
                            controller=report.get("controller"), schedule=report.get("schedule", {}))
