"""What every sandbox backend takes and returns: a typed task and a typed result."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

from autotts_graph.sandbox.runtime.runner import RESULT_MARKER
from pydantic import BaseModel, Field, field_validator

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
# The environment of every task's interpreter, whatever the backend. PYTHONHASHSEED fixes set and
# dict-of-str iteration order, so a controller's actions are reproducible (the audit replays solves and
# compares them). PyPy sizes its nursery from the last-level cache, which VMs report as hundreds of MB; a
# 2 MB nursery stays in L2 and replays CMC 15-20 % faster (benchmarks/replay_throughput.py). Garbage
# collection timing never changes what a controller computes.
INTERPRETER_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYPY_GC_NURSERY": "2MB",
                   "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ErrorKind(StrEnum):
    """Why a sandboxed task failed; ``infrastructure`` is never the controller's fault."""

    syntax = "syntax"
    contract = "contract"
    audit = "audit"  # the counterfactual audit saw the controller use data it had not observed
    runtime = "runtime"
    timeout = "timeout"
    oom = "oom"
    output_limit = "output_limit"
    killed = "killed"
    infrastructure = "infrastructure"


def _storable(text: str, limit: int) -> str:
    # Messages can quote controller output: bounded, and no lone surrogates that a store writer rejects.
    return str(text)[:limit].encode("utf-8", "replace").decode("utf-8")


class SandboxError(BaseModel):
    """Why a task failed, in words its author can act on."""

    kind: ErrorKind
    message: str
    details: list[str] = Field(default_factory=list)

    @field_validator("message")
    @classmethod
    def _short_message(cls, value: str) -> str:
        return _storable(value, 2000)

    @field_validator("details")
    @classmethod
    def _short_details(cls, value: list[str]) -> list[str]:
        return [_storable(line, 500) for line in value[-20:]]


def usable_cores() -> int:
    """The cores this process may run on (``taskset`` narrows them; ``os.cpu_count`` ignores that)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def pinned_cpus() -> str | None:
    """The cores this process is pinned to as a cpuset list ("0", "0,2"), or None when it may use every core:
    a user who pins a command (``taskset -c 0``) pins its sandbox containers too."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if not allowed or len(allowed) >= (os.cpu_count() or len(allowed)):
        return None
    return ",".join(str(c) for c in allowed)


class Limits(BaseModel):
    """Resource limits of one task."""

    timeout_s: float | None = None  # a fixed wall-clock deadline; None scales it with the task's work
    memory_mb: int = 2048
    cpus: float = 1.0
    pids: int = 128
    nofile: int = 256
    stdout_bytes: int = 64 * 1024 * 1024  # the most any task may write; each task's own cap is lower
    stderr_bytes: int = 1024 * 1024
    tmp_mb: int = 64


STARTUP_S = 30.0  # interpreter start, pack loading, controller import
TRACE_BYTES_PER_POINT = 4 * 1024 * 1024
RECORD_BYTES_PER_SOLVE = 1024  # base64 of an answer code and up to 128 read counts, uncompressed


class SandboxTask(BaseModel):
    """One runner invocation (see ``sandbox/runtime/runner.py``); packs are host paths."""

    op: Literal["evaluate", "validate"] = "evaluate"
    source: str
    packs: dict[str, str] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: list(range(100)))
    trace_seeds: list[int] = Field(default_factory=lambda: [0])
    # An audit: per pack, its chosen solves (point, seed, question), replayed in the order given.
    solves: dict[str, list[tuple[int, int, int]]] | None = None
    interpreter: Literal["pypy", "cpython"] = "cpython"
    solve_timeout_s: float = 10.0  # the in-box watchdog's limit for one solve() call
    work: int = 0  # solves the task will run (the caller knows the packs' sizes): scales deadline and caps
    smoke_questions: int = 3
    limits: Limits = Field(default_factory=Limits)

    def deadline_s(self, limits: Limits | None = None) -> float:
        """Wall-clock limit: fixed when the limits say so, else start-up plus an average budget per solve.

        The in-box watchdog stops a single hung solve after ``solve_timeout_s`` and says where; this
        deadline is the backstop for code that defeats the watchdog, and it grows with the work instead
        of holding a slot for minutes on a tiny task.
        """
        limits = limits or self.limits
        if limits.timeout_s is not None:
            return limits.timeout_s
        if self.op == "validate":
            return STARTUP_S + 30 * self.solve_timeout_s
        return STARTUP_S + self.solve_timeout_s + self.work * self.solve_timeout_s / 50

    def stdout_cap(self, limits: Limits | None = None) -> int:
        """Most bytes the runner may write on stdout: what its records and traces can honestly need."""
        limits = limits or self.limits
        traced = len(self.points) * len(self.packs) if self.trace_seeds and self.solves is None else 0
        need = 8 * 1024 * 1024 + self.work * RECORD_BYTES_PER_SOLVE + traced * TRACE_BYTES_PER_POINT
        return min(limits.stdout_bytes, need)

    def runner_payload(self, pack_paths: dict[str, str] | None = None) -> bytes:
        """The JSON the runner reads on stdin, with pack paths as seen inside the box."""
        body = self.model_dump(exclude={"limits", "work", "interpreter"})
        if pack_paths is not None:
            body["packs"] = pack_paths
        return json.dumps(body).encode()


class SandboxResult(BaseModel):
    """The outcome of one task: results/report on success, a typed error otherwise."""

    ok: bool
    backend: str
    interpreter: str = ""
    results: list[dict[str, Any]] | None = None
    report: dict[str, Any] | None = None
    error: SandboxError | None = None
    elapsed_s: float = 0.0
    runner_s: float = 0.0  # the runner's own account of its time (for benchmarks: it is the box's word)
    stderr_tail: str = ""


class SandboxBackend(Protocol):
    """A place where controller code runs."""

    name: str
    interpreters: tuple[str, ...]  # which of "pypy", "cpython" it can run

    def run(self, task: SandboxTask) -> SandboxResult: ...

    def close(self) -> None: ...


def result_from_output(backend: str, stdout: bytes, stderr: bytes, elapsed_s: float,
                       returncode: int | None) -> SandboxResult:
    """Turn the runner's framed stdout (and exit status) into a SandboxResult."""
    tail = stderr[-4000:].decode("utf-8", "replace")
    text = stdout.decode("utf-8", "replace")
    idx = text.rfind(RESULT_MARKER)
    if idx < 0:
        if returncode is not None and returncode < 0:
            sig = -returncode
            kind = ErrorKind.oom if sig == 9 and "MemoryError" in tail else ErrorKind.killed
            msg = f"the controller process died from signal {sig}"
        else:
            kind, msg = ErrorKind.runtime, f"the runner exited with status {returncode} before reporting a result"
        return SandboxResult(ok=False, backend=backend, elapsed_s=elapsed_s, stderr_tail=tail,
                             error=SandboxError(kind=kind, message=msg, details=tail.splitlines()[-5:]))
    try:
        body = json.loads(text[idx + len(RESULT_MARKER):])
        if not isinstance(body, dict):
            raise ValueError("not an object")
        error = None if body.get("ok") is True else SandboxError.model_validate(body.get("error"))
        if body.get("ok") is True and not isinstance(body.get("results", []), list):
            raise ValueError("results are not a list")
    except (ValueError, RecursionError) as exc:  # JSON and pydantic errors: the box's output is untrusted
        return SandboxResult(ok=False, backend=backend, elapsed_s=elapsed_s, stderr_tail=tail,
                             error=SandboxError(kind=ErrorKind.contract, message=f"unreadable runner result: "
                                                f"{str(exc)[:200]}"))
    interpreter = str(body.get("interpreter", ""))[:16]
    if error is not None:
        if error.kind == ErrorKind.runtime and any(line.startswith("MemoryError") for line in error.details):
            error.kind = ErrorKind.oom  # an allocation refused by the memory limit is the limit's doing
        return SandboxResult(ok=False, backend=backend, interpreter=interpreter, elapsed_s=elapsed_s,
                             stderr_tail=tail, error=error)
    report = body.get("report")
    runner_s = body.get("elapsed_s")
    return SandboxResult(ok=True, backend=backend, interpreter=interpreter, results=body.get("results"),
                         report=report if isinstance(report, dict) else None, elapsed_s=elapsed_s,
                         runner_s=float(runner_s) if isinstance(runner_s, (int, float)) else 0.0, stderr_tail=tail)


def runtime_hash() -> str:
    """Hash of the runtime sources and data: evaluations and images are keyed by it."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(RUNTIME_DIR.iterdir()):
        if path.suffix in (".py", ".npy", ".json"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _pypy_cannot_load(res: SandboxResult) -> bool:
    """A PyPy failure that is not the controller's fault: PyPy is missing, or the source needs CPython."""
    err = res.error
    if res.ok or err is None:
        return False
    if err.kind in (ErrorKind.syntax, ErrorKind.infrastructure):
        return True
    return err.kind == ErrorKind.runtime and "importing the controller failed" in err.message and any(
        "ImportError" in line or "ModuleNotFoundError" in line for line in err.details)


def run_with_fallback(backend: SandboxBackend, task: SandboxTask) -> SandboxResult:
    """Run a task; when PyPy cannot load the controller, run it again under CPython."""
    res = backend.run(task)
    if task.interpreter == "pypy" and _pypy_cannot_load(res):
        res = backend.run(task.model_copy(update={"interpreter": "cpython"}))
    return res
