"""A warm pool of hardened, single-use sandbox containers, so an evaluation task does not pay a cold start.

Each container keeps a do-nothing keeper (``sleep infinity`` under docker-init) running as root with no
capabilities, and a runner pre-started as uid 65534 that waits for its task on stdin. A container serves
exactly one task and is then destroyed: nothing a task leaves behind (processes, files, memory) can meet
the next task, so no in-box reset has to be trusted. A seccomp profile denies ptrace, process_vm_* and
the other syscalls a task could use to reach another process, on top of the dropped capabilities.

Containers are labelled with their owner (host, pid, process start time) so the leftovers of a process
that died without cleaning up are swept when the next pool starts; ``close`` (also run at exit) removes
this process's own containers.

Each container has one host directory bind-mounted read-only at ``/packs``: before the task the replay
packs it needs are hard-linked (or copied) there, so a task sees exactly its own packs and never the rest
of the store (held-out environments and every answer key included).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.backends.base import INTERPRETER_ENV
from pydantic import BaseModel, ConfigDict

log = logging.getLogger("autotts_graph.sandbox.pool")

LABEL = "org.autotts.sandbox"
OWNER_LABEL = f"{LABEL}.owner"
SPEC_LABEL = f"{LABEL}.spec"
POOL_LABEL = f"{LABEL}.pool"
PACKS_MOUNT = "/packs"
TASK_USER = "65534:65534"
STAGING_ROOT = Path(tempfile.gettempdir()) / "autotts-sandbox"
TASK_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "PYTHONPATH=/opt/autotts",
            *(f"{k}={v}" for k, v in INTERPRETER_ENV.items())]
INTERPRETERS = {"cpython": "python3", "pypy": "pypy3"}
# Denied on top of the dropped capabilities: tracing or reading another process, and the kernel surfaces
# a task never needs. clone3 answers ENOSYS so the C library falls back to clone, whose namespace flags
# are refused below.
_DENIED = ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf", "userfaultfd",
           "keyctl", "add_key", "request_key", "mount", "umount2", "unshare", "setns", "pivot_root", "chroot",
           "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
           "swapoff", "syslog", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
           "open_by_handle_at", "name_to_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "fanotify_init", "move_mount", "fsopen", "fsmount", "fspick", "open_tree", "quotactl", "lookup_dcookie",
           "iopl", "ioperm", "personality", "pidfd_getfd", "mbind", "set_mempolicy", "move_pages", "migrate_pages"]
_NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080]


def seccomp_profile() -> str:
    """The containers' seccomp profile (JSON): allow by default, deny the syscalls listed above."""
    rules: list[dict[str, Any]] = [{"names": _DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                                   {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    rules += [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
               "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
              for flag in _NAMESPACE_FLAGS]
    return json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                       "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], "syscalls": rules})


def task_command(memory_mb: int, interpreter: str = "pypy") -> list[str]:
    """The exec command of one task's runner under ``interpreter`` (``pypy`` or ``cpython``).

    `env -i` empties the environment (the image's ENV included) before setting exactly TASK_ENV; `-s`
    skips the user site. RLIMIT_AS (ulimit -v) makes a single-process memory bomb fail at once with
    MemoryError, where the cgroup limit alone can leave it thrashing until the timeout; the cgroup still
    bounds all processes.
    """
    exe = INTERPRETERS[interpreter]
    return ["/usr/bin/env", "-i", *TASK_ENV, "/bin/sh", "-c",
            f"ulimit -v {memory_mb * 1024} && exec {exe} -s -B -m autotts_runtime.runner"]


def open_exec_stream(api: Any, exec_id: str) -> socket.socket:
    """Start an exec and return its hijacked stream as a socket that belongs to the caller alone.

    docker-py returns the connection's ``SocketIO`` with the HTTP response attached to it (``_response``):
    a reference cycle that only the cyclic garbage collector frees. When a collection finalises the urllib3
    response before the ``SocketIO`` (which one comes first depends on earlier collections), the response
    closes its connection and with it the socket a reader thread is blocked on: a rare "Bad file
    descriptor" mid-task. So the stream is a duplicate of the descriptor, and every SDK object around it
    is closed here, at once, leaving the collector nothing of ours to close. Both exec paths (the
    pre-started runner and a fresh exec) open their stream here.
    """
    wrapper = api.exec_start(exec_id, socket=True)
    raw = getattr(wrapper, "_sock", None)
    if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
        # TLS or SSH transports: docker-py hands out the socket itself with the response kept on it, so the
        # response lives as long as the socket we hold (and a TLS stream cannot be duplicated).
        return wrapper
    try:
        sock = raw.dup()
    finally:
        response = getattr(wrapper, "_response", None)
        for close in (getattr(response, "close", None), wrapper.close, raw.close):
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
    sock.settimeout(None)  # not the client's HTTP timeout: the task's own limit governs
    return sock


class PoolError(RuntimeError):
    """No container could be provided (engine down, image missing, creation failing)."""


class ContainerSpec(BaseModel):
    """Everything fixed when a container is created; tasks with the same spec share a pool."""

    model_config = ConfigDict(frozen=True)

    image: str
    memory_mb: int = 2048
    cpus: float = 1.0
    cpuset: str | None = None  # the cores the containers may use (None: any)
    pids: int = 128
    nofile: int = 256
    tmp_mb: int = 64

    def key(self) -> str:
        """A short stable id for labels and directory names."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:10]


class PoolStats(BaseModel):
    """Counters and timings of one pool (``sandbox doctor`` prints them)."""

    size: int
    ready: int
    busy: int
    starting: int
    created: int = 0
    destroyed: int = 0
    tasks: int = 0
    last_create_s: float | None = None
    last_error: str | None = None


@dataclass
class Slot:
    """One warm container and its pack staging directory."""

    container: Any
    staging: Path
    create_s: float
    runner: tuple[str, Any, str] | None = None  # (exec id, socket, interpreter) of the pre-started runner

    @property
    def id(self) -> str:
        return self.container.id


def _process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_id() -> str:
    """This process as ``host:pid:start-time`` (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start_time(os.getpid())}"


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's pool on a shared engine: not ours to judge
    return pid.isdigit() and _process_start_time(int(pid)) == start


def sweep_leftovers(client: Any) -> int:
    """Remove labelled containers (and staging directories) whose owning process is gone; returns how many."""
    removed = 0
    try:
        # The low-level listing: the high-level one inspects each container and fails when another
        # process removes one meanwhile (pools come and go all the time).
        leftovers = client.api.containers(all=True, filters={"label": LABEL})
    except Exception as exc:  # the engine went away: nothing to sweep now
        log.warning("cannot list sandbox containers: %s", exc)
        return 0
    for container in leftovers:
        owner = (container.get("Labels") or {}).get(OWNER_LABEL, "")
        if owner and _owner_alive(owner):
            continue
        with contextlib.suppress(Exception):
            client.api.remove_container(container["Id"], force=True)
            removed += 1
    if STAGING_ROOT.is_dir():
        for path in STAGING_ROOT.iterdir():
            if not _owner_alive(path.name.replace("_", ":")):
                shutil.rmtree(path, ignore_errors=True)
    if removed:
        log.info("swept %d leftover sandbox container(s)", removed)
    return removed


def host_oom_kills(container_id: str) -> int | None:
    """The container's OOM-kill counter read from the host's cgroup files (v1 or v2), if visible here."""
    candidates = [
        f"/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control",
        f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/memory.oom_control",
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.events",
        f"/sys/fs/cgroup/docker/{container_id}/memory.events",
    ]
    for path in candidates:
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return None


class ContainerPool:
    """``size`` warm containers of one ``ContainerSpec``; thread-safe ``acquire``/``release``."""

    def __init__(self, client: Any, spec: ContainerSpec, size: int, owner: str | None = None,
                 refill_after_s: float | None = None) -> None:
        self.client = client
        self.spec = spec
        self.size = max(1, size)
        # A long-lived owner (the daemon) refills the whole pool once no task has run for this long.
        self.refill_after_s = refill_after_s
        self._refilling = False
        self._last_release = 0.0
        self.owner = owner or owner_id()
        # Unique per pool: two pools of one process may share a spec, and close() removes this tree.
        self.pool_id = f"{spec.key()}-{os.urandom(3).hex()}"
        self.staging_root = STAGING_ROOT / self.owner.replace(":", "_") / self.pool_id
        self._cond = threading.Condition()
        self._ready: list[Slot] = []
        self._busy: set[str] = set()
        self._starting = 0
        self._error: str | None = None
        self._closed = False
        self._counter = 0
        self._destroyers: set[threading.Thread] = set()
        self.stats = PoolStats(size=self.size, ready=0, busy=0, starting=0)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, wait: bool = False, timeout_s: float = 120.0) -> None:
        """Start filling the pool in the background; with ``wait``, block until all are ready or failed."""
        with self._cond:
            missing = self.size - len(self._ready) - len(self._busy) - self._starting
            for _ in range(missing):
                self._spawn_locked()
            if wait:
                end = time.monotonic() + timeout_s
                while self._starting and time.monotonic() < end:
                    self._cond.wait(end - time.monotonic())

    def _spawn_locked(self) -> None:
        self._starting += 1
        threading.Thread(target=self._create_into_pool, daemon=True, name="autotts-pool-create").start()

    def _create_into_pool(self) -> None:
        try:
            slot = self.create()
            self.start_runner(slot)
        except Exception as exc:
            with self._cond:
                self._starting -= 1
                self._error = f"cannot start a sandbox container: {exc}"
                self.stats.last_error = self._error
                self._cond.notify_all()
            return
        with self._cond:
            self._starting -= 1
            if self._closed:
                self._destroy_async(slot)
                return
            self._ready.append(slot)
            self._error = None
            self._cond.notify_all()

    def create(self) -> Slot:
        """Create and start one hardened container (blocking); the cold start."""
        import docker

        started = time.perf_counter()
        with self._cond:
            self._counter += 1
            name = f"autotts-sbx-{os.getpid()}-{self.spec.key()}-{self._counter}-{os.urandom(2).hex()}"
        staging = self.staging_root / name
        staging.mkdir(parents=True, exist_ok=True)
        for path in (staging, *staging.parents):  # the task user must traverse to the mount's root
            if path == STAGING_ROOT.parent:
                break
            path.chmod(0o755)
        spec = self.spec
        try:
            container = self.client.containers.run(
                spec.image, ["sleep", "infinity"], name=name, detach=True,
                user="0:0",  # the keeper: root with no capabilities, so a task's kill(-1) cannot reach it
                init=True, network_mode="none", read_only=True, ipc_mode="private", hostname="sandbox",
                tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={spec.tmp_mb}m,mode=1777"},
                shm_size=f"{spec.tmp_mb}m",
                cap_drop=["ALL"], security_opt=["no-new-privileges", f"seccomp={seccomp_profile()}"],
                pids_limit=spec.pids, mem_limit=f"{spec.memory_mb}m", memswap_limit=f"{spec.memory_mb}m",
                nano_cpus=int(spec.cpus * 1e9), cpuset_cpus=spec.cpuset,
                ulimits=[docker.types.Ulimit(name="nofile", soft=spec.nofile, hard=spec.nofile),
                         docker.types.Ulimit(name="core", soft=0, hard=0)],
                environment={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"},
                mounts=[docker.types.Mount(PACKS_MOUNT, str(staging), type="bind", read_only=True)],
                # Exec output is never logged, but nothing the box prints may reach the host's disk.
                log_config=docker.types.LogConfig(type="none"),
                labels={LABEL: "1", OWNER_LABEL: self.owner, SPEC_LABEL: spec.key(), POOL_LABEL: self.pool_id},
                working_dir="/tmp")
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        elapsed = time.perf_counter() - started
        with self._cond:
            self.stats.created += 1
            self.stats.last_create_s = elapsed
        return Slot(container=container, staging=staging, create_s=elapsed)

    def close(self, timeout_s: float = 30.0) -> None:
        """Destroy every container of this pool, waiting (bounded) for creations and tasks in flight."""
        end = time.monotonic() + timeout_s
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while (self._starting or self._busy) and time.monotonic() < end:
                self._cond.wait(max(0.0, end - time.monotonic()))
            slots, self._ready = self._ready, []
        for slot in slots:
            self._destroy_async(slot)
        with self._cond:
            pending = list(self._destroyers)
        for thread in pending:
            thread.join(max(0.1, end - time.monotonic()))
        shutil.rmtree(self.staging_root, ignore_errors=True)

    # -- use -----------------------------------------------------------------------------------------
    def acquire(self, timeout_s: float = 120.0) -> Slot:
        """A ready container, starting one if the pool is short; PoolError if none can be had."""
        end = time.monotonic() + timeout_s
        tried = False  # an earlier failure is retried once by this call before it is reported
        with self._cond:
            while True:
                if self._closed:
                    raise PoolError("the sandbox pool is closed")
                if self._ready:
                    slot = self._ready.pop()
                    self._busy.add(slot.id)
                    if not self._ready and len(self._busy) >= self.size:
                        # Every container is busy, so tasks run in parallel (a sweep) and the next one
                        # would wait for a cold start: start one spare per busy container while they run.
                        for _ in range(self.size - self._starting):
                            self._spawn_locked()
                    return slot
                alive = len(self._busy) + self._starting
                if self._error and self._starting == 0 and not self._busy:
                    error, self._error = self._error, None
                    if tried:
                        raise PoolError(error)
                    tried = True
                    self._spawn_locked()
                elif alive < self.size:
                    self._spawn_locked()
                left = end - time.monotonic()
                if left <= 0:
                    raise PoolError(f"no sandbox container became ready within {timeout_s:g} s")
                self._cond.wait(left)

    def release(self, slot: Slot, reason: str = "") -> None:
        """Give a container back after its one task: it is destroyed, and a fresh one takes its place.

        The replacement starts only once the pool has served more tasks than it has containers: a one-off
        command (a task and its audit) then never pays for spares it will not use, while a long run keeps
        its pool full (``acquire`` also starts one whenever the pool is short, and spares while every
        container is busy). With ``refill_after_s`` (the daemon) the whole pool is refilled once no task
        has run for that long, so the next command finds every container with its runner waiting, while
        the starts stay off the CPU that the command's follow-up work (the judge, the audit) needs.
        """
        with self._cond:
            self.stats.tasks += 1
            self.stats.destroyed += 1
            self._busy.discard(slot.id)
            self._destroy_async(slot)
            self._last_release = time.monotonic()
            alive = len(self._ready) + self._starting + len(self._busy)
            if not self._closed and self.refill_after_s is not None:
                if not self._refilling:
                    self._refilling = True
                    threading.Thread(target=self._refill_when_quiet, daemon=True, name="autotts-pool-refill").start()
            elif not self._closed and self.stats.tasks > self.size and alive < self.size:
                self._spawn_locked()
            self._cond.notify_all()
        if reason:
            log.info("sandbox container %s destroyed: %s", slot.container.name, reason)

    def _refill_when_quiet(self) -> None:
        with self._cond:
            try:
                while not self._closed:
                    quiet = time.monotonic() - self._last_release
                    if self._busy or quiet < self.refill_after_s:
                        self._cond.wait(None if self._busy else self.refill_after_s - quiet)
                        continue
                    for _ in range(self.size - len(self._ready) - len(self._busy) - self._starting):
                        self._spawn_locked()
                    return
            finally:
                self._refilling = False

    def start_runner(self, slot: Slot, interpreter: str = "pypy") -> None:
        """Start the task's runner now, off the task's path.

        The runner imports the runtime, then blocks reading its task from stdin; the task later only
        writes its JSON there. The container is fresh, so the runner carries nothing from anyone.
        On failure the task simply gets a fresh exec.
        """
        self.drop_runner(slot)
        try:
            api = self.client.api
            exec_id = api.exec_create(slot.id, task_command(self.spec.memory_mb, interpreter), stdin=True,
                                      stdout=True, stderr=True, user=TASK_USER, workdir="/tmp")["Id"]
            slot.runner = (exec_id, open_exec_stream(api, exec_id), interpreter)
        except Exception as exc:
            log.debug("cannot pre-start a runner in %s: %s", slot.container.name, exc)
            slot.runner = None

    def take_runner(self, slot: Slot, interpreter: str) -> tuple[str, Any] | None:
        """The pre-started runner if it runs ``interpreter`` and is still alive (else None; it is discarded)."""
        runner, slot.runner = slot.runner, None
        if runner is None:
            return None
        alive = runner[2] == interpreter
        if alive:
            try:
                alive = self.client.api.exec_inspect(runner[0])["Running"]
            except Exception:
                alive = False
        if not alive:
            with contextlib.suppress(OSError):
                runner[1].close()
            return None
        return runner[0], runner[1]

    @staticmethod
    def drop_runner(slot: Slot) -> None:
        """Close the pre-started runner's stream (the container's end kills the process)."""
        if slot.runner is not None:
            with contextlib.suppress(OSError):
                slot.runner[1].close()
            slot.runner = None

    def snapshot(self) -> PoolStats:
        """Current counters."""
        with self._cond:
            return self.stats.model_copy(update={"ready": len(self._ready), "busy": len(self._busy),
                                                 "starting": self._starting})

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Block until no container is busy or starting (tests and benchmarks use it)."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while self._busy or self._starting:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- packs ---------------------------------------------------------------------------------------
    @staticmethod
    def stage_packs(slot: Slot, packs: dict[str, str]) -> dict[str, str]:
        """Expose the task's pack files under /packs (hard link, else a copy); returns in-box paths."""
        inside: dict[str, str] = {}
        for i, (name, host_path) in enumerate(packs.items()):
            src = Path(host_path)
            dst = slot.staging / f"{i}{src.suffix or '.npz'}"
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()
            linked = False
            if src.stat().st_mode & 0o004:  # a hard link keeps the mode: only if the task user can read it
                try:
                    os.link(src, dst)
                    linked = True
                except OSError:
                    pass
            if not linked:
                shutil.copyfile(src, dst)
                dst.chmod(0o644)
            inside[name] = f"{PACKS_MOUNT}/{dst.name}"
        return inside

    def _destroy(self, slot: Slot) -> None:
        self.drop_runner(slot)
        with contextlib.suppress(Exception):
            slot.container.remove(force=True)
        shutil.rmtree(slot.staging, ignore_errors=True)

    def _destroy_async(self, slot: Slot) -> None:
        def run() -> None:
            try:
                self._destroy(slot)
            finally:
                with self._cond:
                    self._destroyers.discard(thread)
                    self._cond.notify_all()

        thread = threading.Thread(target=run, daemon=True, name="autotts-pool-destroy")
        with self._cond:
            self._destroyers.add(thread)
        thread.start()
