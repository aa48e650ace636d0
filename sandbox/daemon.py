"""A long-lived owner of the warm docker pool, so a one-off command skips the sandbox's start-up.

``autotts-graph sandbox warm`` runs a ``SandboxDaemon``: it connects to the engine once and keeps the
docker backend's pool of single-use containers full, each with a PyPy runner already started and waiting
for its task. Commands on the same machine (``eval``, ``baselines``, a graph run, the tool server) find it
through ``sandbox/select.py`` and hand it their ``SandboxTask``s over a unix socket instead of connecting
to the engine, cold-starting a container and starting PyPy themselves. When no daemon answers they take
the normal path; the figures are the same either way.

What the daemon does not change: every task still gets a fresh container that no other task used and
that is destroyed after it (the daemon starts the next one shortly after, off the task's path).

A one-off ``eval`` can go one step further and hand the daemon the whole evaluation (``evaluate``
requests, served by a handler the CLI registers, ``cli/eval_cmd.py``): the daemon then runs the same
``evaluate_controller`` (static checks, the judge, the audit, recording) with everything already imported,
so the command itself only parses its arguments and prints. The daemon serves those only for a client
whose host-side sources (``code_version``) are its own: an edited checkout is never judged by old code.

The daemon is the user's own service: the socket lives in a directory only the user can enter
(mode 0700), the socket itself is 0600, and each connection's peer must run as the user in the daemon's
user namespace (SO_PEERCRED; not, say, a task of the bwrap sandbox, whose uid maps back to the user's).
A request can only ask it to run a task, run an evaluation through a registered handler, report its
status, or stop.

Wire format: a frame is an 8-byte big-endian length and that many bytes of JSON; one request frame
(``DaemonRequest``) per connection, answered by progress frames (evaluations only) and one final
``DaemonReply``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from .backends.base import ErrorKind, Limits, SandboxError, SandboxResult, SandboxTask
from .pool import PoolStats

log = logging.getLogger("autotts_graph.sandbox.daemon")

SOCKET_ENV = "AUTOTTS_SANDBOX_SOCKET"  # where the daemon listens and clients look for it
USE_ENV = "AUTOTTS_SANDBOX_DAEMON"  # "0": never hand tasks to a daemon (always the normal path)
MAX_FRAME = 1 << 30  # a result is capped at 64 MB of runner output; this only bounds a broken peer
PING_TIMEOUT_S = 2.0
DEFAULT_IDLE_S = 3600.0
REFILL_AFTER_S = 0.5  # quiet time before used containers are replaced: a command's judge and audit come first
_HEADER = struct.Struct(">Q")
PACKAGE = Path(__file__).resolve().parents[1]
# What decides an evaluation's figures on the host: an `evaluate` request is served only by a daemon
# started from exactly these sources (the runtime in the box is pinned by the image tag instead).
CODE_DIRS = ("sandbox", "store", "tools")
CODE_FILES = ("cli/eval_cmd.py",)
Progress = Callable[[int, int], None]
# An evaluation handler: (the request's payload, the daemon's backend, a progress callback) -> a JSON-able
# result. RequestError for what the user must fix; any other exception is the daemon's failure.
Handler = Callable[[dict[str, Any], Any, Progress], dict[str, Any]]


class DaemonError(RuntimeError):
    """The daemon cannot start or be reached as asked; one line for the user."""


class RequestError(Exception):
    """An evaluation request that cannot be served as asked (unknown environment, bad input): the user's
    to fix, so a client reports it instead of falling back to the normal path."""


def code_version() -> str:
    """Hash of the host-side sources that decide an evaluation (CODE_DIRS, CODE_FILES; 12 hex digits)."""
    digest = hashlib.sha256()
    files = [p for d in CODE_DIRS for p in (PACKAGE / d).rglob("*")
             if p.suffix in (".py", ".npy", ".json") and "__pycache__" not in p.parts]
    for path in sorted(files + [PACKAGE / f for f in CODE_FILES]):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


class DaemonRequest(BaseModel):
    """What a client asks: run a task, report status, or stop. ``image`` is the image the client's
    sources need; a daemon started from other sources refuses to run its tasks."""

    op: Literal["ping", "run", "evaluate", "stop"]
    image: str = ""
    task: SandboxTask | None = None
    code: str = Field(default="", description="code_version() of the client (evaluate requests).")
    payload: dict[str, Any] | None = Field(default=None, description="What the evaluate handler takes.")


class DaemonStatus(BaseModel):
    """A daemon's account of itself."""

    pid: int
    image: str
    socket: str
    started_at: float
    served: int = Field(description="Tasks run so far, each in its own fresh container.")
    evaluations: int = Field(default=0, description="Whole evaluations run for commands (`evaluate`).")
    code: str = Field(default="", description="code_version() of the daemon's sources.")
    idle_timeout_s: float
    pools: list[PoolStats] = Field(default_factory=list)


class DaemonReply(BaseModel):
    """The answer to one request: a task's result, an evaluation's, the status, or why it was refused.

    An evaluation sends frames with only ``progress`` set before its final reply."""

    ok: bool
    error: str = ""
    user_error: bool = Field(default=False, description="The error is the request's (RequestError).")
    result: SandboxResult | None = None
    status: DaemonStatus | None = None
    payload: dict[str, Any] | None = None
    progress: tuple[int, int] | None = None


def wanted() -> bool:
    """Whether clients may use a daemon (``AUTOTTS_SANDBOX_DAEMON=0`` turns it off)."""
    return os.environ.get(USE_ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def socket_path() -> Path:
    """``$AUTOTTS_SANDBOX_SOCKET``, else a per-user path: ``$XDG_RUNTIME_DIR/autotts/sandbox.sock`` or
    ``/tmp/autotts-daemon-<uid>/sandbox.sock``."""
    env = os.environ.get(SOCKET_ENV)
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "autotts" / "sandbox.sock"
    return Path("/tmp") / f"autotts-daemon-{os.getuid()}" / "sandbox.sock"


def private_dir(path: Path, create: bool) -> bool:
    """Whether ``path`` is a real directory owned by this user that nobody else can enter (created 0700
    when ``create``). DaemonError when it exists but is not private: someone else could own the socket."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700, parents=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise DaemonError(f"{path} is not a private directory of this user (it must be a directory owned by uid "
                          f"{os.getuid()}, mode 0700): refusing to use a sandbox daemon socket there")
    return True


def _send(sock: socket.socket, model: BaseModel) -> None:
    body = model.model_dump_json().encode()
    sock.sendall(_HEADER.pack(len(body)))
    sock.sendall(body)


def _recv(sock: socket.socket) -> bytes | None:
    """One frame's body, or None when the peer closed the connection first."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise DaemonError(f"frame of {size} bytes is over the {MAX_FRAME} limit")
    return _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return bytes(buf)


def _peer_allowed(conn: socket.socket) -> bool:
    """The peer runs as this user and in this process's user namespace.

    The namespace check keeps out code this user runs inside another sandbox: a bwrap task's uid 65534 maps
    back to the user's uid, so the uid alone would let it in, were the socket ever visible there.
    """
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    if uid != os.getuid() or pid <= 0:
        return False
    try:
        return os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
    except OSError:  # gone, or not ours to inspect
        return False


def request(path: Path, req: DaemonRequest, timeout_s: float | None,
            on_progress: Progress | None = None) -> DaemonReply:
    """Send one request and wait for its final reply (progress frames go to ``on_progress``); OSError when
    no daemon answers, DaemonError on a bad reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        _send(sock, req)
        while True:
            body = _recv(sock)
            if body is None:
                raise DaemonError("the sandbox daemon closed the connection without a reply")
            try:
                # json.loads then validate: 3x faster than model_validate_json on a sweep's multi-MB results.
                reply = DaemonReply.model_validate(json.loads(body))
            except (ValueError, RecursionError) as exc:  # JSON and pydantic errors
                raise DaemonError(f"unreadable reply from the sandbox daemon: {str(exc)[:200]}") from None
            if reply.progress is None:
                return reply
            if on_progress is not None:
                on_progress(*reply.progress)


def status(path: Path | None = None, timeout_s: float = PING_TIMEOUT_S) -> DaemonStatus | None:
    """The status of the daemon at ``path`` (default ``socket_path()``), or None when none answers.

    DaemonError when the socket's directory exists but is not private to this user (never used then).
    """
    path = path or socket_path()
    if not private_dir(path.parent, create=False) or not path.exists():
        return None
    try:
        reply = request(path, DaemonRequest(op="ping"), timeout_s)
    except (OSError, DaemonError) as exc:
        log.debug("no sandbox daemon at %s: %s", path, exc)
        return None
    return reply.status


class DaemonBackend:
    """A sandbox backend that hands each task to a running daemon (the client side).

    Results are the daemon's docker backend's results, so ``name`` is ``docker``. Each ``run`` uses its
    own connection: concurrent tasks from several threads run concurrently in the daemon's pool.
    """

    name = "docker"
    interpreters = ("pypy", "cpython")

    def __init__(self, path: Path, image: str, daemon: DaemonStatus, limits: Limits | None = None) -> None:
        self.path = path
        self.image = image
        self.daemon = daemon
        self.limits = limits

    def run(self, task: SandboxTask) -> SandboxResult:
        """Run one task in the daemon; engine or daemon failures come back as infrastructure errors."""
        limits = self.limits or task.limits
        task = task.model_copy(update={"limits": limits})
        started = time.perf_counter()
        # A backstop only: the daemon enforces the task's deadline and may first wait for a container.
        timeout = task.deadline_s(limits) + 180.0
        try:
            reply = request(self.path, DaemonRequest(op="run", image=self.image, task=task), timeout)
        except (OSError, DaemonError) as exc:
            reply = DaemonReply(ok=False, error=f"the sandbox daemon at {self.path} failed: {exc}")
        if reply.ok and reply.result is not None:
            return reply.result
        return SandboxResult(ok=False, backend=self.name, elapsed_s=time.perf_counter() - started,
                             error=SandboxError(kind=ErrorKind.infrastructure, message=reply.error or "no result"))

    def close(self) -> None:
        """Nothing to release here: the containers belong to the daemon."""


def _answering(path: Path) -> tuple[DaemonStatus | None, str]:
    """The status of the daemon answering at ``path``, or (None, why not)."""
    if not wanted():
        return None, f"{USE_ENV}=0"
    try:
        daemon = status(path)
    except DaemonError as exc:
        log.warning("%s", exc)
        return None, str(exc)
    if daemon is None:
        return None, f"no sandbox daemon answers at {path}"
    return daemon, ""


def connect(limits: Limits | None = None, path: Path | None = None) -> tuple[DaemonBackend | None, str]:
    """A backend on the running daemon and why, or (None, why not) when none answers or it cannot serve
    this checkout (its image was built from other runtime sources)."""
    from .image.build import image_tag

    path = path or socket_path()
    daemon, why = _answering(path)
    if daemon is None:
        return None, why
    image = image_tag()
    if daemon.image != image:
        why = (f"the sandbox daemon at {path} (pid {daemon.pid}) runs {daemon.image}, these sources need {image}: "
               "restart it (`autotts-graph sandbox warm --stop`, then `sandbox warm`)")
        log.warning("%s", why)  # the user started it to be used: say why it is not
        return None, why
    return DaemonBackend(path, image, daemon, limits), f"a warm sandbox daemon answers at {path} (pid {daemon.pid})"


class Borrowed:
    """The daemon's backend lent to one evaluation: closing it (when the evaluation's context closes)
    leaves it to the daemon."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name
        self.interpreters = backend.interpreters

    def run(self, task: SandboxTask) -> SandboxResult:
        """Run the task on the daemon's backend."""
        return self.backend.run(task)

    def close(self) -> None:
        """Nothing: the backend is the daemon's."""


def evaluate(payload: dict[str, Any], on_progress: Progress | None = None,
             path: Path | None = None) -> tuple[dict[str, Any] | None, str]:
    """Have the daemon run a whole evaluation: (its result, why) or (None, why not) when no daemon answers,
    it runs other sources, or it failed (the caller then takes the normal path; nothing was recorded unless
    the evaluation completed). RequestError when the request itself is at fault."""
    from .image.build import image_tag

    path = path or socket_path()
    daemon, why = _answering(path)
    if daemon is None:
        return None, why
    if not daemon.code:
        return None, f"the sandbox daemon at {path} runs tasks only"
    code, image = code_version(), image_tag()
    if (daemon.code, daemon.image) != (code, image):
        why = (f"the sandbox daemon at {path} (pid {daemon.pid}) was started from other sources: restart it "
               "(`autotts-graph sandbox warm --stop`, then `sandbox warm`)")
        log.warning("%s", why)
        return None, why
    try:
        reply = request(path, DaemonRequest(op="evaluate", image=image, code=code, payload=payload), None, on_progress)
    except (OSError, DaemonError) as exc:
        log.warning("the sandbox daemon at %s failed (%s): evaluating here", path, exc)
        return None, f"the sandbox daemon failed: {exc}"
    if reply.ok and reply.payload is not None:
        return reply.payload, f"evaluated by the warm sandbox daemon at {path} (pid {daemon.pid})"
    if reply.user_error:
        raise RequestError(reply.error)
    log.warning("the sandbox daemon at %s could not evaluate (%s): evaluating here", path, reply.error)
    return None, reply.error


class SandboxDaemon:
    """Serves tasks from a docker backend whose pool is refilled after every task (the server side)."""

    def __init__(self, backend: Any, path: Path, idle_timeout_s: float = DEFAULT_IDLE_S,
                 handlers: dict[str, Handler] | None = None) -> None:
        self.backend = backend
        self.path = path
        self.idle_timeout_s = idle_timeout_s
        self.handlers = dict(handlers or {})
        self.code = code_version()
        self.started_at = time.time()
        self.served = 0
        self.evaluations = 0
        self._active = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        """Take the socket (0600 in a 0700 directory); DaemonError if another daemon already answers."""
        private_dir(self.path.parent, create=True)
        if len(str(self.path).encode()) > 107:
            raise DaemonError(f"socket path too long for a unix socket: {self.path}")
        if self.path.exists() or self.path.is_symlink():
            other = status(self.path)
            if other is not None:
                raise DaemonError(f"a sandbox daemon already answers at {self.path} (pid {other.pid})")
            self.path.unlink()  # left by a daemon that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)  # the directory already keeps others out; this says so on the file too
        sock.listen(64)
        sock.settimeout(0.5)  # wake up to notice stop and idleness
        self._sock = sock

    def status(self) -> DaemonStatus:
        """Counters, including each pool's."""
        pools = self.backend.pool_stats()
        return DaemonStatus(pid=os.getpid(), image=self.backend.image, socket=str(self.path),
                            started_at=self.started_at, served=self.served, evaluations=self.evaluations,
                            code=self.code if "evaluate" in self.handlers else "",
                            idle_timeout_s=self.idle_timeout_s, pools=pools)

    def serve_forever(self) -> None:
        """Accept connections until stopped or idle for ``idle_timeout_s`` (0: never); then clean up."""
        if self._sock is None:
            self.bind()
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._sock.accept()
                except TimeoutError:
                    with self._lock:
                        idle = not self._active and time.monotonic() - self._last
                    if self.idle_timeout_s and idle and idle > self.idle_timeout_s:
                        log.info("sandbox daemon idle for %.0f s: stopping", idle)
                        break
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                threading.Thread(target=self._serve, args=(conn,), daemon=True, name="autotts-daemon-conn").start()
        finally:
            self.close()

    def stop(self) -> None:
        """Ask the accept loop to end (safe from signal handlers and other threads)."""
        self._stop.set()

    def close(self) -> None:
        """Stop listening, remove the socket, destroy every container."""
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.backend.close()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30.0)  # for reading the request; the reply waits as long as the task runs
                if not _peer_allowed(conn):
                    log.warning("refused a connection from another user or user namespace")
                    return
                body = _recv(conn)
                if body is None:
                    return
                try:
                    req = DaemonRequest.model_validate_json(body)
                except ValidationError as exc:
                    _send(conn, DaemonReply(ok=False, error=f"bad request: {exc.errors()[0]['msg']}"))
                    return
                conn.settimeout(None)
                if req.op == "evaluate":
                    def progress(done: int, total: int) -> None:
                        # Best effort: a client that went away does not stop the evaluation, which is then
                        # recorded (and cached) all the same.
                        with contextlib.suppress(OSError):
                            _send(conn, DaemonReply(ok=True, progress=(done, total)))

                    _send(conn, self._evaluate(req, progress))
                else:
                    _send(conn, self._answer(req))
            except (OSError, DaemonError) as exc:  # the client went away: its task's container is gone anyway
                log.debug("connection ended: %s", exc)

    def _evaluate(self, req: DaemonRequest, progress: Progress) -> DaemonReply:
        handler = self.handlers.get("evaluate")
        if handler is None or req.payload is None:
            return DaemonReply(ok=False, error="this daemon does not run evaluations")
        if (req.code, req.image) != (self.code, self.backend.image):
            return DaemonReply(ok=False, error="the daemon was started from other sources than the client's")
        with self._lock:
            self._active += 1
        try:
            return DaemonReply(ok=True, payload=handler(req.payload, self.backend, progress))
        except RequestError as exc:
            return DaemonReply(ok=False, user_error=True, error=str(exc))
        except Exception as exc:  # the daemon's own failure: the client evaluates itself instead
            log.exception("evaluation failed")
            return DaemonReply(ok=False, error=f"internal error in the sandbox daemon: {exc!r}"[:2000])
        finally:
            with self._lock:
                self._active -= 1
                self.evaluations += 1
                self._last = time.monotonic()

    def _answer(self, req: DaemonRequest) -> DaemonReply:
        if req.op == "ping":
            return DaemonReply(ok=True, status=self.status())
        if req.op == "stop":
            self.stop()
            return DaemonReply(ok=True, status=self.status())
        if req.task is None:
            return DaemonReply(ok=False, error="a run request needs a task")
        if req.image != self.backend.image:
            return DaemonReply(ok=False, error=f"this daemon runs {self.backend.image}, the task needs {req.image}")
        with self._lock:
            self._active += 1
        try:
            result = self.backend.run(req.task)
        finally:
            with self._lock:
                self._active -= 1
                self.served += 1
                self._last = time.monotonic()
        return DaemonReply(ok=True, result=result)


def serve(pool_size: int | None = None, idle_timeout_s: float = DEFAULT_IDLE_S, path: Path | None = None,
          ready: Any = None, handlers: dict[str, Handler] | None = None) -> None:
    """Run a daemon in this process until SIGTERM/SIGINT, a stop request, or idleness.

    ``handlers`` serve requests beyond tasks (``evaluate``); ``ready`` (a callable taking the DaemonStatus)
    is called once the socket is bound and the pool is full.
    """
    from .backends.docker import DockerBackend, DockerUnavailable

    path = path or socket_path()
    try:
        # The pool is refilled shortly after the last task (a plain backend waits until it has served more
        # tasks than it has containers, which suits one-off commands, not a daemon).
        backend = DockerBackend(pool_size=pool_size, refill_after_s=REFILL_AFTER_S)
    except DockerUnavailable as exc:
        raise DaemonError(str(exc)) from None
    daemon = SandboxDaemon(backend, path, idle_timeout_s, handlers)
    try:
        daemon.bind()
        backend.pool.start(wait=True)
    except BaseException:
        daemon.close()
        raise
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: daemon.stop())
    if ready is not None:
        ready(daemon.status())
    daemon.serve_forever()


def stop(path: Path | None = None, timeout_s: float = 30.0) -> DaemonStatus | None:
    """Ask the daemon at ``path`` to stop and wait until its socket is gone; its status, or None if none ran."""
    path = path or socket_path()
    current = status(path)
    if current is None:
        return None
    with contextlib.suppress(OSError, DaemonError):
        request(path, DaemonRequest(op="stop"), PING_TIMEOUT_S)
    end = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return current
