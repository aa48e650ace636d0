"""Load controller sources and score them on replay packs (replay spec §3)."""

from __future__ import annotations

import linecache
import sys
import traceback
import types
from typing import Any

import numpy as np

from .contract import Controller
from .replay import Question, ReplayPack

CONTROLLER_FILENAME = "<controller>"


class ControllerError(Exception):
    """A controller failed; ``kind`` is syntax, contract or runtime, ``details`` its own traceback lines."""

    def __init__(self, kind: str, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details or []


def controller_traceback(exc: BaseException) -> list[str]:
    """The traceback lines that point into the controller source (the part its author can act on)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == CONTROLLER_FILENAME]
    lines = [f"line {f.lineno}, in {f.name}: {f.line or ''}".rstrip() for f in frames]
    lines.append(f"{type(exc).__name__}: {exc}")
    return lines


def load_controller_class(source: str) -> type[Controller]:
    """Execute a controller source and return its single Controller subclass."""
    try:
        code = compile(source, CONTROLLER_FILENAME, "exec")
    except SyntaxError as exc:
        raise ControllerError("syntax", f"line {exc.lineno}: {exc.msg}", [str(exc.text or "").rstrip()]) from None
    # Let tracebacks quote the controller's own lines.
    linecache.cache[CONTROLLER_FILENAME] = (len(source), None, source.splitlines(True), CONTROLLER_FILENAME)
    module = types.ModuleType("autotts_controller")
    module.__file__ = CONTROLLER_FILENAME
    sys.modules["autotts_controller"] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        raise ControllerError("runtime", f"importing the controller failed: {exc!r}",
                              controller_traceback(exc)) from None
    found = [v for v in module.__dict__.values()
             if isinstance(v, type) and issubclass(v, Controller) and v.__module__ == module.__name__]
    if not found:
        raise ControllerError("contract", "the source defines no subclass of autotts_runtime.Controller")
    if len(found) > 1:
        names = ", ".join(c.__name__ for c in found)
        raise ControllerError("contract", f"the source defines {len(found)} Controller subclasses ({names}); keep one")
    return found[0]


def instantiate(cls: type[Controller], config: dict) -> Controller:
    """Build the controller for one configuration, reporting contract violations as ControllerError."""
    try:
        controller = cls(config)
    except TypeError as exc:
        raise ControllerError("contract", f"cannot construct {cls.__name__}(config): {exc}",
                              controller_traceback(exc)) from None
    except Exception as exc:
        raise ControllerError("runtime", f"{cls.__name__}(config) raised {exc!r}", controller_traceback(exc)) from None
    if not isinstance(controller.params, dict):
        raise ControllerError("contract", "schedule(beta) must return a dict")
    return controller


def evaluate_point(cls: type[Controller], pack: ReplayPack, config: dict, seeds: list[int],
                   trace_seeds: frozenset[int] = frozenset({0})) -> dict[str, Any]:
    """Run one configuration over all seeds x questions; the spec's loop, aggregation and cost check."""
    controller = instantiate(cls, config)
    recorder = controller.trace
    n = len(pack.questions)
    golds = [q.gold for q in pack.questions]
    acc_seed: list[float] = []
    cost_seed: list[float] = []
    correct_rows: list[list[int]] = []
    token_rows: list[list[int]] = []
    answer_rows: list[list[str | None]] = []
    traces: list[dict[str, Any]] = []
    for seed in seeds:
        recorder.enabled = seed in trace_seeds
        envs = [Question(q, seed) for q in pack.questions]
        correct = total = 0
        c_row, t_row, a_row = [], [], []
        for qi in range(n):
            env = envs[qi]
            try:
                answer = controller(env)
            except Exception as exc:
                raise ControllerError("runtime", f"solve() raised {type(exc).__name__} on {pack.name} "
                                      f"question {qi} (seed {seed}, config {config})",
                                      controller_traceback(exc)) from None
            if not env.ledger_consistent():
                raise ControllerError("contract", f"cost ledger mismatch on {pack.name} question {qi} (seed {seed}): "
                                      "probe_more touched a branch that was never opened")
            if answer is not None and not isinstance(answer, str):
                raise ControllerError("contract", f"solve() must return a str or None, got {type(answer).__name__} "
                                      f"on {pack.name} question {qi} (seed {seed})")
            cost = env.total_cost
            ok = answer == golds[qi]
            correct += ok
            total += cost
            c_row.append(int(ok))
            t_row.append(cost)
            a_row.append(answer)
            if recorder.enabled:
                traces.append({"shuffle_seed": seed, "question_index": qi, "is_correct": ok, "cost": cost,
                               "answer": answer, "trace": recorder.steps})
        acc_seed.append(correct / n)
        cost_seed.append(total / n)
        correct_rows.append(c_row)
        token_rows.append(t_row)
        answer_rows.append(a_row)
    avg_cost = 0.0
    for c in cost_seed:
        avg_cost += c
    avg_cost /= len(seeds)
    return {
        "env": pack.name,
        "config": config,
        "description": controller.describe(),
        "params": _jsonable(controller.params),
        "accuracy": round(100 * float(np.mean(acc_seed)), 2),
        "avg_cost": avg_cost,
        "std_acc": round(100 * float(np.std(acc_seed)), 2),
        "acc_per_seed": acc_seed,
        "cost_per_seed": cost_seed,
        "seeds": list(seeds),
        "correct": correct_rows,
        "tokens": token_rows,
        "answers": answer_rows,
        "traces": traces,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)

