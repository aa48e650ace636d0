"""Load controller sources and score them on replay packs (replay spec §3)."""

from __future__ import annotations

import base64
import linecache
import sys
import time
import traceback
import types
import zlib
from array import array
from typing import Any

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


def load_controller_class(source: str) -> type:
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
    except BaseException as exc:
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


def instantiate(cls: type, config: dict) -> Controller:
    """Build the controller for one configuration, reporting contract violations as ControllerError."""
    try:
        controller = cls(config)
    except TypeError as exc:
        raise ControllerError("contract", f"cannot construct {cls.__name__}(config): {exc}",
                              controller_traceback(exc)) from None
    except BaseException as exc:
        raise ControllerError("runtime", f"{cls.__name__}(config) raised {exc!r}", controller_traceback(exc)) from None
    if not isinstance(controller.params, dict):
        raise ControllerError("contract", "schedule(beta) must return a dict")
    return controller


def encode_ints(values: array) -> str:
    """An int32 array as base64(zlib(little-endian bytes)): action records are mostly zeros."""
    if sys.byteorder != "little":
        values = array("i", values)
        values.byteswap()
    return base64.b64encode(zlib.compress(values.tobytes(), 1)).decode("ascii")


class Watch:
    """What the runner's watchdog reads: the solve in progress and when it started."""

    __slots__ = ("where", "since")

    def __init__(self) -> None:
        self.where = ""
        self.since = 0.0


def evaluate_point(cls: type, pack: ReplayPack, config: dict, seeds: list[int],
                   trace_seeds: frozenset[int] = frozenset({0}), only: list[tuple[int, int]] | None = None,
                   watch: Watch | None = None) -> dict[str, Any]:
    """Run one configuration over seeds x questions (the spec's loop) and return the raw action record.

    Nothing here scores: per solve it keeps the answer (as a code into the pack's vocabulary, -1 for None),
    the probe reads of every opened branch and the fully read branches. The host-side judge re-prices
    these against its own copy of the pack and compares answers with gold answers the box never holds.
    ``only`` restricts the loop to given (seed, question) solves, run in that order on the same controller
    (audits: an audited solve comes wherever it comes in the controller's life, as in an evaluation).
    """
    controller = instantiate(cls, config)
    recorder = controller.trace
    n = len(pack.questions)
    width = max((len(q.tokens) for q in pack.questions), default=0)
    codes = {a: i for i, a in enumerate(pack.vocab)}
    solves = only if only is not None else [(seed, qi) for seed in seeds for qi in range(n)]
    answers = array("i", [-1]) * len(solves)
    reads = array("i", [0]) * (len(solves) * width)
    full: list[list[int]] = []
    traces: list[dict[str, Any]] = []
    clock = time.perf_counter
    for row, (seed, qi) in enumerate(solves):
        recorder.enabled = seed in trace_seeds
        env = Question(pack.questions[qi], seed)
        if watch is not None:
            watch.where = f"{pack.name} question {qi} (seed {seed}, config {config})"
            watch.since = clock()
        try:
            answer = controller(env)
        except BaseException as exc:  # KeyboardInterrupt/SystemExit raised by controller code are its errors
            raise ControllerError("runtime", f"solve() raised {type(exc).__name__} on {pack.name} "
                                  f"question {qi} (seed {seed}, config {config})",
                                  controller_traceback(exc)) from None
        if not env.ledger_consistent():
            raise ControllerError("contract", f"cost ledger mismatch on {pack.name} question {qi} (seed {seed}): "
                                  "probe_more touched a branch that was never opened")
        if answer is not None:
            if type(answer) is not str:  # a str subclass could redefine equality: only plain str is scored
                raise ControllerError("contract", "solve() must return a plain str or None, got "
                                      f"{type(answer).__name__} on {pack.name} question {qi} (seed {seed})")
            code = codes.get(answer)
            if code is None:
                raise ControllerError("contract", f"solve() returned {answer[:80]!r} on {pack.name} question {qi} "
                                      f"(seed {seed}), which no branch ever produced: return an answer the "
                                      "controller observed")
            answers[row] = code
        opened, fully = env.actions()
        reads[row * width: row * width + len(opened)] = array("i", opened)
        if fully:
            full.append([row, *fully])
        if recorder.enabled:
            traces.append({"shuffle_seed": seed, "question_index": qi, "trace": recorder.steps})
    if watch is not None:
        watch.where = ""
    return {
        "description": controller.describe(),
        "params": _jsonable(controller.params),
        "solves": len(solves),
        "width": width,
        "answers": encode_ints(answers),
        "reads": encode_ints(reads),
        "full": full,
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
