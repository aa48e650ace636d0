"""The ``ray`` executor: sandbox tasks run on a Ray cluster, each in its node's own sandbox.

The unit of work is one ``SandboxTask`` as ``tools/evaluate.py`` builds it: one controller source x one
environment pack x a batch of configurations (betas) x *all* the seeds. Seeds are never split across
tasks: the box returns raw action records and the driver's judge aggregates every seed of a point from one
task, exactly as a local run does, so figures are identical whatever the number of nodes (no merge needed).

- **Sandbox per node.** A task runs ``run_with_fallback`` on the node's backend, chosen there exactly as
  locally (``sandbox/select.py``: docker when an engine answers, else bwrap; ``process`` only by name),
  created once per Ray worker process (docker: NODE_POOL warm containers per worker process).
- **Packs travel by content.** The driver hashes each pack file (sha256 of its bytes) and puts the bytes in
  the object store once per executor. A task carries only ``{env: sha}`` and the object references,
  unresolved: the node looks for ``<cache>/<sha>.npz`` first and fetches the bytes only when it does not
  have them yet. An audit's counterfactual pack (new every evaluation) is put for its task only and lands
  in a scratch folder removed after the task. The answer keys (``<pack>.key.json``) and host paths never
  leave the driver.
- **Only the driver writes the store**: tasks return ``SandboxResult`` JSON, nothing else.
- **Faults.** A task whose node (or worker process) dies is retried by Ray on another node
  (``max_retries``; only system failures: a task never raises for a controller error, which comes back
  as a normal ``SandboxResult``). Each attempt reports its start to a small actor on the driver's node;
  a task running past its deadline (from its latest start) is cancelled, first politely (the task kills
  its sandbox processes), then with force after ``cancel_grace_s``, and gets a ``timeout`` result.
- **Progress**: ``stats()`` and ``on_progress`` give tasks submitted, running, done, retried, cancelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import signal
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.backends.base import (
    ErrorKind,
    Limits,
    SandboxError,
    SandboxResult,
    SandboxTask,
    run_with_fallback,
    runtime_hash,
)
from autotts_graph.sandbox.ray_cluster import CONNECTION, RayUnavailable, probe_nodes, reset_child_signals

log = logging.getLogger("autotts_graph.ray")

DEFAULT_MAX_RETRIES = 3  # attempts after the first, on system failures only (node or worker death)
DEADLINE_GRACE_S = 30.0  # the driver's deadline lies this far beyond the box's own (which fires first)
CANCEL_GRACE_S = 5.0  # between the polite cancel and the forced one
POLL_S = 0.25
PACK_REFS = 64  # pack blobs kept in the object store by one executor (oldest dropped first)
NODE_POOL = 2  # docker containers per worker process: the one in use and a warm spare for the next task
CACHE_MB = 2048  # node-local pack cache size before files unused for an hour are evicted


@dataclass
class ClusterStats:
    """What the executor's tasks are doing (for progress bars and the benchmarks)."""

    submitted: int = 0
    running: int = 0
    done: int = 0
    retried: int = 0
    cancelled: int = 0
    failed: int = 0  # lost to system failures after every retry
    pack_bytes_put: int = 0  # pack bytes put into the object store by the driver
    task_bytes: int = 0  # task specs sent (source, configs, seeds; no pack data)
    result_bytes: int = 0  # results received


# -- on the nodes ---------------------------------------------------------------------------------

_BACKENDS: dict[tuple[str, str], Any] = {}
_BACKEND_LOCK = threading.Lock()


def _node_backend(sandbox: str, limits_json: str) -> Any:
    """This worker process's sandbox backend, chosen as locally (docker: NODE_POOL warm containers)."""
    from autotts_graph.sandbox.select import choose

    key = (sandbox, limits_json)
    with _BACKEND_LOCK:
        backend = _BACKENDS.get(key)
        if backend is None:
            limits = Limits.model_validate_json(limits_json) if limits_json else None
            backend, _ = choose(sandbox, limits, pool_size=NODE_POOL)
            _BACKENDS[key] = backend
        return backend


def pack_cache_dir() -> Path:
    """The node-local pack cache (``AUTOTTS_RAY_PACK_CACHE``, else a folder in the temp dir)."""
    path = Path(os.environ.get("AUTOTTS_RAY_PACK_CACHE")
                or Path(tempfile.gettempdir()) / f"autotts-ray-packs-{os.getuid()}")
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    return path


def _materialize(sha: str, ref: Any, scratch: Path | None = None) -> Path:
    """The pack ``sha`` as a local file: from the node's cache, fetched into it if the node lacks it.

    With ``scratch`` (an audit's counterfactual pack, new every evaluation) it is fetched into that folder,
    which goes away after the task, instead of filling the cache.
    """
    import ray

    directory = scratch or pack_cache_dir()
    path = directory / f"{sha}.npz"
    if path.is_file():
        with contextlib.suppress(OSError):
            os.utime(path)
        return path
    data = ray.get(ref)
    if hashlib.sha256(data).hexdigest() != sha:
        raise ValueError(f"pack {sha[:12]} arrived corrupted")
    tmp = directory / f".{sha}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    if scratch is None:
        _evict(directory, keep=path)
    return path


def _evict(directory: Path, keep: Path) -> None:
    """Drop the least recently used packs unused for an hour while the cache is over its size."""
    cap = int(os.environ.get("AUTOTTS_RAY_PACK_CACHE_MB", CACHE_MB)) * 1024 * 1024
    files = []
    for p in directory.glob("*.npz"):
        with contextlib.suppress(OSError):
            st = p.stat()
            files.append((st.st_mtime, st.st_size, p))
    total = sum(f[1] for f in files)
    cutoff = time.time() - 3600
    for mtime, size, p in sorted(files):
        if total <= cap or mtime > cutoff:
            break
        if p != keep:
            with contextlib.suppress(OSError):
                p.unlink()
                total -= size


def _kill_children() -> None:
    """SIGKILL every process this worker started (a cancelled task's sandbox), by pid."""
    from autotts_graph.sandbox.ray_cluster import descendants

    for pid in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _failure(kind: ErrorKind, message: str, backend: str = "ray", elapsed_s: float = 0.0) -> SandboxResult:
    return SandboxResult(ok=False, backend=backend, elapsed_s=elapsed_s,
                         error=SandboxError(kind=kind, message=message))


def execute_task(task_json: str, blobs: dict[str, list[Any]], sandbox: str, limits_json: str, runtime: str,
                 board: Any, key: str) -> str:
    """Run one task on this node (the Ray task body); returns the ``SandboxResult`` as JSON.

    ``blobs`` maps each pack's sha to ``[ObjectRef]``: wrapped in a list so that Ray does not fetch it
    before the task starts; the node fetches only what its cache lacks.
    """
    import ray

    started = time.perf_counter()
    node = ray.get_runtime_context().get_node_id()
    board.started.remote(key, node, os.getpid())
    reset_child_signals()
    try:
        if runtime_hash() != runtime:
            return _failure(ErrorKind.infrastructure, f"node {node[:12]} runs another autotts runtime "
                                                      f"({runtime_hash()}, driver {runtime}): install the same "
                                                      "version on every node").model_dump_json()
        task = SandboxTask.model_validate_json(task_json)
        with contextlib.ExitStack() as stack:
            scratch = None
            if task.solves is not None:  # an audit: its counterfactual pack is used once
                scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".audit-",
                                                                             dir=pack_cache_dir())))
                scratch.chmod(0o755)
            local = {env: str(_materialize(sha, blobs[sha][0], scratch)) for env, sha in task.packs.items()}
            try:
                backend = _node_backend(sandbox, limits_json)
            except RuntimeError as exc:  # SandboxUnavailable: this node cannot run the sandbox asked for
                return _failure(ErrorKind.infrastructure, f"node {node[:12]}: {exc}",
                                elapsed_s=time.perf_counter() - started).model_dump_json()
            res = run_with_fallback(backend, task.model_copy(update={"packs": local}))
            return res.model_dump_json()
    except KeyboardInterrupt:  # a polite cancel: take the sandbox down with the task
        _kill_children()
        raise


class _Board:
    """Start reports of the executor's task attempts (an actor on the driver's node)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def started(self, key: str, node: str, pid: int) -> None:
        self.events.append((key, node, pid))

    def drain(self) -> list[tuple[str, str, int]]:
        events, self.events = self.events, []
        return events


# -- on the driver --------------------------------------------------------------------------------

@dataclass
class _Pending:
    index: int
    key: str
    ref: Any
    deadline_s: float
    started: float | None = None  # driver clock at the latest start report
    starts: int = 0
    node: str = ""
    cancel_at: float | None = None  # when the polite cancel was sent
    forced: bool = False


class RayExecutor:
    """Sandbox tasks on a Ray cluster; results in task order (see the module docstring)."""

    name = "ray"

    def __init__(self, sandbox: str = "auto", *, address: str | None = None, workers: int = 0,
                 solve_timeout_s: float = 10.0, max_retries: int = DEFAULT_MAX_RETRIES,
                 deadline_s: float | None = None, cancel_grace_s: float = CANCEL_GRACE_S,
                 limits: Limits | None = None, check_nodes: bool = True) -> None:
        """Connect (``address``, else RAY_ADDRESS, else a new local loopback cluster) and check the nodes.

        ``deadline_s`` fixes the driver's deadline of every task (default: the task's own deadline plus
        ``DEADLINE_GRACE_S``). Raises RayUnavailable when Ray is missing, the cluster cannot be reached,
        or a node runs another runtime or has no usable sandbox.
        """
        self.sandbox = sandbox
        self.solve_timeout_s = solve_timeout_s
        self.max_retries = max_retries
        self.fixed_deadline_s = deadline_s
        self.cancel_grace_s = cancel_grace_s
        self.limits = limits
        self.on_progress: Callable[[ClusterStats], None] | None = None
        self._stats = ClusterStats()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._id = uuid.uuid4().hex[:8]
        self._shas: dict[tuple[str, int, int], str] = {}
        self._blobs: OrderedDict[str, Any] = OrderedDict()
        self._events: dict[str, list[tuple[str, int, float]]] = {}
        self._live: set[str] = set()
        self._last_drain = 0.0
        self._closed = False
        self._ray = CONNECTION.acquire(address, num_cpus=workers or None)
        ray = self._ray
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            self._board = ray.remote(num_cpus=0, max_restarts=0)(_Board).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
            self._remote = ray.remote(execute_task)
            self.runtime = runtime_hash()
            self.nodes = probe_nodes(ray, sandbox) if check_nodes else []
            self._check(self.nodes)
        except BaseException:
            self.close()
            raise
        alive = [n for n in self.nodes if n.get("alive")]
        self.interpreters: tuple[str, ...] = tuple(
            i for i in ("pypy", "cpython") if all(i in n.get("interpreters", []) for n in alive)) or ("cpython",)
        self.slots = max(1, int(sum(n.get("cpus", 0) for n in alive))
                         or int(ray.cluster_resources().get("CPU", 1)))
        self.workers = workers or self.slots

    def _check(self, nodes: list[dict[str, Any]]) -> None:
        problems = []
        for n in nodes:
            if not n.get("alive"):
                continue
            where = f"node {n['node_id'][:12]} ({n.get('address', '?')})"
            if "error" in n:
                problems.append(f"{where} did not answer: {n['error']}")
            elif n.get("runtime") != self.runtime:
                problems.append(f"{where} runs autotts runtime {n.get('runtime')}, the driver {self.runtime}")
            elif n.get("sandbox") is None and n.get("cpus", 0) > 0:
                problems.append(f"{where} cannot run the {self.sandbox} sandbox (docker: {n.get('docker_why')}; "
                                f"bwrap: {n.get('bwrap_why')})")
        if problems:
            raise RayUnavailable("; ".join(problems))

    # -- packs ---------------------------------------------------------------------------------
    def _sha(self, path: str) -> str:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            sha = self._shas.get(key)
        if sha is None:
            sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            with self._lock:
                if len(self._shas) > 4096:  # audit packs are new files every evaluation
                    self._shas.clear()
                self._shas[key] = sha
        return sha

    def _blob(self, sha: str, path: str, keep: bool = True) -> Any:
        """The object holding the pack's bytes: put once and kept (``keep``), or put for one task only
        (an audit's counterfactual pack: freed once its task no longer holds it)."""
        with self._lock:
            ref = self._blobs.get(sha)
            if ref is not None:
                self._blobs.move_to_end(sha)
                return ref
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"pack {path} changed while it was read")
        ref = self._ray.put(data)
        with self._lock:
            self._stats.pack_bytes_put += len(data)
            if keep:
                self._blobs[sha] = ref
                while len(self._blobs) > PACK_REFS:
                    self._blobs.popitem(last=False)  # tasks in flight hold their own references
        return ref

    # -- running -------------------------------------------------------------------------------
    def deadline_of(self, task: SandboxTask) -> float:
        """The driver's deadline for one attempt of ``task``, counted from its start."""
        if self.fixed_deadline_s is not None:
            return self.fixed_deadline_s
        return task.deadline_s(self.limits) + DEADLINE_GRACE_S

    def _submit(self, index: int, task: SandboxTask) -> _Pending:
        shas = {env: self._sha(path) for env, path in task.packs.items()}
        blobs = {sha: [self._blob(sha, task.packs[env], keep=task.solves is None)] for env, sha in shas.items()}
        spec = task.model_copy(update={"packs": shas}).model_dump_json()
        key = f"{self._id}:{next(self._seq)}"
        ref = self._remote.options(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False,
                                   scheduling_strategy="SPREAD").remote(
            spec, blobs, self.sandbox, self.limits.model_dump_json() if self.limits else "", self.runtime,
            self._board, key)
        with self._lock:
            self._live.add(key)
            self._stats.submitted += 1
            self._stats.task_bytes += len(spec)
        return _Pending(index=index, key=key, ref=ref, deadline_s=self.deadline_of(task))

    def _drain(self) -> None:
        """Fetch start reports from the board (at most every POLL_S, shared by concurrent runs)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_drain < POLL_S:
                return
            self._last_drain = now
        try:
            events = self._ray.get(self._board.drain.remote(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - progress only; deadlines wait for the next report
            log.warning("cannot read task starts: %s", exc)
            return
        with self._lock:
            for key, node, pid in events:
                if key in self._live:  # a late report of a finished task is dropped
                    self._events.setdefault(key, []).append((node, pid, now))

    def _progress(self) -> None:
        if self.on_progress is not None:
            with contextlib.suppress(Exception):
                self.on_progress(self.stats())

    def attempts(self) -> dict[str, list[tuple[str, int]]]:
        """(node id, worker pid) of every reported start of the tasks in flight, by task key."""
        self._drain()
        with self._lock:
            return {key: [(node, pid) for node, pid, _ in events] for key, events in self._events.items()}

    def stats(self) -> ClusterStats:
        """A copy of the counters."""
        with self._lock:
            return ClusterStats(**asdict(self._stats))

    def run(self, tasks: list[SandboxTask]) -> Iterator[SandboxResult]:
        """Submit every task, then yield results in task order as they complete."""
        if not tasks:
            return
        if self._closed:
            raise RayUnavailable("the ray executor is closed")
        pending = {p.ref: p for p in (self._submit(i, t) for i, t in enumerate(tasks))}
        self._progress()
        results: dict[int, SandboxResult] = {}
        next_index = 0
        try:
            while next_index < len(tasks):
                while next_index in results:
                    yield results.pop(next_index)
                    next_index += 1
                if next_index >= len(tasks):
                    break
                ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    p = pending.pop(ref)
                    results[p.index] = self._collect(p)
                self._drain()
                self._watch(pending.values())
                self._progress()
        finally:
            for p in pending.values():  # the caller stopped early: nothing keeps running for it
                with contextlib.suppress(Exception):
                    self._ray.cancel(p.ref, force=True)
                self._finish(p)

    def _watch(self, pending: Any) -> None:
        """Track starts and retries; cancel attempts past their deadline (politely, then with force)."""
        now = time.monotonic()
        for p in pending:
            with self._lock:
                events = self._events.get(p.key, [])
                if len(events) > p.starts:
                    self._stats.running += p.starts == 0
                    self._stats.retried += len(events) - max(p.starts, 1)
                    p.starts = len(events)
                    p.node, _, p.started = events[-1]
                    p.cancel_at, p.forced = None, False  # a new attempt: a new deadline
            if p.started is None:
                continue
            if p.cancel_at is None and now - p.started > p.deadline_s:
                log.warning("task %s ran past its %.0f s deadline on node %s: cancelling", p.key, p.deadline_s,
                            p.node[:12])
                p.cancel_at = now
                with contextlib.suppress(Exception):
                    self._ray.cancel(p.ref, force=False)
            elif p.cancel_at is not None and not p.forced and now - p.cancel_at > self.cancel_grace_s:
                p.forced = True
                with contextlib.suppress(Exception):
                    self._ray.cancel(p.ref, force=True)

    def _finish(self, p: _Pending) -> None:
        with self._lock:
            if p.starts:
                self._stats.running -= 1
            self._stats.done += 1
            self._events.pop(p.key, None)
            self._live.discard(p.key)

    def _collect(self, p: _Pending) -> SandboxResult:
        """The result of a finished task; a cancelled or lost one becomes a typed failure."""
        ray = self._ray
        from ray.exceptions import RayTaskError, TaskCancelledError, WorkerCrashedError

        try:
            text = ray.get(p.ref)
            res = SandboxResult.model_validate_json(text)
            with self._lock:
                self._stats.result_bytes += len(text)
        except (TaskCancelledError, WorkerCrashedError) as exc:
            if p.cancel_at is None:
                res = self._lost(p, exc)
            else:
                with self._lock:
                    self._stats.cancelled += 1
                res = _failure(ErrorKind.timeout, f"the task ran past its {p.deadline_s:g} s deadline on the "
                                                  "cluster and was cancelled", elapsed_s=p.deadline_s)
        except RayTaskError as exc:  # the task body raised: a bug on the node, never the controller's doing
            res = _failure(ErrorKind.infrastructure, f"the task failed on node {p.node[:12]}: "
                                                     f"{str(exc).strip().splitlines()[-1][:300]}")
        except Exception as exc:  # noqa: BLE001 - node lost after every retry, object lost, ...
            res = self._lost(p, exc)
        self._finish(p)
        return res

    def _lost(self, p: _Pending, exc: BaseException) -> SandboxResult:
        with self._lock:
            self._stats.failed += 1
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return _failure(ErrorKind.infrastructure, f"the task was lost on the cluster after {self.max_retries} "
                                                  f"retries ({type(exc).__name__}: {first})")

    def close(self) -> None:
        """Drop the packs and the board; disconnect (and stop the cluster, if this process started it)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._blobs.clear()
        board = getattr(self, "_board", None)
        if board is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(board)
        CONNECTION.release()
