"""What every sandbox backend takes and returns: a typed task and a typed result."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

from autotts_graph.sandbox.runtime.runner import RESULT_MARKER
from pydantic import BaseModel, Field

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"


class ErrorKind(StrEnum):
    """Why a sandboxed task failed; ``infrastructure`` is never the controller's fault."""

    syntax = "syntax"
    contract = "contract"
    runtime = "runtime"
    timeout = "timeout"
    oom = "oom"
    output_limit = "output_limit"
    killed = "killed"
    infrastructure = "infrastructure"


class SandboxError(BaseModel):
    kind: ErrorKind
    message: str
    details: list[str] = Field(default_factory=list)


class Limits(BaseModel):
    """Resource limits of one task."""

    timeout_s: float = 600.0
    memory_mb: int = 2048
    cpus: float = 1.0
    pids: int = 128
    nofile: int = 256
    stdout_bytes: int = 256 * 1024 * 1024  # the result travels on stdout
    stderr_bytes: int = 1024 * 1024
    tmp_mb: int = 64


class SandboxTask(BaseModel):
    """One runner invocation (see ``sandbox/runtime/runner.py``); packs are host paths."""

    op: Literal["evaluate", "validate"] = "evaluate"
    source: str
    packs: dict[str, str] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: list(range(100)))
    trace_seeds: list[int] = Field(default_factory=lambda: [0])
    workers: int = 1
    smoke_questions: int = 3
    limits: Limits = Field(default_factory=Limits)

    def runner_payload(self, pack_paths: dict[str, str] | None = None) -> bytes:
        """The JSON the runner reads on stdin, with pack paths as seen inside the box."""
        body = self.model_dump(exclude={"limits"})
        if pack_paths is not None:
            body["packs"] = pack_paths
        return json.dumps(body).encode()


class SandboxResult(BaseModel):
    """The outcome of one task: results/report on success, a typed error otherwise."""

    ok: bool
    backend: str
    results: list[dict[str, Any]] | None = None
    report: dict[str, Any] | None = None
    error: SandboxError | None = None
    elapsed_s: float = 0.0
    stderr_tail: str = ""


class SandboxBackend(Protocol):
    """A place where controller code runs."""

    name: str

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
    except json.JSONDecodeError as exc:
        return SandboxResult(ok=False, backend=backend, elapsed_s=elapsed_s, stderr_tail=tail,
                             error=SandboxError(kind=ErrorKind.runtime, message=f"unreadable runner result: {exc}"))
    if not body.get("ok"):
        error = SandboxError(**body["error"])
        if error.kind == ErrorKind.runtime and any(line.startswith("MemoryError") for line in error.details):
            error.kind = ErrorKind.oom  # an allocation refused by the memory limit is the limit's doing
        return SandboxResult(ok=False, backend=backend, elapsed_s=elapsed_s, stderr_tail=tail, error=error)
    return SandboxResult(ok=True, backend=backend, results=body.get("results"), report=body.get("report"),
                         elapsed_s=elapsed_s, stderr_tail=tail)


def runtime_hash() -> str:
    """Hash of the runtime sources and data: evaluations and images are keyed by it."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(RUNTIME_DIR.iterdir()):
        if path.suffix in (".py", ".npy"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
