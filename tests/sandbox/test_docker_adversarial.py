"""Adversarial controller code against the docker and bwrap backends (real engine, real bwrap).

Each case runs hostile code inside the box and asserts what a user would notice: the right error kind,
or, for the "cannot do harm" cases, that the attempt failed inside the box. After every case the host
has no leftover task process and the next task in the pool succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from autotts_graph.sandbox.backends.base import INTERPRETER_ENV, ErrorKind, SandboxResult

from .conftest import ADVERSARIAL_LIMITS, ASC, adversarial_source, host_processes_with, patient, report, wait_gone

TIMEOUT = ADVERSARIAL_LIMITS.timeout_s
SLACK = 3.0  # seconds past the limit we accept for killing and reporting


@dataclass
class Case:
    name: str
    snippet: str
    kinds: set[ErrorKind | None]  # None = the evaluation completes
    check: Callable[[SandboxResult, dict], None] | None = None
    marker: str | None = None  # a command-line fragment of processes the case starts (must all die)
    backends: tuple[str, ...] = ("docker", "bwrap")
    extra: dict = field(default_factory=dict)


def _quick(result: SandboxResult, ctx: dict) -> None:
    assert result.elapsed_s < TIMEOUT + SLACK  # killed promptly, or never needed to be


def _check_fill(result: SandboxResult, ctx: dict) -> None:
    written = report(result)["written"]
    cap = ADVERSARIAL_LIMITS.tmp_mb * 1024 * 1024
    for directory in ("/tmp", "/dev/shm"):
        assert 0 < written[directory] <= cap + 1024 * 1024, written


def _check_writes(result: SandboxResult, ctx: dict) -> None:
    res = report(result)["res"]
    assert res and "WROTE" not in res.values(), res
    assert hashlib.sha256(open(ctx["pack"], "rb").read()).hexdigest() == ctx["pack_hash"]


def _check_env(result: SandboxResult, ctx: dict) -> None:
    rep = report(result)
    text = result.stderr_tail + str(result.error)
    assert "sk-autotts-FAKE" not in text
    assert set(rep["env"]) <= {"PATH", "HOME", "LANG", "PYTHONPATH", "PWD", *INTERPRETER_ENV}, rep["env"]
    assert rep["leaks"] == [], rep


def _check_network(result: SandboxResult, ctx: dict) -> None:
    res = report(result)["res"]
    assert set(res) == {"tcp", "dns", "metadata"}
    assert "CONNECTED" not in res.values(), res


def _check_privilege(result: SandboxResult, ctx: dict) -> None:
    res = report(result)["res"]
    assert not any(res.values()), res


def _check_fds(result: SandboxResult, ctx: dict) -> None:
    assert report(result)["count"] < ADVERSARIAL_LIMITS.nofile


def _check_garbage(result: SandboxResult, ctx: dict) -> None:
    assert isinstance(result.stderr_tail, str) and "\ufffd" in result.stderr_tail


def _check_segfault(result: SandboxResult, ctx: dict) -> None:
    assert "signal 11" in result.error.message


def _check_flood(result: SandboxResult, ctx: dict) -> None:
    assert result.elapsed_s < TIMEOUT + SLACK
    assert len(result.stderr_tail) <= 4000


CASES = [
    Case("infinite_loop", "while True:\n    pass", {ErrorKind.timeout}, _quick),
    Case("setsid_child_outlives_timeout", """
import subprocess
subprocess.Popen(["sleep", "31337"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    pass
""", {ErrorKind.timeout}, _quick, marker="sleep 31337"),
    Case("setsid_child_after_success", """
import subprocess
subprocess.Popen(["sleep", "31338"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
""", {None}, _quick, marker="sleep 31338"),
    Case("background_process", '_os.system("sleep 31339 &")', {None}, _quick, marker="sleep 31339"),
    Case("background_holding_stdout", '_os.system("sleep 31340 &")\n_os.system("(sleep 31341 >&2 &)")',
         {None}, _quick, marker="sleep 3134"),
    Case("fork_bomb", """
while True:
    try:
        _os.fork()
    except OSError:
        pass
""", {ErrorKind.timeout, ErrorKind.runtime, ErrorKind.killed}, _quick),
    Case("memory_bomb", '_blob = bytearray(b"x") * (1200 * 1024 * 1024)', {ErrorKind.oom}, _quick),
    Case("fill_tmp_and_shm", """
written = {}
for d in ("/tmp", "/dev/shm"):
    n = 0
    fd = _os.open(d + "/fill", _os.O_WRONLY | _os.O_CREAT, 0o600)
    try:
        while n < (1 << 30):
            n += _os.write(fd, b"\\0" * (1 << 20))
    except OSError:
        pass
    _os.close(fd)
    written[d] = n
_report(written=written)
""", {None}, _check_fill),
    Case("stdout_flood_1gb", """
_chunk = b"x" * (1 << 20)
for _ in range(1024):
    _os.write(1, _chunk)
""", {ErrorKind.output_limit}, _check_flood),
    Case("real_stdout_flood", """
_chunk = b"y" * (1 << 20)
for _ in range(1024):
    for _fd in range(3, 12):
        try:
            _os.write(_fd, _chunk)
        except OSError:
            pass
""", {ErrorKind.output_limit}, _check_flood),
    Case("write_root_and_packs", """
res = {}
for path in ("/evil", "/usr/evil", "/opt/autotts/evil", "/packs/evil", "/etc/evil"):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        res[path] = "WROTE"
    except OSError as exc:
        res[path] = exc.strerror
for name in _os.listdir("/packs"):
    try:
        with open("/packs/" + name, "r+b") as fh:
            fh.write(b"CORRUPT")
        res[name] = "WROTE"
    except OSError as exc:
        res[name] = exc.strerror
_report(res=res)
""", {None}, _check_writes),
    Case("host_environment_and_proc1", """
leaks = []
for pid in _os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if b"sk-autotts-FAKE" in fh.read():
                    leaks.append(pid)
        except OSError:
            pass
try:
    with open("/proc/1/environ", "rb") as fh:
        proc1 = fh.read().decode("latin-1")
except OSError as exc:
    proc1 = "DENIED " + exc.strerror
_report(env=dict(_os.environ), proc1=proc1, leaks=leaks)
""", {None}, _check_env),
    Case("network_tcp_dns_metadata", """
import socket
res = {}
for name, target in (("tcp", ("1.1.1.1", 80)), ("metadata", ("169.254.169.254", 80))):
    try:
        socket.create_connection(target, timeout=1).close()
        res[name] = "CONNECTED"
    except OSError as exc:
        res[name] = str(exc)
try:
    socket.getaddrinfo("deb.debian.org", 80)
    res["dns"] = "CONNECTED"
except OSError as exc:
    res["dns"] = str(exc)
_report(res=res)
""", {None}, _check_network),
    Case("mount_unshare_chroot", """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
res = {"mount": libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0,
       "unshare_mount_ns": libc.unshare(0x00020000) == 0,
       "unshare_user_ns": libc.unshare(0x10000000) == 0}
for name, call in (("chroot", lambda: _os.chroot("/tmp")), ("setuid0", lambda: _os.setuid(0))):
    try:
        call()
        res[name] = True
    except OSError:
        res[name] = False
_report(res=res)
""", {None}, _check_privilege),
    Case("fd_exhaustion", """
fds = []
try:
    while len(fds) < 100000:
        fds.append(_os.open("/dev/null", _os.O_RDONLY))
except OSError:
    pass
_report(count=len(fds))
for _fd in fds:
    _os.close(_fd)
""", {None}, _check_fds),
    Case("multiprocess_cpu_hog", """
import multiprocessing
def _spin():
    while True:
        pass
for _ in range(6):
    multiprocessing.get_context("fork").Process(target=_spin).start()
_spin()
""", {ErrorKind.timeout}, _quick),
    Case("ignores_sigterm", """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    pass
""", {ErrorKind.timeout}, _quick),
    Case("broken_utf8_and_nul", """
_sys.stderr.buffer.write(b"bad \\xff\\xfe\\xc3\\x28 utf8 \\x00\\x00 NUL\\n")
_sys.stderr.flush()
_os.write(1, b"\\x00\\xff\\x1eAUTOTTS-RESULT\\x1e{not json\\n")
""", {None}, _check_garbage),
    Case("garbage_then_segfault", """
import ctypes
_os.write(2, b"\\xff\\x00 about to crash\\n")
ctypes.string_at(0)
""", {ErrorKind.killed}, _check_segfault),
]


@pytest.fixture(params=["docker", "bwrap"])
def backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_adversarial(case: Case, backend, make_task, tiny_pack, monkeypatch) -> None:
    if backend.name not in case.backends:
        pytest.skip(f"not applicable to {backend.name}")
    if case.name == "fork_bomb" and backend.name == "bwrap":
        from autotts_graph.sandbox.backends.bwrap import _TaskCgroup

        probe = _TaskCgroup(ADVERSARIAL_LIMITS)
        enforced = probe.active or os.geteuid() != 0
        probe.close()
        if not enforced:
            pytest.skip("bwrap as root without a writable cgroup tree cannot bound the process count")
    # A secret planted in the host environment must never be visible inside.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-autotts-FAKE-0123456789")
    ctx = {"pack": str(tiny_pack), "pack_hash": hashlib.sha256(tiny_pack.read_bytes()).hexdigest()}
    # Only the cases meant to time out get the short timeout; the others must not flake on a busy host.
    short = ErrorKind.timeout in case.kinds
    started = time.perf_counter()
    with contextlib.nullcontext() if short else patient(backend, 30):
        result = backend.run(make_task(adversarial_source(case.snippet)))
    wall = time.perf_counter() - started
    kind = result.error.kind if result.error else None
    assert kind in case.kinds, (result.error, result.stderr_tail[-800:])
    assert result.ok == (kind is None)
    if kind is None:
        assert result.results and result.results[0]["solves"] > 0
    if kind is ErrorKind.timeout:
        assert TIMEOUT <= wall < TIMEOUT + SLACK
    if case.check:
        case.check(result, ctx)
    _assert_host_clean_and_next_task_ok(backend, make_task, case.marker)


def _assert_host_clean_and_next_task_ok(backend, make_task, marker: str | None) -> None:
    if backend.name == "docker":
        assert backend.pool.wait_idle(30), "the pool did not settle"
        for slot in list(backend.pool._ready):
            assert_idle_container(slot)
    if marker:
        assert wait_gone(marker) == [], f"processes matching {marker!r} survived the task"
    if backend.name == "bwrap":
        end = time.monotonic() + 5
        while sandboxed_runners() and time.monotonic() < end:  # killed processes take a moment to go
            time.sleep(0.1)
        assert sandboxed_runners() == [], "a bwrap runner process outlived its task"
    with patient(backend):
        nxt = backend.run(make_task(ASC))
    assert nxt.ok, nxt.error
    if backend.name == "docker":
        stats = backend.pool.snapshot()
        assert stats.ready + stats.busy + stats.starting <= backend.pool.size


def assert_idle_container(slot) -> None:
    """An idle container runs only the keeper and at most the next task's pre-started runner."""
    end = time.monotonic() + 10
    while True:
        top = slot.container.top()  # `ps -ef` on the host: UID, PID, PPID, ..., CMD
        rows = [dict(zip(top["Titles"], row, strict=True)) for row in top["Processes"]]
        # The pre-started runner is one process (runc init -> env -> sh -> python3, exec'ed in place).
        runner = [r["CMD"] for r in rows if r["UID"] != "root" or r["CMD"] == "runc init"]
        keeper = [r["CMD"] for r in rows if r["UID"] == "root" and r["CMD"] != "runc init"]
        # A container that has just started may not show docker-init's `sleep` child yet (a busy host).
        if len(keeper) >= 2 or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert len(keeper) == 2 and all(c.startswith(("/sbin/docker-init", "sleep infinity")) for c in keeper), rows
    assert len(runner) <= 1, rows


def sandboxed_runners() -> list[int]:
    """Runner processes in another network namespace and not in a container: bwrap's (the process
    backend and other users' containers run runners too, so the namespaces tell them apart)."""
    own_net = os.readlink("/proc/self/ns/net")
    found = []
    for pid in host_processes_with("autotts_runtime.runner"):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == own_net:
                continue
            with open(f"/proc/{pid}/cgroup") as fh:
                if "docker" in fh.read():
                    continue
        except OSError:
            continue
        found.append(pid)
    return found


def test_secret_in_host_env_not_forwarded_to_new_containers(docker_client, sandbox_image, make_task,
                                                             monkeypatch) -> None:
    """Containers created while a secret sits in the host environment still see none of it."""
    from autotts_graph.sandbox.backends.docker import DockerBackend

    monkeypatch.setenv("OPENAI_API_KEY", "sk-autotts-FAKE-fresh")
    backend = DockerBackend(ADVERSARIAL_LIMITS, pool_size=1, client=docker_client, image=sandbox_image)
    try:
        result = backend.run(make_task(adversarial_source(CASES[11].snippet)))
        assert result.ok, result.error
        _check_env(result, {})
        assert report(result)["proc1"].startswith("DENIED")  # PID 1 is root's: its environ is unreadable
        slot = backend.pool.acquire()  # a container created while the secret is set
        try:
            env = slot.container.attrs["Config"]["Env"]
        finally:
            backend.pool.release(slot)
        assert env and not any("OPENAI" in e for e in env)
    finally:
        backend.close()


@pytest.mark.parametrize("name", ["docker", "bwrap"])
def test_no_state_left_for_next_task(name, request, docker_client, sandbox_image, make_task) -> None:
    """Task A litters /tmp, /dev/shm, /dev/mqueue and SysV IPC and leaves a process; task B sees none."""
    litter = """
import ctypes, subprocess
for d in ("/tmp", "/dev/shm"):
    if not _os.path.exists(d + "/locked"):  # the runner loads the source twice
        _os.makedirs(d + "/locked/inner")
        open(d + "/locked/inner/f", "w").write("x")
        open(d + "/.hidden", "w").write("x")
        _os.chmod(d + "/locked/inner", 0)
        _os.chmod(d + "/locked", 0)
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget(0x7A7A, 4096, 0o1000 | 0o666)
try:
    _os.close(_os.open("/dev/mqueue/q", _os.O_CREAT | _os.O_RDWR, 0o666))
except OSError:
    pass
subprocess.Popen(["sleep", "31350"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
    look = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
seen = {d: sorted(_os.listdir(d)) for d in ("/tmp", "/dev/shm") if _os.path.isdir(d)}
if _os.path.isdir("/dev/mqueue"):
    seen["/dev/mqueue"] = sorted(_os.listdir("/dev/mqueue"))
seen["shm_segment"] = libc.shmget(0x7A7A, 0, 0) != -1
procs = []
for pid in _os.listdir("/proc"):
    if pid.isdigit():
        try:
            procs.append(open(f"/proc/{pid}/cmdline").read())
        except OSError:
            pass
seen["sleeper"] = any("31350" in p for p in procs)
_report(seen=seen)
"""
    if name == "docker":
        from autotts_graph.sandbox.backends.docker import DockerBackend

        backend = DockerBackend(ADVERSARIAL_LIMITS, pool_size=1, client=docker_client, image=sandbox_image)
    else:
        backend = request.getfixturevalue("bwrap_backend")
    try:
        with patient(backend):
            first = backend.run(make_task(adversarial_source(litter)))
            assert first.ok, first.error
            if name == "docker":
                assert backend.pool.wait_idle(30)
                # Ids from the low-level listing: the high-level one inspects each container and fails when
                # another process (other pools share the engine) removes one meanwhile.
                used = {c["Id"] for c in backend.client.api.containers(all=True)}
            second = backend.run(make_task(adversarial_source(look)))
            assert second.ok, second.error
            seen = report(second)["seen"]
            assert seen.pop("shm_segment") is False and seen.pop("sleeper") is False
            assert all(entries == [] for entries in seen.values()), seen
            if name == "docker":
                assert backend.pool.wait_idle(30)
                # Single use: the first task's container is gone, the second ran in a fresh one.
                assert backend.pool.snapshot().destroyed >= 2
                assert not used & {c["Id"] for c in backend.client.api.containers(all=True)
                                    if c["Id"] in {s.id for s in backend.pool._ready}}
            assert wait_gone("sleep 31350") == []
    finally:
        if name == "docker":
            backend.close()


@pytest.mark.parametrize("name", ["docker", "bwrap"])
def test_error_kinds_of_ordinary_mistakes(name, request, make_task) -> None:
    backend = request.getfixturevalue(f"{name}_backend")
    with patient(backend):
        _ordinary_mistakes(backend, make_task)


def _ordinary_mistakes(backend, make_task) -> None:
    syntax = backend.run(make_task("class Broken(:\n    pass\n"))
    assert syntax.error.kind is ErrorKind.syntax
    contract = backend.run(make_task("x = 1\n"))
    assert contract.error.kind is ErrorKind.contract
    crash = backend.run(make_task(ASC.replace("answer = safe_full_read(question)",
                                              "answer = safe_full_read(question); 1 / 0")))
    assert crash.error.kind is ErrorKind.runtime
    assert any("ZeroDivisionError" in line for line in crash.error.details)
    assert any(line.startswith("line ") for line in crash.error.details)  # the controller's own lines
    weird = backend.run(make_task(
        "from autotts_runtime import Controller\n\n"
        "class Weird(Controller):\n    NAME = 'weird'\n\n"
        "    def schedule(self, beta):\n        return {'n': 1}\n\n"
        "    def solve(self, question):\n        return {1, 2}\n"))
    assert weird.error.kind is ErrorKind.contract, weird.error


def test_engine_errors_are_infrastructure(docker_client, sandbox_image, make_task, tmp_path) -> None:
    """A warm container removed from outside is replaced transparently; an engine that stops answering
    gives `infrastructure` (not the controller's fault); the pool recovers when the engine is back."""
    import docker
    from autotts_graph.sandbox.backends.docker import DockerBackend
    from autotts_graph.sandbox.pool import POOL_LABEL

    backend = DockerBackend(ADVERSARIAL_LIMITS, pool_size=1, client=docker_client, image=sandbox_image)
    try:
        backend.pool.start(wait=True)
        mine = {"label": f"{POOL_LABEL}={backend.pool.pool_id}"}
        for container in docker_client.containers.list(all=True, filters=mine):
            container.remove(force=True)
        recovered = backend.run(make_task(ASC))
        assert recovered.ok, recovered.error
        assert backend.pool.wait_idle(30)
        # The engine stops answering: the backend now talks to a socket nobody listens on.
        dead = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41", timeout=5)
        backend.client = backend.pool.client = dead
        broken = backend.run(make_task(ASC))
        assert not broken.ok and broken.error.kind is ErrorKind.infrastructure, broken
        backend.client = backend.pool.client = docker_client
        again = backend.run(make_task(ASC))
        assert again.ok, again.error
    finally:
        backend.close()
    assert docker_client.containers.list(all=True, filters=mine) == []
    closed = backend.run(make_task(ASC))
    assert closed.error.kind is ErrorKind.infrastructure


def test_missing_pack_is_infrastructure(docker_backend, make_task) -> None:
    task = make_task(ASC).model_copy(update={"packs": {"gone": "/nonexistent/pack.npz"}})
    result = docker_backend.run(task)
    assert result.error.kind is ErrorKind.infrastructure and "not found" in result.error.message


def test_every_container_serves_one_task(docker_backend, make_task) -> None:
    before = docker_backend.pool.snapshot()
    result = docker_backend.run(make_task(adversarial_source("while True:\n    pass")))
    assert result.error.kind is ErrorKind.timeout
    assert docker_backend.pool.wait_idle(30)
    after = docker_backend.pool.snapshot()
    assert after.destroyed == before.destroyed + 1 and after.created == before.created + 1
    assert after.ready == docker_backend.pool.size
    for slot in docker_backend.pool._ready:
        assert_idle_container(slot)
