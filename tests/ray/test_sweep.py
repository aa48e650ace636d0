"""Sweeps on a real two-node Ray cluster: identical to local, through node death; stragglers cancelled."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from autotts_graph.sandbox.audit import AUDITS

from .conftest import build_store, controller

pytestmark = pytest.mark.ray

ENVS = ["Tiny/a", "Tiny/b"]
BETAS = [0.0, 0.3, 0.6, 1.0]
SEEDS = 60


def sweep(store, sandbox: str, executor: str, address: str | None = None, workers: int = 2,
          before=None) -> dict:
    """Evaluate ASC over ENVS x BETAS; what must not depend on where it ran, and the executor's stats."""
    from autotts_graph.store import history
    from autotts_graph.tools.context import ToolContext
    from autotts_graph.tools.evaluate import EvaluateInput, evaluate_controller

    ctx = ToolContext(store=store, sandbox=sandbox, workers=workers, executor_name=executor, ray_address=address)
    try:
        if before is not None:
            before(ctx)
        summary = evaluate_controller(ctx, EvaluateInput(source=controller("asc"), envs=ENVS, betas=BETAS,
                                                         seeds=SEEDS, trace_seeds=1))
        stats = ctx.executor.stats() if executor == "ray" else None
    finally:
        ctx.close()
    assert summary.ok, summary.error
    assert summary.cached_points == 0
    traces, _ = history.get_traces(store, summary.evaluation_id, env="Tiny/a", limit=100)
    return {"points": [(p.env, p.point_index, p.beta, p.accuracy, repr(p.avg_cost), repr(p.std_acc), p.description)
                       for p in summary.points],
            "outcomes": history.get_outcomes(store, summary.evaluation_id),
            "traces": [(t.question_index, t.seed, t.steps) for t in traces],
            "stats": stats, "interpreter": summary.interpreter}


@pytest.fixture(scope="module")
def local_result(tmp_path_factory, sandbox):
    return sweep(build_store(tmp_path_factory.mktemp("local") / "s.duckdb"), sandbox, "local")


def same(a: dict, b: dict) -> None:
    assert a["points"] == b["points"]
    assert a["outcomes"] == b["outcomes"]
    assert a["traces"] == b["traces"]
    assert a["interpreter"] == b["interpreter"]


def test_cluster_sweep_equals_local_bit_for_bit(two_nodes, tmp_path, sandbox, local_result) -> None:
    on_ray = sweep(build_store(tmp_path / "a.duckdb"), sandbox, "ray", two_nodes.address)
    same(local_result, on_ray)
    assert on_ray["stats"].done >= 2 and on_ray["stats"].retried == 0
    # Another split of the points into tasks (one per core of a 1-core cluster view) changes nothing.
    one_task_each = sweep(build_store(tmp_path / "b.duckdb"), sandbox, "ray", two_nodes.address, workers=1)
    same(local_result, one_task_each)


def test_packs_travel_once_by_content_and_keys_never(two_nodes, tmp_path, sandbox) -> None:
    from autotts_graph.tools.ray_executor import pack_cache_dir

    store = build_store(tmp_path / "s.duckdb")
    result = sweep(store, sandbox, "ray", two_nodes.address)
    packs = sorted(store.packs_dir.glob("*.npz"))
    sizes = sum(p.stat().st_size for p in packs)
    # Each environment's pack is put once (each audit's changed pack of each environment comes on top), never
    # per task.
    audit_packs = len(packs) * len(AUDITS)
    assert sizes <= result["stats"].pack_bytes_put < sizes + audit_packs * max(p.stat().st_size for p in packs) + 1
    cache = pack_cache_dir()
    for p in packs:
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        assert (cache / f"{sha}.npz").read_bytes() == p.read_bytes()
    assert not list(cache.glob("*.json")), "answer keys must never leave the driver"
    assert not list(cache.glob(".audit-*")), "an audit's scratch folder goes away with its task"


def test_node_death_mid_sweep_gives_the_identical_result(two_nodes, tmp_path, sandbox, local_result) -> None:
    second = two_nodes.nodes[1]
    killed: list[int] = []

    def watch(ctx) -> None:
        executor = ctx.executor  # connect now, so the watcher can see where attempts run

        def kill_when_running_on_second_node() -> None:
            end = time.monotonic() + 60
            while time.monotonic() < end and not killed:
                workers = second.refresh()
                if any(pid in workers for attempts in executor.attempts().values() for _, pid in attempts[-1:]):
                    raylet = second.raylet_pid()
                    os.kill(raylet, signal.SIGKILL)
                    killed.append(raylet)
                time.sleep(0.05)

        threading.Thread(target=kill_when_running_on_second_node, daemon=True).start()

    result = sweep(build_store(tmp_path / "s.duckdb"), sandbox, "ray", two_nodes.address, before=watch)
    assert killed, "no task ran on the second node"
    same(local_result, result)
    # The raylet dies while an attempt is seen on it, but a short task may finish in the same instant,
    # in which case there is nothing to retry; what must hold either way is the identical result.
    assert result["stats"].failed == 0


def test_a_node_killed_just_before_connecting_counts_as_dead(two_nodes, tmp_path, sandbox) -> None:
    from autotts_graph.sandbox.backends.base import SandboxTask
    from autotts_graph.store.trajectories import pack_path
    from autotts_graph.tools.ray_executor import RayExecutor

    pack = str(pack_path(build_store(tmp_path / "s.duckdb"), "Tiny/a"))
    task = SandboxTask(source=controller("asc"), packs={"Tiny/a": pack}, points=[{"beta": 0.5}], seeds=[0, 1],
                       trace_seeds=[], work=12, interpreter="cpython")
    # A raylet that stops answering is listed alive until the cluster's health checks give up on it; a probe
    # sent to it in that window fails as unschedulable once they do. The node is dead, not a fault to report.
    raylet = two_nodes.nodes[1].raylet_pid()
    os.kill(raylet, signal.SIGSTOP)
    try:
        executor = RayExecutor(sandbox, address=two_nodes.address)
    finally:
        os.kill(raylet, signal.SIGKILL)  # the two_nodes fixture replaces it
    try:
        alive = [n for n in executor.nodes if n["alive"]]
        assert len(alive) == 1 and alive[0]["head"] and "error" not in alive[0]
        assert executor.slots == 1
        (ok,) = list(executor.run([task]))
        assert ok.ok, ok.error
    finally:
        executor.close()


def test_hung_controller_is_cancelled_in_bounded_time(two_nodes, tmp_path, sandbox) -> None:
    from autotts_graph.sandbox.backends.base import SandboxTask
    from autotts_graph.store.trajectories import pack_path
    from autotts_graph.tools.ray_executor import RayExecutor

    store = build_store(tmp_path / "s.duckdb")
    pack = str(pack_path(store, "Tiny/a"))
    hung = ("from autotts_runtime import Controller\nclass Hung(Controller):\n    def solve(self, question):\n"
            "        n = 0\n        while True:\n            n += 1\n")
    # The in-box watchdog (600 s per solve) and the box's own deadline are far away: only the driver's
    # deadline (3 s from the attempt's start) can stop this task.
    task = SandboxTask(source=hung, packs={"Tiny/a": pack}, points=[{"beta": 0.5}], seeds=[0], trace_seeds=[],
                       work=6, solve_timeout_s=600.0, interpreter="cpython")
    executor = RayExecutor(sandbox, address=two_nodes.address, deadline_s=3.0, cancel_grace_s=3.0)
    try:
        started = time.monotonic()
        (res,) = list(executor.run([task]))
        elapsed = time.monotonic() - started
        assert not res.ok and res.error.kind.value == "timeout", res
        assert elapsed < 3.0 + 3.0 + 15.0, elapsed
        assert executor.stats().cancelled == 1 and executor.stats().retried == 0
        # The attempt's sandbox is gone (no runner left under either node), and the cluster still works.
        time.sleep(1.0)
        runners = [pid for node in two_nodes.nodes for pid in node.refresh()
                   if b"autotts_runtime.runner" in _cmdline(pid)]
        assert runners == []
        (ok,) = list(executor.run([task.model_copy(update={"source": controller("asc"), "solve_timeout_s": 10.0})]))
        assert ok.ok, ok.error
    finally:
        executor.close()


def test_controller_error_is_a_result_not_a_retry(two_nodes, tmp_path, sandbox) -> None:
    from autotts_graph.sandbox.backends.base import SandboxTask
    from autotts_graph.store.trajectories import pack_path
    from autotts_graph.tools.ray_executor import RayExecutor

    store = build_store(tmp_path / "s.duckdb")
    crash = ("from autotts_runtime import Controller\nclass Crash(Controller):\n    def solve(self, question):\n"
             "        raise KeyError('oops')\n")
    task = SandboxTask(source=crash, packs={"Tiny/a": str(pack_path(store, "Tiny/a"))}, points=[{"beta": 0.5}],
                       seeds=[0, 1], trace_seeds=[], work=12, interpreter="cpython")
    executor = RayExecutor(sandbox, address=two_nodes.address)
    try:
        (res,) = list(executor.run([task]))
        assert not res.ok and res.error.kind.value == "runtime" and "KeyError" in res.error.message + str(
            res.error.details)
        assert executor.stats().retried == 0 and executor.stats().failed == 0
    finally:
        executor.close()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
