"""The static checks in a few worker processes, each bounded in time and memory (the tool server's checker).

Parsing a source holds the interpreter lock from the first character to the last: a 3 MB source stalled
every other client of an in-process server for seconds. A worker parses in its own process, at a lower
CPU priority, so the server's threads and event loop run on while it works; a check that runs past
``timeout_s`` is killed (and its worker replaced), and a worker's address space is capped at
``memory_mb``, so no source can stall the server or exhaust the host. Sources over ``MAX_SOURCE_CHARS``
are refused before any worker sees them.

A worker is ``python -m autotts_graph.sandbox.checker_pool``: it reads one JSON request per line on stdin
(``{"source": ...}``) and answers one JSON ``StaticReport`` per line on stdout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import subprocess
import sys
import threading
import time

from .static_checks import MAX_SOURCE_CHARS, StaticReport, check_source

log = logging.getLogger("autotts_graph.sandbox.checker_pool")

DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_S = 20.0  # a source at the size cap takes under a second; a busy 2-core host is slower
DEFAULT_MEMORY_MB = 512  # a warm worker maps ~100 MB; the costliest source at the cap peaked at ~300 MB
# One BLAS thread: a worker does no linear algebra, and each BLAS thread would reserve address space.
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class CheckerUnavailable(RuntimeError):
    """No checker worker could be started (one line for the caller)."""


class _Worker:
    """One checker process and the pipes to it."""

    def __init__(self, memory_mb: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autotts_graph.sandbox.checker_pool", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **_WORKER_ENV}, close_fds=True)
        self._buffer = b""

    def request(self, source: str, deadline: float) -> dict | None:
        """The worker's answer for ``source``, or None when it died or ran past ``deadline``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"source": source}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None  # the worker died (out of memory, killed)
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            return None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()


class CheckerPool:
    """``workers`` checker processes, started on demand; ``check`` is thread-safe and never raises for a source."""

    def __init__(self, workers: int = DEFAULT_WORKERS, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        if workers < 1:
            raise ValueError("a checker pool needs at least one worker")
        self.size = workers
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._all: set[_Worker] = set()
        self._closed = False

    def _take(self, deadline: float) -> _Worker | None:
        """An idle worker, a new one while the pool is short, or None once ``deadline`` passes."""
        while True:
            with self._lock:
                if self._closed:
                    raise CheckerUnavailable("the static checker is closed")
                spawn = self._idle.empty() and self._started < self.size
                if spawn:
                    self._started += 1
            if spawn:
                try:
                    worker = _Worker(self.memory_mb)
                except OSError as exc:
                    with self._lock:
                        self._started -= 1
                    raise CheckerUnavailable(f"cannot start a static checker process: {exc}") from None
                with self._lock:
                    self._all.add(worker)
                return worker
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:  # short waits: a worker retired meanwhile frees a place to start a new one
                return self._idle.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            self._started -= 1

    def check(self, source: str) -> StaticReport:
        """The static report of ``source``, checked in a worker (an error report when the check fails)."""
        if len(source) > MAX_SOURCE_CHARS:
            return check_source(source)  # refused on its length alone, before anything is parsed
        started = time.monotonic()
        worker = self._take(started + self.timeout_s)
        if worker is None:
            return StaticReport(errors=[f"the static checker stayed busy for {self.timeout_s:g} s; try again"])
        answer = worker.request(source, time.monotonic() + self.timeout_s)
        if answer is None:
            elapsed = time.monotonic() - started
            self._retire(worker)
            if elapsed >= self.timeout_s:
                return StaticReport(errors=[f"checking the source took longer than {self.timeout_s:g} s; "
                                            "simplify it"])
            return StaticReport(errors=[f"checking the source needs more than {self.memory_mb} MB of memory; "
                                        "simplify it"])
        with self._lock:
            closed = self._closed
        if closed:
            worker.kill()
        else:
            self._idle.put(worker)
        return StaticReport(errors=answer.get("errors", []), warnings=answer.get("warnings", []),
                            interpreter=answer.get("interpreter", "cpython"))

    def close(self) -> None:
        """Stop every worker (a check in flight gets an error report)."""
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.kill()


def _serve(memory_mb: int) -> None:
    """The worker loop: one request line in, one report line out, until stdin closes."""
    import resource

    import numpy  # noqa: F401  (the checks resolve numpy's attributes: load it before the memory cap)

    from .static_checks import reserved_private_names

    reserved_private_names()
    with contextlib.suppress(OSError):
        os.nice(10)  # behind the server's own threads when the cores are busy: light calls stay quick
    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            report = check_source(json.loads(line)["source"])
            answer = {"errors": report.errors, "warnings": report.warnings, "interpreter": report.interpreter}
        except MemoryError:
            answer = {"errors": [f"checking the source needs more than {memory_mb} MB of memory; simplify it"]}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MEMORY_MB)
