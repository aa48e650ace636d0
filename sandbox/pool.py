"""A warm pool of hardened sandbox containers, so an evaluation task does not pay a cold start.

Each container keeps a do-nothing keeper (``sleep infinity`` under docker-init) running as root with no
capabilities; tasks are ``docker exec``-ed into it as uid 65534. After every task the in-box reset script
(``/opt/autotts/reset.py``, also as 65534) SIGKILLs every task process and wipes /tmp, /dev/shm,
/dev/mqueue and SysV IPC; it doubles as the health probe. A container that timed out, ran out of memory,
hit an output cap or failed its probe is destroyed and replaced, never reused.

Containers are labelled with their owner (host, pid, process start time) so the leftovers of a process
that died without cleaning up are swept when the next pool starts; ``close`` (also run at exit) removes
this process's own containers.

Each container has one host directory bind-mounted read-only at ``/packs``: before a task the replay
packs it needs are hard-linked (or copied) there and removed afterwards, so a task sees exactly its own
packs and never the rest of the store (held-out environments included).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("autotts_graph.sandbox.pool")

LABEL = "org.autotts.sandbox"
OWNER_LABEL = f"{LABEL}.owner"
SPEC_LABEL = f"{LABEL}.spec"
POOL_LABEL = f"{LABEL}.pool"
PACKS_MOUNT = "/packs"
TASK_USER = "65534:65534"
STAGING_ROOT = Path(tempfile.gettempdir()) / "autotts-sandbox"
RESET_CMD = ["python3", "-I", "-B", "/opt/autotts/reset.py"]
TASK_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
            "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"]


def task_command(memory_mb: int) -> list[str]:
    """The exec command of one task's runner.

    `env -i` empties the environment (the image's ENV included) before setting exactly TASK_ENV; `-I`
    keeps Python from reading PYTHON* variables, the user site and the working directory. RLIMIT_AS
    (ulimit -v) makes a single-process memory bomb fail at once with MemoryError, where the cgroup
    limit alone can leave it thrashing until the timeout; the cgroup still bounds all processes.
    """
    return ["/usr/bin/env", "-i", *TASK_ENV, "/bin/sh", "-c",
            f"ulimit -v {memory_mb * 1024} && exec python3 -I -B -m autotts_runtime.runner"]


class PoolError(RuntimeError):
    """No container could be provided (engine down, image missing, creation failing)."""


class ContainerSpec(BaseModel):
    """Everything fixed when a container is created; tasks with the same spec share a pool."""

    model_config = ConfigDict(frozen=True)

    image: str
    memory_mb: int = 2048
    cpus: float = 1.0
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
    recycled: int = 0
    failed_probes: int = 0
    tasks: int = 0
    last_create_s: float | None = None
    mean_reset_s: float | None = None
    last_error: str | None = None


@dataclass
class Slot:
    """One warm container and its pack staging directory."""

    container: Any
    staging: Path
    create_s: float
    tasks: int = 0
    staged: list[Path] = field(default_factory=list)
    runner: tuple[str, Any] | None = None  # (exec id, socket) of the next task's pre-started runner

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
        leftovers = client.containers.list(all=True, filters={"label": LABEL})
    except Exception as exc:  # the engine went away: nothing to sweep now
        log.warning("cannot list sandbox containers: %s", exc)
        return 0
    for container in leftovers:
        owner = container.labels.get(OWNER_LABEL, "")
        if owner and _owner_alive(owner):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
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

    def __init__(self, client: Any, spec: ContainerSpec, size: int, owner: str | None = None) -> None:
        self.client = client
        self.spec = spec
        self.size = max(1, size)
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
        self._reset_times: list[float] = []
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
                cap_drop=["ALL"], security_opt=["no-new-privileges"],
                pids_limit=spec.pids, mem_limit=f"{spec.memory_mb}m", memswap_limit=f"{spec.memory_mb}m",
                nano_cpus=int(spec.cpus * 1e9),
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

    def release(self, slot: Slot, recycle: bool, reason: str = "") -> None:
        """Give a container back: destroy and replace it (``recycle``) or reset it in the background."""
        slot.tasks += 1
        with self._cond:
            self.stats.tasks += 1
        if recycle:
            log.info("replacing sandbox container %s: %s", slot.container.name, reason)
            with self._cond:
                self.stats.recycled += 1
            self._replace(slot)
            return
        threading.Thread(target=self._reset_and_return, args=(slot,), daemon=True,
                         name="autotts-pool-reset").start()

    def _replace(self, slot: Slot) -> None:
        with self._cond:  # an RLock: the destroyer is registered before close() can see busy empty
            self._busy.discard(slot.id)
            self._destroy_async(slot)
            if not self._closed:
                self._spawn_locked()
            self._cond.notify_all()

    def _reset_and_return(self, slot: Slot) -> None:
        report = self.reset(slot)
        if report.get("clean"):
            self.start_runner(slot)
        if not report.get("clean"):
            log.warning("sandbox container %s failed its reset probe: %s", slot.container.name,
                        report.get("problems"))
            with self._cond:
                self.stats.failed_probes += 1
                self.stats.recycled += 1
            self._replace(slot)
            return
        with self._cond:
            self._busy.discard(slot.id)
            if self._closed:
                self._destroy_async(slot)
                return
            self._ready.append(slot)
            self._cond.notify_all()

    def start_runner(self, slot: Slot) -> None:
        """Start the next task's runner now, off the task's path.

        The runner imports numpy and the runtime, then blocks reading its task from stdin; the task
        later only writes its JSON there. It is a fresh process started after the reset, so it carries
        nothing from the previous task. On failure the task simply gets a fresh exec.
        """
        self.drop_runner(slot)
        try:
            api = self.client.api
            exec_id = api.exec_create(slot.id, task_command(self.spec.memory_mb), stdin=True, stdout=True,
                                      stderr=True, user=TASK_USER, workdir="/tmp")["Id"]
            sock = api.exec_start(exec_id, socket=True)._sock
            sock.settimeout(None)  # not the client's HTTP timeout: a task may stay silent for minutes
            slot.runner = (exec_id, sock)
        except Exception as exc:
            log.debug("cannot pre-start a runner in %s: %s", slot.container.name, exc)
            slot.runner = None

    def take_runner(self, slot: Slot) -> tuple[str, Any] | None:
        """The pre-started runner if it is still alive (else None, and it is discarded)."""
        runner, slot.runner = slot.runner, None
        if runner is None:
            return None
        try:
            alive = self.client.api.exec_inspect(runner[0])["Running"]
        except Exception:
            alive = False
        if not alive:
            with contextlib.suppress(OSError):
                runner[1].close()
            return None
        return runner

    @staticmethod
    def drop_runner(slot: Slot) -> None:
        """Close the pre-started runner's stream (the reset or the container's end kills the process)."""
        if slot.runner is not None:
            with contextlib.suppress(OSError):
                slot.runner[1].close()
            slot.runner = None

    def reset(self, slot: Slot) -> dict[str, Any]:
        """Run the in-box reset (kill all task processes, wipe /tmp etc.); its report, never raises."""
        started = time.perf_counter()
        try:
            result = slot.container.exec_run(RESET_CMD, user=TASK_USER, workdir="/", demux=False,
                                             environment={"PATH": "/usr/local/bin:/usr/bin:/bin"})
            lines = result.output.decode("utf-8", "replace").strip().splitlines()
            report = json.loads(lines[-1]) if result.exit_code == 0 and lines else {
                "clean": False, "problems": [f"reset exited {result.exit_code}: {lines[-1:] }"]}
        except Exception as exc:
            report = {"clean": False, "problems": [f"reset failed: {exc}"]}
        if report.get("oom_kills"):
            report["clean"] = False
            report.setdefault("problems", []).append("the container's memory cgroup saw an OOM kill")
        elapsed = time.perf_counter() - started
        with self._cond:
            self._reset_times = (self._reset_times + [elapsed])[-200:]
            self.stats.mean_reset_s = sum(self._reset_times) / len(self._reset_times)
        report["seconds"] = elapsed
        return report

    def probe(self) -> list[dict[str, Any]]:
        """Health-probe every idle container now (reset + check); unhealthy ones are replaced."""
        with self._cond:
            slots, self._ready = self._ready, []
            for slot in slots:
                self._busy.add(slot.id)
        reports = []
        for slot in slots:
            report = self.reset(slot)
            report["container"] = slot.container.name
            reports.append(report)
            if report.get("clean"):
                self.start_runner(slot)
                with self._cond:
                    self._busy.discard(slot.id)
                    self._ready.append(slot)
                    self._cond.notify_all()
            else:
                with self._cond:
                    self.stats.failed_probes += 1
                self._replace(slot)
        return reports

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
            slot.staged.append(dst)
            inside[name] = f"{PACKS_MOUNT}/{dst.name}"
        return inside

    @staticmethod
    def unstage_packs(slot: Slot) -> None:
        """Remove the task's packs from the container's view."""
        for path in slot.staged:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        slot.staged.clear()

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
