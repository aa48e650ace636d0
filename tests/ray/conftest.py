"""A real Ray cluster on loopback for the ray tests: a head plus a second node (`ray start --address`).

Both nodes are `ray start --block` processes (Ray's own command, through ``python -m
autotts_graph.sandbox.ray_cluster start`` so that 127.0.0.1 stays 127.0.0.1), with usage stats off, token
authentication on and 1 CPU each. Each is stopped by its own pid; the finalizer then checks that no
process either of them started (GCS, raylets, workers, sandboxes) is left.

Ray is an optional extra: without it these tests skip, except in CI (AUTOTTS_REQUIRE_RAY or
AUTOTTS_REQUIRE_DOCKER set), where they fail.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTROLLERS = REPO / "sandbox" / "controllers"
# GCS notices a dead node within ~3 s instead of ~30 s: the node-death test stays short.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000"}


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("AUTOTTS_REQUIRE_RAY") or os.environ.get("AUTOTTS_REQUIRE_DOCKER"):
            pytest.fail("ray is not installed (pip install -e '.[dev]' or '.[ray]')")
        pytest.skip("ray is not installed (pip install -e '.[ray]')")


_RUNNING: dict[str, object] = {}  # the cluster of this directory's tests, while they run


@pytest.fixture
def cluster():
    """The two-node loopback cluster, started by the first test of this directory that needs it and
    stopped after the last one (``pytest_runtest_teardown``), not at the end of the whole session."""
    require_ray()
    if "cluster" not in _RUNNING:
        from autotts_graph.sandbox.ray_cluster import start_local_cluster

        root = Path(tempfile.mkdtemp(prefix="atr-", dir="/tmp"))  # short: Ray's socket paths live below it
        _RUNNING["saved"] = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
        cl = start_local_cluster(root, nodes=2, cpus_per_node=1, env=FAST_HEALTH_CHECKS, object_store_mb=128,
                                 log_monitor=False)
        os.environ.update({k: v for k, v in cl.env.items() if k.startswith("RAY_AUTH")})
        _RUNNING["cluster"] = cl
    return _RUNNING["cluster"]


def pytest_runtest_teardown(item, nextitem) -> None:
    here = Path(__file__).parent
    if "cluster" in _RUNNING and (nextitem is None or here not in Path(str(nextitem.path)).parents):
        stop_cluster()


def pytest_sessionfinish(session, exitstatus) -> None:
    if "cluster" in _RUNNING:  # interrupted: still no stray process
        stop_cluster()


def stop_cluster() -> None:
    """Disconnect, stop each node by its pid, and check that nothing either node started is left."""
    from autotts_graph.sandbox.ray_cluster import CONNECTION

    cl = _RUNNING.pop("cluster")
    saved = _RUNNING.pop("saved", {})
    try:
        try:
            import ray

            if ray.is_initialized():  # every executor should have released it; disconnect regardless
                CONNECTION.users = 1
                CONNECTION.release()
        finally:  # whatever happened above, the nodes are stopped
            seen = set().union(*(n.refresh() for n in cl.nodes))
            leftovers = cl.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(cl.root, ignore_errors=True)
    alive = [p for p in seen | set().union(*(n.seen for n in cl.nodes)) if _state(p) not in ("gone", "Z")]
    _sweep_containers()
    assert leftovers == [], f"processes still alive after their node stopped (killed by pid): {leftovers}"
    assert alive == [], f"stray Ray processes: {alive}"


def _sweep_containers() -> None:
    """Remove the warm sandbox containers of the (now dead) Ray workers, as the next probe would."""
    try:
        from autotts_graph.sandbox.backends.docker import connect
        from autotts_graph.sandbox.pool import sweep_leftovers

        sweep_leftovers(connect(timeout_s=5))
    except Exception:  # no docker here: nothing to sweep
        pass


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2:].split()[0]


@pytest.fixture
def two_nodes(cluster):
    """The cluster with two alive nodes (a new second node after the node-death test killed one)."""
    from autotts_graph.sandbox.ray_cluster import stop_node

    if cluster.nodes[-1].raylet_pid() is None:
        stop_node(cluster.nodes.pop())
        cluster.add_node(1, object_store_mb=128, log_monitor=False)
    return cluster


def make_records(n_questions: int, n_branches: int, seed: int) -> list[dict]:
    """Small valid AutoTTS records (answers converge to a gold most of the time; some ERR probes)."""
    rng = random.Random(seed)
    records = []
    for q in range(n_questions):
        gold = str(100 + q + 50 * seed)
        branches = []
        for _ in range(n_branches):
            final = gold if rng.random() < 0.6 else str(rng.choice([7, 8, 9]))
            n_probes = rng.randint(1, 6)
            probes = [rng.choice(["ERR", final, "1"]) for _ in range(n_probes - 1)] + [final]
            branches.append([probes, n_probes * 500 - rng.randint(0, 400), final])
        records.append({"question": f"q{q}", "gold_answer": gold, "probe_freq": 500, "each_branch": branches,
                        "final_answers_trace": [b[2] for b in branches]})
    return records


def build_store(path: Path):
    """Two search environments, big enough that a task runs for a second or two."""
    from autotts_graph.store.db import Store
    from autotts_graph.store.trajectories import import_records

    store = Store(path)
    import_records(store, "Tiny", "a", make_records(6, 16, 1))
    import_records(store, "Tiny", "b", make_records(5, 12, 2))
    return store


def controller(name: str) -> str:
    return (CONTROLLERS / f"{name}.py").read_text()
