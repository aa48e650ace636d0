"""The ``process`` backend: a plain subprocess with rlimits. Not a security boundary.

It exists for development and for machines with neither Docker nor bwrap, and only when asked for by
name (``--sandbox process``): the code can read the user's files and reach the network.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import (
    INTERPRETER_ENV,
    RUNTIME_DIR,
    ErrorKind,
    Limits,
    SandboxError,
    SandboxResult,
    SandboxTask,
    result_from_output,
)

WARNING = ("the 'process' sandbox is NOT a security boundary: controller code runs as you, with your files "
           "and network. Use it only for code you trust.")


def read_capped(stream, cap: int, sink: list[bytes], over: threading.Event, on_over) -> None:
    """Drain ``stream`` into ``sink`` keeping at most ``cap`` bytes; call ``on_over`` once past the cap."""
    kept = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return
        if kept < cap:
            sink.append(chunk[: cap - kept])
        kept += len(chunk)
        if kept > cap and not over.is_set():
            over.set()
            on_over()


@dataclass
class Finished:
    """What a supervised runner process left: capped output, and how it ended."""

    out: bytes
    err: bytes
    timed_out: bool
    over_cap: bool
    returncode: int | None


def supervise(proc: subprocess.Popen, task: SandboxTask, limits: Limits, payload: bytes,
              kill: Callable[[], None]) -> Finished:
    """Feed the task, drain both streams under their caps (calling ``kill`` past a cap), enforce the
    task's deadline, then ``kill`` whatever the task left running and reap it."""
    out: list[bytes] = []
    err: list[bytes] = []
    over = threading.Event()
    readers = [threading.Thread(target=read_capped, args=(proc.stdout, task.stdout_cap(limits), out, over, kill)),
               threading.Thread(target=read_capped, args=(proc.stderr, limits.stderr_bytes, err, over, kill))]
    for t in readers:
        t.start()
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        proc.wait(timeout=task.deadline_s(limits))
    except subprocess.TimeoutExpired:
        timed_out = True
    kill()
    proc.wait()
    for t in readers:
        t.join()
    return Finished(out=b"".join(out), err=b"".join(err), timed_out=timed_out, over_cap=over.is_set(),
                    returncode=proc.returncode)


def interpreter_path(interpreter: str) -> str:
    """The host executable of ``pypy`` (Debian's pypy3) or ``cpython`` (this interpreter)."""
    if interpreter == "pypy":
        return shutil.which("pypy3") or "/usr/bin/pypy3"
    return os.path.realpath(sys.executable)


def pypy_available() -> bool:
    """Whether a host-side sandbox (bwrap, process) can run tasks under PyPy."""
    return shutil.which("pypy3") is not None


class ProcessBackend:
    """Runs the runner as ``python -m autotts_runtime.runner`` in a new session with rlimits."""

    name = "process"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits
        self.interpreters = ("pypy", "cpython") if pypy_available() else ("cpython",)
        self._tmp = tempfile.TemporaryDirectory(prefix="autotts-process-")
        os.symlink(RUNTIME_DIR, Path(self._tmp.name) / "autotts_runtime")

    def _preexec(self, limits: Limits):
        def apply() -> None:
            os.setsid()
            mem = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return apply

    def run(self, task: SandboxTask) -> SandboxResult:
        limits = self.limits or task.limits
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": self._tmp.name, "HOME": self._tmp.name, **INTERPRETER_ENV}
        started = time.perf_counter()
        try:
            proc = subprocess.Popen([interpreter_path(task.interpreter), "-s", "-m", "autotts_runtime.runner"],
                                    stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self._tmp.name,
                                    preexec_fn=self._preexec(limits))
        except OSError as exc:
            return SandboxResult(ok=False, backend=self.name, error=SandboxError(
                kind=ErrorKind.infrastructure, message=f"cannot start the runner: {exc}"))

        def kill() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        done = supervise(proc, task, limits, task.runner_payload(), kill)
        elapsed = time.perf_counter() - started
        tail = done.err[-4000:].decode("utf-8", "replace")
        if done.timed_out:
            return SandboxResult(ok=False, backend=self.name, elapsed_s=elapsed, stderr_tail=tail, error=SandboxError(
                kind=ErrorKind.timeout, message=f"the task ran past its {task.deadline_s(limits):g} s deadline and "
                                               "was killed"))
        if done.over_cap:
            return SandboxResult(ok=False, backend=self.name, elapsed_s=elapsed, stderr_tail=tail, error=SandboxError(
                kind=ErrorKind.output_limit, message="the task wrote more output than allowed and was killed"))
        return result_from_output(self.name, done.out, done.err, elapsed, done.returncode)

    def close(self) -> None:
        self._tmp.cleanup()
