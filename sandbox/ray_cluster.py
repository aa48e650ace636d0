"""Ray clusters for the ``ray`` executor: loopback-only local clusters, connections, node reports.

Imported only by commands that use Ray (``--executor ray``, ``cluster ...``); it imports Ray lazily.

Settings every cluster we start (and every driver we connect) gets, measured with Ray 2.60:

- **Nothing leaves the machine.** ``RAY_USAGE_STATS_ENABLED=0`` (and ``--disable-usage-stats``).
- **Loopback only.** Ray rewrites ``127.0.0.1`` / ``localhost`` given as ``--node-ip-address`` or as an
  address into the machine's outward address (``services.resolve_ip_for_localhost``), and its C++ servers
  (GCS, raylet, object manager) then listen on every interface. When the node address really is
  ``127.0.0.1`` they listen on loopback only, and so do the autoscaler's metrics server and the client
  server. ``keep_loopback()`` turns that one rewrite off for loopback hosts (in our node launcher and in
  the driver), so a local cluster binds and advertises ``127.0.0.1`` and nothing else.
- **Token authentication on** (``RAY_AUTH_MODE=token``, Ray >= 2.52): a fresh random token in a private
  0600 file named by ``RAY_AUTH_TOKEN_PATH``, for every process of the cluster and its drivers; without it
  a connection is refused.
- **Each process stopped by its own pid.** Nodes run ``ray start --block`` (through ``python -m
  autotts_graph.sandbox.ray_cluster start``, which is Ray's own ``ray start`` with ``keep_loopback``):
  SIGTERM to that pid drains the node and stops the processes it started; ``stop_node`` then kills, by
  pid, any descendant still alive. Never a broad ``ray stop``.
- Worker processes' children die with them (``RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper``):
  a force-cancelled task cannot leave its sandbox process behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts_graph.sandbox.select import SandboxUnavailable

RAY_VERSION = "2.60.0"
LOOPBACK = "127.0.0.1"
INSTALL_HINT = "the ray executor needs Ray: pip install -e '.[ray]' (ray==2.60.0)"

# Environment of every cluster process we start (the token settings are added per cluster).
CLUSTER_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper": "true",
}


class RayUnavailable(SandboxUnavailable):
    """Ray is missing, the cluster cannot be reached, or its nodes cannot run the sandbox; one line.

    A kind of SandboxUnavailable: tasks cannot run where they were sent, and every caller (CLI, tool
    server) already reports that as one line.
    """


def import_ray() -> Any:
    """The ``ray`` module with loopback addresses kept as given, or RayUnavailable."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    keep_loopback()
    return ray


_PATCHED = False


def keep_loopback() -> None:
    """Stop Ray from rewriting a loopback host into the machine's outward address (see the module doc)."""
    global _PATCHED
    if _PATCHED:
        return
    import ray._private.services as services
    from ray._common.network_utils import is_localhost

    original = services.resolve_ip_for_localhost

    def resolve(host: str) -> str:
        return host if host and is_localhost(host) else original(host)

    services.resolve_ip_for_localhost = resolve
    _PATCHED = True


def new_token_file(directory: str | Path) -> Path:
    """A fresh random token in ``directory/token`` (mode 0600)."""
    path = Path(directory) / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def token_env(token_path: str | Path) -> dict[str, str]:
    """The variables that turn token authentication on with this token file."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# -- nodes started as processes -------------------------------------------------------------------

def node_command(*, head: bool, address: str | None = None, port: int | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, temp_dir: str | None = None, object_store_mb: int | None = None,
                 log_monitor: bool = True, extra: list[str] | None = None) -> list[str]:
    """The command line of one loopback node: ``ray start --block`` with our settings."""
    cmd = [sys.executable, "-m", "autotts_graph.sandbox.ray_cluster", "start", "--block",
           "--node-ip-address", LOOPBACK, "--disable-usage-stats"]
    if head:
        cmd += ["--head", "--port", str(port or free_port()), "--include-dashboard=false"]
        if temp_dir:
            cmd += ["--temp-dir", temp_dir]
    else:
        if not address:
            raise ValueError("a worker node needs the head's address")
        cmd += ["--address", address]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    if object_store_mb:
        cmd += ["--object-store-memory", str(object_store_mb * 1024 * 1024)]
    if not log_monitor:
        cmd += ["--include-log-monitor=false"]
    return cmd + list(extra or [])


@dataclass
class Node:
    """One ``ray start --block`` process we started (stop it with ``stop_node``)."""

    proc: subprocess.Popen
    head: bool
    address: str
    log: Path
    seen: set[int] = field(default_factory=set)  # every descendant pid seen so far

    @property
    def pid(self) -> int:
        return self.proc.pid

    def refresh(self) -> set[int]:
        """Record (and return) the node's live descendants."""
        now = descendants(self.pid)
        self.seen |= now
        return now

    def raylet_pid(self) -> int | None:
        """The pid of this node's raylet, if it runs."""
        for pid in sorted(self.refresh()):
            if _comm(pid) == "raylet":
                return pid
        return None


def start_node(env: dict[str, str], log: Path, *, head: bool, address: str | None = None, port: int | None = None,
               wait_s: float = 90.0, **options: Any) -> Node:
    """Start a node as a subprocess and wait until its raylet is registered (head: until the GCS answers)."""
    port = port or (free_port() if head else None)
    cmd = node_command(head=head, address=address, port=port, **options)
    full_env = {**os.environ, **CLUSTER_ENV, **env}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
    node = Node(proc=proc, head=head, address=f"{LOOPBACK}:{port}" if head else str(address), log=log)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RayUnavailable(f"ray start exited with status {proc.returncode}; see {log}")
        if "--block" in log.read_text(errors="replace") and node.raylet_pid() is not None:
            return node
        time.sleep(0.25)
    stop_node(node)
    raise RayUnavailable(f"the node did not start within {wait_s:.0f} s; see {log}")


def stop_node(node: Node, timeout_s: float = 45.0) -> list[int]:
    """SIGTERM the node's own pid, wait, then SIGKILL (by pid) whatever it started that is still alive.

    Returns the pids that had to be killed after the node's own shutdown (empty when it cleaned up).
    """
    node.refresh()
    if node.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGTERM)
        try:
            node.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            node.proc.wait()
    end = time.monotonic() + 10.0
    while time.monotonic() < end and any(_alive(p) for p in node.seen):
        time.sleep(0.2)
    leftovers = [p for p in sorted(node.seen) if _alive(p)]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


@dataclass
class LocalCluster:
    """A head and ``len(nodes) - 1`` more nodes on loopback, with their own token (tests, benchmarks)."""

    root: Path
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.nodes[0].address

    def add_node(self, num_cpus: int = 1, **options: Any) -> Node:
        node = start_node(self.env, self.root / f"node{len(self.nodes)}.log", head=False, address=self.address,
                          num_cpus=num_cpus, **options)
        self.nodes.append(node)
        return node

    def stop(self) -> list[int]:
        """Stop every node (the others first, then the head); the pids that had to be killed afterwards."""
        leftovers: list[int] = []
        for node in reversed(self.nodes):
            leftovers += stop_node(node)
        return leftovers


def start_local_cluster(root: Path, nodes: int = 2, cpus_per_node: int = 1, env: dict[str, str] | None = None,
                        **options: Any) -> LocalCluster:
    """A loopback cluster of ``nodes`` nodes under ``root`` (token file, logs, Ray's temp dir: keep ``root``
    short, Ray's socket paths live below it); ``env`` adds settings (e.g. RAY_health_check_period_ms)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**CLUSTER_ENV, **(env or {}), **token_env(new_token_file(root))}
    cluster = LocalCluster(root=root, env=env)
    try:
        cluster.nodes.append(start_node(env, root / "head.log", head=True, num_cpus=cpus_per_node,
                                        temp_dir=str(root / "ray"), **options))
        for _ in range(nodes - 1):
            cluster.add_node(cpus_per_node, **options)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# -- the driver's connection ----------------------------------------------------------------------

class _Connection:
    """This process's one Ray connection, shared by every executor and collector in it (refcounted)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.owned = False  # we started the local cluster (ray.init without an address)
        self.address: str | None = None
        self.token_dir: tempfile.TemporaryDirectory | None = None

    def acquire(self, address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> Any:
        ray = import_ray()
        with self.lock:
            address = address or os.environ.get("RAY_ADDRESS") or None
            if self.users == 0 and not ray.is_initialized():
                self._init(ray, address, num_cpus, num_gpus)
            self.users += 1
            return ray

    def _init(self, ray: Any, address: str | None, num_cpus: int | None, num_gpus: int | None) -> None:
        kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
        if address is None:
            # A local cluster of our own, children of this process: loopback, a private token.
            if "RAY_AUTH_MODE" not in os.environ:
                self.token_dir = tempfile.TemporaryDirectory(prefix="autotts-ray-")
                os.environ.update(token_env(new_token_file(self.token_dir.name)))
            os.environ.update({k: v for k, v in CLUSTER_ENV.items() if k not in os.environ})
            kwargs.update(_node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus, num_gpus=num_gpus)
            self.owned = True
        else:
            kwargs["address"] = address
            host = address.rsplit(":", 1)[0] if "://" not in address else ""
            if host in (LOOPBACK, "localhost"):
                kwargs["_node_ip_address"] = LOOPBACK
            _reachable(address)
        _refresh_auth()
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            self._forget_token()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = (" (token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the cluster's token)"
                    if address else "")
            raise RayUnavailable(f"cannot connect to Ray at {address or 'a new local cluster'}: {first}{hint}") \
                from None
        self.address = address

    def release(self) -> None:
        ray = import_ray()
        with self.lock:
            self.users = max(0, self.users - 1)
            if self.users == 0 and ray.is_initialized():
                ray.shutdown()
                self.owned = False
                self._forget_token()

    def _forget_token(self) -> None:
        if self.token_dir is not None:
            for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
                os.environ.pop(key, None)
            self.token_dir.cleanup()
            self.token_dir = None


CONNECTION = _Connection()


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """RayUnavailable at once when nothing listens at ``host:port`` (Ray itself retries for ~10 minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # ray://, auto, ...: let Ray parse it
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayUnavailable(f"cannot connect to Ray at {address}: {exc.strerror or exc} (is the head node "
                             "running? `autotts-graph cluster doctor --ray-address ...` checks)") from None


def _refresh_auth() -> None:
    """Make Ray re-read RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH (set after ``import ray``), as Ray itself does
    when it turns token authentication on (``authentication_token_setup._enable_token_auth``)."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


# -- what each node can run -----------------------------------------------------------------------

def reset_child_signals() -> None:
    """Undo the Ray worker's SIGCHLD=SIG_IGN, which every child inherits across exec.

    Measured with Ray 2.60: its worker processes ignore SIGCHLD, so a sandbox started from a task inherits
    the ignored disposition and bwrap, whose own child is then reaped behind its back, never returns.
    Sandboxes wait for their children themselves: restore the default (in the main thread, where Ray runs
    tasks; elsewhere Python refuses and nothing changes).
    """
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def node_report(sandbox: str = "auto") -> dict[str, Any]:
    """What this node can run (docker? bwrap? PyPy?), which sandbox ``sandbox`` picks here, and the runtime.

    Runs inside a Ray task pinned to the node (``probe_nodes``); cheap: no container is started (leftover
    sandbox containers of dead processes on the node are removed).
    """
    import platform

    from autotts_graph.sandbox.backends.base import runtime_hash
    from autotts_graph.sandbox.backends.bwrap import bwrap_works
    from autotts_graph.sandbox.backends.process import pypy_available

    reset_child_signals()
    report: dict[str, Any] = {"hostname": socket.gethostname(), "python": platform.python_version(),
                              "runtime": runtime_hash(), "cores": os.cpu_count() or 1, "pypy": pypy_available()}
    try:
        from autotts_graph.sandbox.backends.docker import connect
        from autotts_graph.sandbox.image.build import image_exists, image_tag

        client = connect(timeout_s=10)
        tag = image_tag()
        report["docker"] = bool(image_exists(client, tag))
        report["docker_why"] = "engine answers, image built" if report["docker"] else f"image {tag} not built"
        # Warm containers of Ray workers that were killed (a job's workers die without running atexit) are
        # removed here, on every node, each time an executor starts or the doctor runs.
        from autotts_graph.sandbox.pool import sweep_leftovers

        report["docker_swept"] = sweep_leftovers(client)
    except Exception as exc:  # noqa: BLE001 - any failure means: no docker here, and why
        report["docker"], report["docker_why"] = False, str(exc).splitlines()[0][:200] if str(exc) else "unavailable"
    ok, why = bwrap_works()
    report["bwrap"], report["bwrap_why"] = ok, why
    if sandbox == "process":
        report["sandbox"] = "process"
    elif sandbox in ("docker", "bwrap"):
        report["sandbox"] = sandbox if report[sandbox] else None
    else:
        report["sandbox"] = "docker" if report["docker"] else ("bwrap" if report["bwrap"] else None)
    if report["sandbox"] == "docker":
        report["interpreters"] = ["pypy", "cpython"]
    elif report["sandbox"] is not None:
        report["interpreters"] = ["pypy", "cpython"] if report["pypy"] else ["cpython"]
    else:
        report["interpreters"] = []
    return report


def probe_nodes(ray: Any, sandbox: str = "auto", timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """``node_report`` of every alive node, each from a task pinned to that node (dead nodes listed too, with
    those that died before the cluster noticed)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(node_report)
    nodes = ray.nodes()
    refs = {}
    for n in nodes:
        if n.get("Alive"):
            refs[n["NodeID"]] = probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(sandbox)
    out = []
    for n in nodes:
        row = {"node_id": n["NodeID"], "address": n.get("NodeManagerAddress", ""), "alive": bool(n.get("Alive")),
               "head": "node:__internal_head__" in n.get("Resources", {}),
               "cpus": n.get("Resources", {}).get("CPU", 0), "gpus": n.get("Resources", {}).get("GPU", 0)}
        ref = refs.get(n["NodeID"])
        if ref is not None:
            try:
                row.update(ray.get(ref, timeout=timeout_s))
            except (ray.exceptions.TaskUnschedulableError, ray.exceptions.NodeDiedError):
                # Gone before GCS noticed (it does after missed health checks): dead, like the ones it lists.
                row["alive"] = False
            except Exception as exc:  # noqa: BLE001 - a node that cannot answer is reported, not fatal
                row["error"] = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m autotts_graph.sandbox.ray_cluster start ARGS``: Ray's ``ray start ARGS`` with loopback kept."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "start":
        sys.exit("usage: python -m autotts_graph.sandbox.ray_cluster start [ray start options]")
    for key, value in CLUSTER_ENV.items():
        os.environ.setdefault(key, value)
    import_ray()
    from ray.scripts.scripts import cli

    cli.main(args=args, prog_name="ray")


if __name__ == "__main__":
    main()
