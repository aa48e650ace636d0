"""The ``docker`` backend: each task runs in its own fresh, hardened container as uid 65534.

Containers (see ``sandbox/pool.py``) have no network, a read-only root, size-capped tmpfs /tmp and
/dev/shm, all capabilities dropped, no-new-privileges, a seccomp profile denying ptrace and its kin,
pids/memory(=swap)/cpu/nofile limits, an explicit environment and one read-only mount holding exactly the
task's replay packs. A task is one ``docker exec`` of ``env -i ... pypy3|python3 -m autotts_runtime.runner``
with the task JSON (controller source included) written to its stdin as data. Every container serves one
task and is destroyed after it, whatever happened.

While the exec runs, the host demultiplexes its output stream with a cap per stream (the container is
killed the moment a cap is passed; the excess is read and dropped, never kept), enforces the wall-clock
deadline by killing the whole container (every process the task started dies with its PID namespace),
and reads the memory cgroup's OOM counter.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..pool import (
    TASK_USER,
    ContainerPool,
    ContainerSpec,
    PoolError,
    PoolStats,
    Slot,
    host_oom_kills,
    open_exec_stream,
    sweep_leftovers,
    task_command,
)
from .base import (
    ErrorKind,
    Limits,
    SandboxError,
    SandboxResult,
    SandboxTask,
    pinned_cpus,
    result_from_output,
    usable_cores,
)

log = logging.getLogger("autotts_graph.sandbox.docker")

RESULT_MARKER = b"\x1eAUTOTTS-RESULT\x1e"
MAX_POOLS = 4  # distinct container specs kept warm at once


class _ExecNotStarted(RuntimeError):
    """The task's exec could not even be created (the container is gone); safe to retry elsewhere."""


class DockerUnavailable(RuntimeError):
    """The docker backend cannot be used here (engine down or image missing); one line for the user."""


def default_pool_size() -> int:
    """AUTOTTS_SANDBOX_POOL, else the number of cores."""
    env = os.environ.get("AUTOTTS_SANDBOX_POOL")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return usable_cores()


def connect(timeout_s: int = 30) -> Any:
    """A pinged docker SDK client, or DockerUnavailable with a one-line reason."""
    from ..image.build import BuildError, docker_client

    try:
        return docker_client(timeout=timeout_s)
    except BuildError as exc:
        raise DockerUnavailable(str(exc)) from None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _ExecReader:
    """Demultiplexes a non-TTY exec stream (8-byte frame headers) with a byte cap per stream."""

    def __init__(self, sock: socket.socket, caps: dict[int, int], on_over: Callable[[], None]) -> None:
        self.sock = sock
        self.caps = caps
        self.on_over = on_over
        self.kept: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.seen: dict[int, int] = {1: 0, 2: 0}
        self.over = threading.Event()
        self.result_seen = threading.Event()
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="autotts-exec-reader")

    def _run(self) -> None:
        try:
            while True:
                header = _recv_exact(self.sock, 8)
                if header is None:
                    return
                stream, size = header[0], struct.unpack(">I", header[4:])[0]
                left = size
                while left:
                    chunk = self.sock.recv(min(left, 65536))
                    if not chunk:
                        return
                    left -= len(chunk)
                    self._take(stream, chunk)
        except OSError as exc:
            # Closed under us (container destroyed: expected after a kill) or broken: the stream is over.
            self.error = exc

    def _take(self, stream: int, chunk: bytes) -> None:
        cap = self.caps.get(stream, 0)
        kept = self.kept.setdefault(stream, bytearray())
        self.seen[stream] = self.seen.get(stream, 0) + len(chunk)
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
        if self.seen[stream] > cap and not self.over.is_set():
            self.over.set()
            self.on_over()
        if stream == 1 and chunk.endswith(b"\n") and RESULT_MARKER in kept:
            self.result_seen.set()


class DockerBackend:
    """Runs tasks in a warm pool of hardened containers (see the module docstring)."""

    name = "docker"
    interpreters = ("pypy", "cpython")

    def __init__(self, limits: Limits | None = None, pool_size: int | None = None, image: str | None = None,
                 client: Any = None, warm: bool = True, acquire_timeout_s: float = 120.0,
                 refill_after_s: float | None = None) -> None:
        """Connect, check the image, sweep leftovers and start warming the default pool.

        ``refill_after_s`` refills the pools once no task has run for that long (see
        ``ContainerPool.release``); the sandbox daemon sets it. Raises DockerUnavailable (one line) when
        no engine answers or the image is not built.
        """
        from ..image.build import image_exists, image_tag

        self.limits = limits
        self.client = client or connect()
        self.image = image or image_tag()
        try:
            present = image_exists(self.client, self.image)
        except Exception as exc:
            raise DockerUnavailable(f"the Docker engine failed to answer: {exc}") from None
        if not present:
            raise DockerUnavailable(f"the sandbox image {self.image} is not built: "
                                    "run `autotts-graph sandbox build` (add --offline without a registry)")
        self.pool_size = pool_size or default_pool_size()
        self.acquire_timeout_s = acquire_timeout_s
        self.refill_after_s = refill_after_s
        self._pools: dict[ContainerSpec, ContainerPool] = {}
        self._lock = threading.Lock()
        self._closed = False
        sweep_leftovers(self.client)
        default = self._pool(self._spec(limits or Limits()))
        if warm:
            default.start()
        # Containers must not outlive the process: close at exit even if the caller forgot.
        ref = weakref.ref(self)
        atexit.register(lambda: (b := ref()) is not None and b.close())

    def _spec(self, limits: Limits) -> ContainerSpec:
        return ContainerSpec(image=self.image, memory_mb=limits.memory_mb, cpus=limits.cpus, pids=limits.pids,
                             nofile=limits.nofile, tmp_mb=limits.tmp_mb, cpuset=pinned_cpus())

    def _pool(self, spec: ContainerSpec) -> ContainerPool:
        with self._lock:
            pool = self._pools.get(spec)
            if pool is None:
                if len(self._pools) >= MAX_POOLS:  # drop the oldest non-default spec's pool
                    oldest = list(self._pools)[1]
                    self._pools.pop(oldest).close()
                pool = self._pools[spec] = ContainerPool(self.client, spec, self.pool_size,
                                                           refill_after_s=self.refill_after_s)
            return pool

    @property
    def pool(self) -> ContainerPool:
        """The pool for the backend's default limits."""
        return next(iter(self._pools.values()))

    def pool_stats(self) -> list[PoolStats]:
        """Counters of every pool (one per container spec in use)."""
        with self._lock:
            pools = list(self._pools.values())
        return [pool.snapshot() for pool in pools]

    def run(self, task: SandboxTask) -> SandboxResult:
        """Run one task; every failure comes back as a typed result, nothing raises."""
        limits = self.limits or task.limits
        started = time.perf_counter()

        def failure(kind: ErrorKind, message: str, tail: str = "") -> SandboxResult:
            return SandboxResult(ok=False, backend=self.name, elapsed_s=time.perf_counter() - started,
                                 stderr_tail=tail, error=SandboxError(kind=kind, message=message))

        missing = [p for p in task.packs.values() if not os.path.isfile(p)]
        if missing:
            return failure(ErrorKind.infrastructure, f"replay pack not found on the host: {missing[0]}")
        if self._closed:
            return failure(ErrorKind.infrastructure, "the docker sandbox backend is closed")
        pool = self._pool(self._spec(limits))
        for attempt in (1, 2):
            try:
                slot = pool.acquire(self.acquire_timeout_s)
            except PoolError as exc:
                return failure(ErrorKind.infrastructure, str(exc))
            reason = "infrastructure error"
            try:
                result, reason = self._run_in(pool, slot, task, limits, started)
                return result
            except _ExecNotStarted as exc:
                # The warm container died while idle (killed or removed from outside): nothing of the
                # task ran yet, so replace it and try once more before blaming the engine.
                log.warning("sandbox container %s unusable (%s)", slot.container.name, exc)
                if attempt == 2:
                    return failure(ErrorKind.infrastructure, f"the Docker engine cannot run the task: {exc}")
            except Exception as exc:  # engine errors mid-task: never the controller's fault
                log.warning("sandbox infrastructure error: %s", exc)
                return failure(ErrorKind.infrastructure, f"the Docker engine failed during the task: {exc}")
            finally:
                pool.release(slot, reason=reason)
        raise AssertionError("unreachable")

    def _run_in(self, pool: ContainerPool, slot: Slot, task: SandboxTask, limits: Limits,
                started: float) -> tuple[SandboxResult, str]:
        import docker

        api = self.client.api
        payload = task.runner_payload(ContainerPool.stage_packs(slot, task.packs))
        runner = pool.take_runner(slot, task.interpreter)
        if runner is not None:
            exec_id, sock = runner
        else:
            try:
                exec_id = api.exec_create(slot.id, task_command(pool.spec.memory_mb, task.interpreter), stdin=True,
                                          stdout=True, stderr=True, user=TASK_USER, workdir="/tmp")["Id"]
            except docker.errors.APIError as exc:
                if exc.status_code in (404, 409):  # no such container / container is not running
                    raise _ExecNotStarted(exc.explanation or str(exc)) from None
                raise
            sock = open_exec_stream(api, exec_id)
        killed = threading.Event()

        def kill_now() -> None:
            with contextlib.suppress(Exception):
                slot.container.kill()

        def kill_container() -> None:
            # Never block the caller: the engine only finishes the kill once the exec's output stream
            # is drained, and the reader thread (which calls this on a cap hit) is what drains it.
            if not killed.is_set():
                killed.set()
                threading.Thread(target=kill_now, daemon=True, name="autotts-kill").start()

        reader = _ExecReader(sock, {1: task.stdout_cap(limits), 2: limits.stderr_bytes}, kill_container)
        reader.thread.start()
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # EOF on the runner's stdin
        except OSError:
            pass  # the process died before reading its input; its exit status tells why
        timed_out = False
        deadline = time.perf_counter() + task.deadline_s(limits)  # waiting for a container does not count
        exited_at: float | None = None
        exit_code: int | None = None
        next_poll = time.monotonic() + 0.2
        while reader.thread.is_alive():
            reader.thread.join(0.02 if reader.result_seen.is_set() else 0.05)
            now = time.perf_counter()
            if now >= deadline:
                timed_out = True
                break
            # A background process holding the exec's stdout keeps the stream open after the runner
            # exited: poll the exec's state and stop waiting shortly after it is done.
            if reader.thread.is_alive() and (reader.result_seen.is_set() or time.monotonic() >= next_poll):
                next_poll = time.monotonic() + 0.2
                info = api.exec_inspect(exec_id)
                if not info["Running"]:
                    exit_code = info["ExitCode"]
                    exited_at = exited_at or now
                    if now - exited_at > 0.25:
                        break
        broken = reader.error if not reader.thread.is_alive() else None  # before we close it ourselves
        oom = False
        if timed_out or killed.is_set() or not reader.result_seen.is_set():
            oom = bool(self._oom_kills(slot))
        if timed_out:
            kill_container()
        if killed.is_set():
            reader.thread.join(5.0)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes a reader still blocked in recv (close alone may not)
        with contextlib.suppress(OSError):
            sock.close()
        if exit_code is None and not killed.is_set():
            exit_code = self._exit_code(exec_id)
        elapsed = time.perf_counter() - started
        out, err = bytes(reader.kept[1]), bytes(reader.kept[2])
        tail = err[-4000:].decode("utf-8", "replace")

        def error(kind: ErrorKind, message: str) -> SandboxResult:
            return SandboxResult(ok=False, backend=self.name, elapsed_s=elapsed, stderr_tail=tail,
                                 error=SandboxError(kind=kind, message=message, details=tail.splitlines()[-5:]))

        if oom:
            return error(ErrorKind.oom, f"the task exceeded its {limits.memory_mb} MB memory limit and was "
                                        "killed by the OOM killer"), "OOM"
        if timed_out:
            return error(ErrorKind.timeout, f"the task ran past its {task.deadline_s(limits):g} s deadline; "
                                            "everything it started was killed"), "timeout"
        if reader.over.is_set():
            return error(ErrorKind.output_limit, "the task wrote more output than allowed "
                                                 f"(stdout {task.stdout_cap(limits)} B, stderr "
                                                 f"{limits.stderr_bytes} B) and was killed"), "output cap"
        if killed.is_set():
            return error(ErrorKind.infrastructure, "the container was killed"), "killed"
        if broken is not None and not reader.result_seen.is_set():
            return error(ErrorKind.infrastructure, f"the task's output stream broke: {broken}"), "stream error"
        returncode = exit_code
        if exit_code is not None and exit_code > 128:  # killed by a signal: 128 + signal number
            returncode = -(exit_code - 128)
        return result_from_output(self.name, out, err, elapsed, returncode), ""

    def _exit_code(self, exec_id: str) -> int | None:
        end = time.monotonic() + 2.0
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info["Running"] or time.monotonic() > end:
                return info["ExitCode"]
            time.sleep(0.01)

    def _oom_kills(self, slot: Slot) -> int:
        """OOM kills in the container's memory cgroup: host cgroup files, else read inside the box."""
        count = host_oom_kills(slot.id)
        if count is not None:
            return count
        with contextlib.suppress(Exception):
            res = slot.container.exec_run(["cat", "/sys/fs/cgroup/memory/memory.oom_control",
                                           "/sys/fs/cgroup/memory.events"], user=TASK_USER)
            for line in res.output.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and value.strip().isdigit():
                    return int(value)
        return 0

    def close(self) -> None:
        """Destroy every container this backend started."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
