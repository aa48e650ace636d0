"""The sandbox daemon (`autotts-graph sandbox warm`) against a real engine: it serves real evaluations
with the figures of the normal path, never hands a task a container another task used, keeps its socket
private, and commands fall back to the normal path when it is down or stale."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from autotts_graph.sandbox import daemon
from autotts_graph.sandbox.backends.base import Limits, SandboxTask

from .conftest import adversarial_source, report

# The container's id, read from the bind mount docker sets up for /etc/hostname; and a marker file in the
# box's /tmp that a task would find if it ran in a container an earlier task had used.
IDENTIFY = '''
_cid = [l.split()[3].split("/")[-2] for l in open("/proc/self/mountinfo") if l.split()[4] == "/etc/hostname"]
_seen = _os.path.exists("/tmp/used-by-a-task")
open("/tmp/used-by-a-task", "w").write("x")
_report(container=_cid[0] if _cid else None, marker_seen=_seen)
'''


def _start(path: Path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "autotts_graph.cli.main", "sandbox", "warm", "--socket", str(path),
                             "--pool", "2", "--idle-timeout", "600", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        status = daemon.status(path)
        if status is not None and status.pid == proc.pid:
            return proc
        if proc.poll() is not None:
            pytest.fail(f"the sandbox daemon exited: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the sandbox daemon did not answer within 180 s")


def _stop(proc: subprocess.Popen, path: Path) -> None:
    daemon.stop(path)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def warm_daemon(sandbox_image, tmp_path_factory):
    """A real daemon in its own process, on a private socket; yields the socket path."""
    from autotts_graph.sandbox.image.build import image_tag

    if image_tag() != sandbox_image:
        pytest.skip("the runtime sources changed during the session: the daemon would need another image")
    base = tmp_path_factory.mktemp("daemon")
    base.chmod(0o700)
    path = base / "sandbox.sock"
    proc = _start(path)
    yield path
    _stop(proc, path)
    assert not path.exists()


@pytest.fixture
def use_daemon(monkeypatch, warm_daemon) -> Path:
    """Commands in this test find the daemon (conftest turns daemons off for every other test)."""
    monkeypatch.delenv(daemon.USE_ENV, raising=False)
    monkeypatch.setenv(daemon.SOCKET_ENV, str(warm_daemon))
    return warm_daemon


def _store(tmp_path: Path, name: str, replay_dir: Path):
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_path

    store = Store(tmp_path / f"{name}.duckdb")
    import_path(store, replay_dir / "Qwen3-4B" / "aime24.json")
    return store


def _evaluate(store, source: str):
    from autotts_graph.store import history
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    ctx = ToolContext(store=store, sandbox="docker", workers=2)
    try:
        summary = evaluate_controller(ctx, EvaluateInput(source=source, envs=["Qwen3-4B/aime24"], betas=[0.5, 1.0],
                                                         seeds=20, trace_seeds=1))
        backend, reason = type(ctx.backend).__name__, ctx.sandbox_reason
    finally:
        ctx.close()
    assert summary.ok, summary.error
    outcomes = sorted((o.model_dump() for o in history.get_outcomes(store, summary.evaluation_id)),
                      key=lambda o: json.dumps(o, default=str))
    traces, total = history.get_traces(store, summary.evaluation_id, limit=1000)
    assert total == len(traces) == 2 * 30  # seed 0 of both betas
    return summary, {"outcomes": outcomes, "traces": [t.model_dump() for t in traces]}, backend, reason


def test_daemon_serves_a_real_eval_with_the_figures_of_the_normal_path(monkeypatch, warm_daemon, replay_dir,
                                                                        controller_source, tmp_path) -> None:
    source = controller_source("cmc")
    monkeypatch.setenv(daemon.USE_ENV, "0")
    cold, cold_detail, cold_backend, _ = _evaluate(_store(tmp_path, "cold", replay_dir), source)
    assert cold_backend == "DockerBackend"
    before = daemon.status(warm_daemon).served
    monkeypatch.delenv(daemon.USE_ENV)
    monkeypatch.setenv(daemon.SOCKET_ENV, str(warm_daemon))
    warm, warm_detail, warm_backend, reason = _evaluate(_store(tmp_path, "warm", replay_dir), source)
    assert warm_backend == "DaemonBackend" and "daemon" in reason
    assert daemon.status(warm_daemon).served == before + 3  # a task per beta (2 workers), and the audits
    assert warm.backend == cold.backend == "docker" and warm.interpreter == cold.interpreter == "pypy"
    assert warm.replay_s > 0
    pairs = list(zip(cold.points, warm.points, strict=True))
    assert len(pairs) == 2
    for a, b in pairs:
        assert (a.accuracy, repr(a.avg_cost), a.std_acc, a.description) == \
               (b.accuracy, repr(b.avg_cost), b.std_acc, b.description)
    # Per-seed outcomes, answers and traces, to the last digit.
    assert len(cold_detail["outcomes"]) == 2 * 20
    assert json.dumps(cold_detail, sort_keys=True, default=str) == json.dumps(warm_detail, sort_keys=True, default=str)


def test_a_task_never_gets_a_container_another_task_used(use_daemon, docker_client, tiny_pack) -> None:
    backend, why = daemon.connect()
    assert backend is not None, why
    task = SandboxTask(source=adversarial_source(IDENTIFY), packs={"tiny": str(tiny_pack)}, points=[{"beta": 0.5}],
                       seeds=[0], limits=Limits(timeout_s=120))
    reports = [report(backend.run(task)) for _ in range(4)]
    threads, results = [], []
    for _ in range(4):  # concurrent tasks: more than the pool holds
        threads.append(threading.Thread(target=lambda: results.append(backend.run(task))))
        threads[-1].start()
    for t in threads:
        t.join(300)
    reports += [report(r) for r in results]
    ids = [r["container"] for r in reports]
    assert len(ids) == 8 and all(ids) and len(set(ids)) == 8, ids
    assert not any(r["marker_seen"] for r in reports)
    # Each was destroyed after its task.
    end = time.monotonic() + 30
    while time.monotonic() < end and any(_exists(docker_client, cid) for cid in ids):
        time.sleep(0.2)
    assert not any(_exists(docker_client, cid) for cid in ids)
    status = daemon.status(use_daemon)
    assert all(p.tasks == p.destroyed for p in status.pools)
    # Once no task has run for a moment, the daemon has fresh containers ready again for the next command.
    end = time.monotonic() + 60
    while time.monotonic() < end and not all(p.ready == p.size for p in daemon.status(use_daemon).pools):
        time.sleep(0.2)
    assert all(p.ready == p.size and p.busy == 0 for p in daemon.status(use_daemon).pools)


def _exists(client, container_id: str) -> bool:
    import docker

    try:
        client.containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False


def test_daemon_results_carry_controller_errors_like_the_normal_path(use_daemon, make_task) -> None:
    backend, _ = daemon.connect()
    # The adversarial limits: a container spec of their own, which the daemon keeps warm beside the default.
    crash = backend.run(make_task(adversarial_source("raise ValueError('boom')")))
    assert not crash.ok and crash.error.kind == "runtime" and "boom" in crash.error.message
    hung = backend.run(make_task(adversarial_source("while True:\n    pass")))
    assert not hung.ok and hung.error.kind == "timeout"
    assert len(daemon.status(use_daemon).pools) == 2


def test_cli_uses_the_daemon_and_falls_back_when_it_is_down(use_daemon, tiny_store, tmp_path, monkeypatch) -> None:
    from autotts_graph.cli.main import app
    from typer.testing import CliRunner

    runner = CliRunner()
    other = tmp_path / "other.duckdb"
    other.write_bytes(tiny_store.path.read_bytes())  # for the second run: computed again, not cached
    args = ["eval", "baseline:asc", "--env", "tiny/a", "--betas", "0.5", "--seeds", "3", "--sandbox", "docker",
            "--store", str(tiny_store.path), "--json"]
    before = daemon.status(use_daemon).evaluations
    warm = runner.invoke(app, args)
    assert warm.exit_code == 0, warm.output
    assert "evaluated by the warm sandbox daemon" in warm.output
    assert daemon.status(use_daemon).evaluations == before + 1
    figures = json.loads(warm.output[warm.output.index("{"):])["points"]
    # What the user must fix comes back as one line, with no second attempt here.
    unknown = runner.invoke(app, [*args[:3], "nowhere/x", *args[4:]])
    assert unknown.exit_code == 1 and unknown.output.strip().splitlines()[-1].startswith("error: unknown environment")
    assert "Traceback" not in unknown.output

    down = tmp_path / "down"
    down.mkdir(mode=0o700)
    dead = down / "sandbox.sock"
    with socket.socket(socket.AF_UNIX) as sock:  # a socket file nobody listens on: a daemon that died
        sock.bind(str(dead))
    monkeypatch.setenv(daemon.SOCKET_ENV, str(dead))
    cold = runner.invoke(app, [*args[:-3], "--store", str(other), "--json"])
    assert cold.exit_code == 0, cold.output
    assert "daemon" not in cold.output and "asked for by name" in cold.output
    cold_points = json.loads(cold.output[cold.output.index("{"):])
    assert cold_points["cached_points"] == 0
    assert cold_points["points"] == figures

    status = runner.invoke(app, ["sandbox", "warm", "--status", "--socket", str(dead)])
    assert status.exit_code == 1 and status.output.strip().startswith("error: no sandbox daemon answers")


def test_a_daemon_of_other_sources_is_not_used(use_daemon, monkeypatch) -> None:
    from autotts_graph.sandbox.image import build

    # Edited host-side sources: the daemon's evaluations would be judged by the old code.
    monkeypatch.setattr(daemon, "code_version", lambda: "000000000000")
    out, why = daemon.evaluate({"anything": 1})
    assert out is None and "other sources" in why
    reply = daemon.request(use_daemon, daemon.DaemonRequest(op="evaluate", image=build.image_tag(),
                                                            code="000000000000", payload={}), 30)
    assert not reply.ok and "other sources" in reply.error
    # An edited runtime: not even its tasks.
    monkeypatch.setattr(build, "image_tag", lambda: "autotts-sandbox:000000000000")
    backend, why = daemon.connect()
    assert backend is None and "runs autotts-sandbox:" in why and "these sources need" in why
    reply = daemon.request(use_daemon, daemon.DaemonRequest(op="run", image="autotts-sandbox:000000000000",
                                                            task=SandboxTask(source="x")), 30)
    assert not reply.ok and "the task needs autotts-sandbox:000000000000" in reply.error


def test_the_socket_is_private(use_daemon, tmp_path) -> None:
    assert os.stat(use_daemon.parent).st_mode & 0o777 == 0o700
    assert os.stat(use_daemon).st_mode & 0o777 == 0o600
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    with pytest.raises(daemon.DaemonError, match="not a private directory"):
        daemon.private_dir(open_dir, create=False)
    backend, why = daemon.connect(path=open_dir / "sandbox.sock")  # a command then takes the normal path
    assert backend is None and "not a private directory" in why
    link = tmp_path / "link"
    link.symlink_to(use_daemon.parent)
    with pytest.raises(daemon.DaemonError, match="not a private directory"):
        daemon.private_dir(link, create=False)
    # The same user inside another user namespace (as in a bwrap task): connected, but never answered.
    probe = ("import sys; from pathlib import Path; from autotts_graph.sandbox import daemon\n"
             "try:\n    daemon.request(Path(sys.argv[1]), daemon.DaemonRequest(op='ping'), 10)\n    print('answered')\n"
             "except Exception as exc:\n    print('refused', type(exc).__name__, exc)\n")
    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode == 0:
        out = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", probe, str(use_daemon)],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("refused"), (out.stdout, out.stderr[-2000:])
        assert daemon.status(use_daemon) is not None  # and the daemon is still there for its user
    if os.getuid() != 0:
        return
    # Another user cannot even reach the socket (and the daemon checks the peer's uid besides).
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(use_daemon))
            code = 1
        except PermissionError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_warm_detach_status_stop(sandbox_image, tmp_path_factory, monkeypatch) -> None:
    from autotts_graph.cli.main import app
    from autotts_graph.sandbox.image.build import image_tag
    from typer.testing import CliRunner

    if image_tag() != sandbox_image:
        pytest.skip("the runtime sources changed during the session")
    base = tmp_path_factory.mktemp("detached")
    base.chmod(0o700)
    path = base / "sandbox.sock"
    runner = CliRunner()
    started = runner.invoke(app, ["sandbox", "warm", "--detach", "--pool", "1", "--socket", str(path)])
    try:
        assert started.exit_code == 0, started.output
        assert "sandbox daemon ready" in started.output
        again = runner.invoke(app, ["sandbox", "warm", "--socket", str(path)])
        assert again.exit_code == 1 and "already answers" in again.output
        shown = runner.invoke(app, ["sandbox", "warm", "--status", "--socket", str(path)])
        assert shown.exit_code == 0 and json.loads(shown.output)["image"] == sandbox_image
        monkeypatch.setenv(daemon.SOCKET_ENV, str(path))
        doctor = runner.invoke(app, ["sandbox", "doctor", "--no-probe"])
        assert "answers" in doctor.output
    finally:
        stopped = runner.invoke(app, ["sandbox", "warm", "--stop", "--socket", str(path)])
    assert stopped.exit_code == 0 and "stopped the sandbox daemon" in stopped.output
    assert not path.exists()
