"""Static-and-dynamic contract check of a controller source, run inside the sandbox."""

from __future__ import annotations

import json
import math
from typing import Any

from .evaluate import ControllerError, controller_traceback, instantiate, load_controller_class
from .replay import Question, ReplayPack

BETA_GRID = [round(0.1 * i, 1) for i in range(11)]


def check_schedule(cls) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Schedule over the beta grid; errors for non-numeric, non-deterministic or non-monotone knobs."""
    errors: list[str] = []
    table: dict[str, dict[str, Any]] = {}
    for beta in BETA_GRID:
        params = instantiate(cls, {"beta": beta}).params
        again = instantiate(cls, {"beta": beta}).params
        if params != again:
            errors.append(f"schedule({beta}) is not deterministic")
        table[str(beta)] = params
    keys = sorted({k for p in table.values() for k in p})
    for key in keys:
        values = [table[str(b)].get(key) for b in BETA_GRID]
        if any(isinstance(v, bool) for v in values) or not all(isinstance(v, (int, float)) for v in values):
            if len({json.dumps(v, sort_keys=True, default=repr) for v in values}) > 1:
                errors.append(f"knob {key!r} is not numeric but changes with beta: {values}")
            continue
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            errors.append(f"knob {key!r} is not finite: {values}")
            continue
        up = all(a <= b for a, b in zip(values, values[1:]))
        down = all(a >= b for a, b in zip(values, values[1:]))
        if not (up or down):
            errors.append(f"knob {key!r} is not monotone in beta: {values}")
    return table, errors


def smoke_solve(cls, pack: ReplayPack, questions: int, betas: tuple[float, ...] = (0.0, 0.5, 1.0)) -> tuple[
        list[dict[str, Any]], list[str]]:
    """Solve a few questions at a few betas with tracing on; check answers, costs and the trace surface."""
    errors: list[str] = []
    runs: list[dict[str, Any]] = []
    for beta in betas:
        controller = instantiate(cls, {"beta": beta})
        controller.trace.enabled = True
        for qi, data in enumerate(pack.questions[:questions]):
            env = Question(data, 0)
            try:
                answer = controller(env)
            except Exception as exc:
                raise ControllerError("runtime", f"solve() raised {type(exc).__name__} on {pack.name} question {qi} "
                                      f"(beta {beta})", controller_traceback(exc)) from None
            steps = controller.trace.steps
            where = f"beta {beta}, question {qi}"
            if answer is not None and not isinstance(answer, str):
                errors.append(f"{where}: solve() returned {type(answer).__name__}, expected str or None")
            if not env.ledger_consistent():
                errors.append(f"{where}: probe_more touched a branch that was never opened")
            events = [s.get("event") for s in steps]
            if not events or events[0] != "start":
                errors.append(f"{where}: the trace must begin with a 'start' step")
            if events.count("finish") != 1 or (events and events[-1] != "finish"):
                n_finish = events.count("finish")
                errors.append(f"{where}: the trace must end with exactly one 'finish' step (got {n_finish})")
            try:
                size = len(json.dumps(steps))
            except (TypeError, ValueError) as exc:
                errors.append(f"{where}: trace payloads must be JSON-serialisable ({exc})")
                size = -1
            runs.append({"beta": beta, "question_index": qi, "answer": answer if isinstance(answer, str) else None,
                         "cost": env.total_cost, "trace_steps": len(steps), "trace_bytes": size})
    return runs, errors


def validate_source(source: str, pack: ReplayPack | None, smoke_questions: int = 3) -> dict[str, Any]:
    """Full contract check; ControllerError for code that does not load, a report otherwise."""
    cls = load_controller_class(source)
    table, errors = check_schedule(cls)
    runs: list[dict[str, Any]] = []
    if pack is not None and not errors:
        runs, smoke_errors = smoke_solve(cls, pack, smoke_questions)
        errors += smoke_errors
    return {"ok": not errors, "controller": cls.__name__, "name": getattr(cls, "NAME", cls.__name__),
            "errors": errors, "schedule": table, "smoke": runs}
