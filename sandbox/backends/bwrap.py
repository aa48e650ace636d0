"""The ``bwrap`` backend: bubblewrap namespaces + rlimits (+ cgroup limits when the host allows them).

Weaker than Docker, used when no Docker engine answers: the task runs in fresh user, PID, network,
IPC, UTS and mount namespaces (``--unshare-all``) as uid 65534, with an empty environment, a root
filesystem made only of read-only binds of the Python installation and the runtime, a size-capped tmpfs
/tmp, the task's pack files bound read-only under /packs, ``--die-with-parent`` and ``--new-session``.
Every task gets a new sandbox, so no state carries over. Killing bwrap ends the PID namespace and with it
every process the task started, setsid children included.

Weaker because: there is no seccomp filter and the kernel's full syscall surface is exposed (to an
unprivileged user namespace); memory is bounded per process by RLIMIT_AS rather than per task; the
number of processes is bounded by a pids cgroup only when this process may create one (root with a
writable cgroup tree), otherwise by RLIMIT_NPROC, which the kernel does not enforce for root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
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
from .process import interpreter_path, pypy_available, supervise

log = logging.getLogger("autotts_graph.sandbox.bwrap")

TASK_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
            "PYTHONPATH": "/opt/autotts", **INTERPRETER_ENV}
CGROUP_ROOT = Path("/sys/fs/cgroup")


class BwrapUnavailable(RuntimeError):
    """bwrap is missing or cannot create namespaces here; one line for the user."""


def bwrap_works() -> tuple[bool, str]:
    """Whether ``bwrap --unshare-all`` can run a trivial command here, and why not."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bwrap is not installed (apt-get install bubblewrap)"
    try:
        proc = subprocess.run([exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                               "--dev", "/dev", "--uid", "65534", "--gid", "65534", "true"],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap failed to run: {exc}"
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no message)"]
        return False, f"bwrap cannot create namespaces here: {msg[0]}"
    return True, "bwrap creates user, PID, network and mount namespaces"


class _TaskCgroup:
    """A pids + memory cgroup for one task (v1 or v2), when this process may create one; else inert."""

    def __init__(self, limits: Limits) -> None:
        self.dirs: list[Path] = []
        self.fds: list[int] = []
        name = f"autotts-bwrap-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        mem = str(limits.memory_mb * 1024 * 1024)
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():  # v2: one directory, needs the controllers
                enabled = (CGROUP_ROOT / "cgroup.subtree_control").read_text().split()
                if {"pids", "memory"} <= set(enabled):
                    self._make(CGROUP_ROOT / name, {"pids.max": str(limits.pids), "memory.max": mem,
                                                    "memory.swap.max": "0"})
            elif (CGROUP_ROOT / "pids").is_dir() and (CGROUP_ROOT / "memory").is_dir():  # v1
                self._make(CGROUP_ROOT / "pids" / name, {"pids.max": str(limits.pids)})
                self._make(CGROUP_ROOT / "memory" / name, {"memory.limit_in_bytes": mem})
        except OSError as exc:
            log.debug("no task cgroup (%s); rlimits only", exc)
            self.close()
            self.dirs, self.fds = [], []

    def _make(self, path: Path, settings: dict[str, str]) -> None:
        path.mkdir()
        self.dirs.append(path)
        for key, value in settings.items():
            with contextlib.suppress(FileNotFoundError):  # memory.swap.max is absent without swap accounting
                (path / key).write_text(value)
        self.fds.append(os.open(path / "cgroup.procs", os.O_WRONLY))

    @property
    def active(self) -> bool:
        return bool(self.fds)

    def enter(self) -> None:
        """Move the calling process into the cgroup (runs in the child before exec)."""
        for fd in self.fds:
            os.write(fd, b"0")

    def oom_kills(self) -> int:
        for path in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (path / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
        return 0

    def kill_all(self) -> None:
        for path in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for path in self.dirs:
            for _ in range(50):  # rmdir fails while the killed processes are still being reaped
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


class BwrapBackend:
    """Runs each task in a fresh bubblewrap sandbox (see the module docstring for what it does not do)."""

    name = "bwrap"

    def __init__(self, limits: Limits | None = None) -> None:
        """Check that bwrap works here; BwrapUnavailable otherwise."""
        ok, reason = bwrap_works()
        if not ok:
            raise BwrapUnavailable(reason)
        self.limits = limits
        self.exe = shutil.which("bwrap") or "bwrap"
        self.interpreters = ("pypy", "cpython") if pypy_available() else ("cpython",)

    def _argv(self, limits: Limits, pack_paths: dict[str, str], interpreter: str) -> list[str]:
        argv = [self.exe, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv",
                "--hostname", "sandbox", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
                "--disable-userns"]
        for key, value in TASK_ENV.items():
            argv += ["--setenv", key, value]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        # The interpreter and its site-packages (numpy), wherever they live (pyenv, a venv, /usr/local).
        for prefix in sorted({sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(os.path.realpath(
                sys.executable)))}):
            if not prefix.startswith("/usr/"):
                argv += ["--ro-bind", prefix, prefix]
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(limits.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp",
                 # bwrap's /dev is an unbounded tmpfs: give /dev/shm its own capped one.
                 "--size", str(limits.tmp_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/dev/shm",
                 "--ro-bind", str(RUNTIME_DIR), "/opt/autotts/autotts_runtime"]
        for inside, host in pack_paths.items():
            argv += ["--ro-bind", host, inside]
        argv += ["--remount-ro", "/",  # bwrap's root is a tmpfs: make it read-only like Docker's
                 "--chdir", "/tmp", interpreter_path(interpreter), "-s", "-B", "-m", "autotts_runtime.runner"]
        return argv

    def run(self, task: SandboxTask) -> SandboxResult:
        """Run one task in a new sandbox; every failure is a typed result."""
        limits = self.limits or task.limits
        started = time.perf_counter()

        def failure(kind: ErrorKind, message: str, tail: str = "") -> SandboxResult:
            return SandboxResult(ok=False, backend=self.name, elapsed_s=time.perf_counter() - started,
                                 stderr_tail=tail, error=SandboxError(kind=kind, message=message))

        inside_paths: dict[str, str] = {}
        binds: dict[str, str] = {}
        for i, (name, host) in enumerate(task.packs.items()):
            if not os.path.isfile(host):
                return failure(ErrorKind.infrastructure, f"replay pack not found on the host: {host}")
            inside_paths[name] = f"/packs/{i}.npz"
            binds[inside_paths[name]] = os.path.realpath(host)
        cgroup = _TaskCgroup(limits)

        def preexec() -> None:
            cgroup.enter()
            mem = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile))
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.pids, limits.pids))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        try:
            proc = subprocess.Popen(self._argv(limits, binds, task.interpreter), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={}, cwd="/",
                                    start_new_session=True, preexec_fn=preexec)
        except OSError as exc:
            cgroup.close()
            return failure(ErrorKind.infrastructure, f"cannot start bwrap: {exc}")

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # bwrap dies -> its PID namespace dies with it
            cgroup.kill_all()

        done = supervise(proc, task, limits, task.runner_payload(inside_paths), kill)
        oom = cgroup.oom_kills() > 0
        cgroup.close()
        elapsed = time.perf_counter() - started
        tail = done.err[-4000:].decode("utf-8", "replace")

        def error(kind: ErrorKind, message: str) -> SandboxResult:
            return SandboxResult(ok=False, backend=self.name, elapsed_s=elapsed, stderr_tail=tail,
                                 error=SandboxError(kind=kind, message=message, details=tail.splitlines()[-5:]))

        if oom:
            return error(ErrorKind.oom, f"the task exceeded its {limits.memory_mb} MB memory limit")
        if done.timed_out:
            return error(ErrorKind.timeout, f"the task ran past its {task.deadline_s(limits):g} s deadline; "
                                            "everything it started was killed")
        if done.over_cap:
            return error(ErrorKind.output_limit, "the task wrote more output than allowed and was killed")
        returncode = done.returncode
        if returncode is not None and returncode > 128:  # bwrap reports a signalled child as 128 + signal
            returncode = -(returncode - 128)
        if done.returncode == 1 and done.err.startswith(b"bwrap:"):  # bwrap itself failed to set up
            return error(ErrorKind.infrastructure, done.err.decode("utf-8", "replace").splitlines()[0])
        return result_from_output(self.name, done.out, done.err, elapsed, returncode)

    def close(self) -> None:
        """Nothing persists between bwrap tasks."""
